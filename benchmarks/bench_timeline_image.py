"""Cost of one timeline image (actfusion_ros.timeline_image) next to a tick: ms per render, median over N.

    OMP_NUM_THREADS=1 python benchmarks/bench_timeline_image.py [--sizes 640x240 1280x360] [-n 200]
                                                                [--classes 19] [--segments 12]

A tick of a 19-class model (50 Salads) with ``--segments`` observed and as many future segments, three
next-action alternatives, drawn without and with a 640x480 camera frame (downscaled into the picture);
"+msg" adds the conversion to sensor_msgs/Image (rgb8) when sensor_msgs is importable. Prints one markdown
table row per size and variant: median and p95 ms per render over ``-n`` renders (after 5 warm-up ones).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import timed_runs  # noqa: E402  (benchmarks/timing.py, beside this script)

from actfusion_ros.next_actions import TimedAlternative  # noqa: E402
from actfusion_ros.stream_types import TimedSegment  # noqa: E402
from actfusion_ros.timeline_image import TimelineConfig, TimelineRenderer  # noqa: E402

S = 10**9
T0 = 1_700_000_000 * S


def _tick(num_classes: int, segments: int, past_s: float, future_s: float):
    rng = np.random.default_rng(0)
    names = [f"action_{k:02d}" for k in range(num_classes)]

    def cut(start_s: float, span_s: float, n: int) -> list[TimedSegment]:
        edges = np.sort(rng.uniform(start_s, start_s + span_s, n - 1))
        edges = np.concatenate(([start_s], edges, [start_s + span_s]))
        return [TimedSegment(names[k], int(k), T0 + int(a * S), T0 + int(b * S), 0.8)
                for a, b, k in zip(edges[:-1], edges[1:], rng.integers(0, num_classes, n))]

    observed, future = cut(-past_s * 1.5, past_s * 1.5, segments), cut(0.0, future_s, segments)
    alts = [TimedAlternative(names[k], p, T0 + int(t * S), T0 + int((t - 1) * S), T0 + int((t + 2) * S), k)
            for k, p, t in ((1, 0.6, 3.0), (2, 0.3, 6.0), (3, 0.1, 9.0))]
    return names, observed, future, alts


def _median_ms(fn: Callable[[], object], n: int) -> tuple[float, float]:
    arr = np.asarray(timed_runs(fn, n, warmup=5)) * 1e3
    return float(np.median(arr)), float(np.percentile(arr, 95))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["640x240", "1280x360"])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--segments", type=int, default=12)
    args = ap.parse_args(argv)
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - the renderer needs it anyway
        pass
    try:
        from actfusion_ros.ros_messages import rgb_image_msg
    except ImportError:
        rgb_image_msg = None
    camera = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    print("| size | variant | median ms | p95 ms |")
    print("|---|---|---|---|")
    for size in args.sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        names, observed, future, alts = _tick(args.classes, args.segments, 30.0, 30.0)
        r = TimelineRenderer(TimelineConfig(class_names=names, width=w, height=h, past_s=30.0, future_s=30.0))
        variants: dict[str, Callable[[], object]] = {
            "timeline": lambda: r.render(observed, future, next_actions=alts),
            "timeline + camera 640x480": lambda: r.render(observed, future, next_actions=alts, camera_frame=camera)}
        if rgb_image_msg is not None:
            variants["timeline + camera + msg"] = lambda: rgb_image_msg(
                r.render(observed, future, next_actions=alts, camera_frame=camera), T0, "camera")
        for name, fn in variants.items():
            med, p95 = _median_ms(fn, args.n)
            print(f"| {w}x{h} | {name} | {med:.2f} | {p95:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
