"""Soak test: a long stream through the streaming core, and a shorter one through the live node over DDS.

1. Core (in process, no ROS): ``--minutes`` of simulated camera time at ``--fps`` through a
   :class:`~actfusion_ros.stream.StreamingAnticipator` with the colour-layout extractor and a tiny
   random-weights :class:`~actfusion_ros.stream_model.ModelForecaster`. Frames come from the synthetic
   activity world (a few episodes rendered once and recycled with continuous stamps); ticks run every
   ``1 / --tick-rate`` seconds of *camera* time, so 30 simulated minutes take a few minutes of wall time.
   Every ``--stall-every`` seconds the camera stalls for ``--stall`` seconds (longer than the episode
   gap): ticks see stale data, then the stream starts a new episode. Printed: RSS (start, after
   warm-up, end, peak), threads and open file descriptors, tick latency per ``--bucket`` minutes of
   camera time (median / p95), frames per second of wall time, the stream's counters.
2. DDS (``--dds-seconds`` > 0): ``actfusion_node`` as a subprocess on loopback DDS, a client publishing
   world frames at ``--fps`` with wall-clock stamps. After a warm-up (until a forecast over a full
   ``--dds-window``: the model's largest input from then on), ``--dds-seconds`` of measurement: RSS,
   threads and fds of the node process from ``/proc/<pid>`` (at the first forecast, after the warm-up,
   every 5 s, at the end), its /diagnostics counters, and the exit code and time after SIGINT.

Run: ``.venv/bin/python benchmarks/soak.py --minutes 30 --dds-seconds 60``

Exit status: 0 when every requested part ran and the node exited 0 after SIGINT; 1 when the DDS part was
requested but skipped (ROS not importable; ``--allow-dds-skip`` accepts that), failed, or the node exited
non-zero (or not at all). The problems are printed last and recorded under ``status`` in ``--json``.

``run_core_soak`` / ``run_dds_soak`` return the figures as dataclasses (``tests/test_soak.py`` runs a
3-minute core soak with them). Memory is read from ``/proc`` (Linux), no psutil needed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from actfusion_ros.stream_types import StreamConfig  # noqa: E402
from actfusion_ros.time_ns import NS_PER_S  # noqa: E402

T0_NS = 1_700_000_000 * NS_PER_S  # camera stamps start here (a realistic epoch time)


# ---------------------------------------------------------------------------------------------- /proc
@dataclass(frozen=True)
class ProcSample:
    """Resource use of one process: resident memory (now and peak), threads, open file descriptors."""

    rss_kb: int
    peak_rss_kb: int
    threads: int
    fds: int

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024.0


def proc_sample(pid: int | str = "self") -> ProcSample:
    """Read ``VmRSS``, ``VmHWM`` and ``Threads`` from ``/proc/<pid>/status`` and count ``/proc/<pid>/fd``."""
    status = Path(f"/proc/{pid}/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def kb(key: str) -> int:
        return int(values[key].split()[0])

    return ProcSample(rss_kb=kb("VmRSS"), peak_rss_kb=kb("VmHWM"), threads=int(values["Threads"]),
                      fds=len(os.listdir(f"/proc/{pid}/fd")))


# ---------------------------------------------------------------------------------------------- frames
@dataclass(frozen=True)
class SoakCamera:
    """The camera of both soaks: synthetic activity-world frames of ``width x height`` at ``fps``."""

    fps: float = 30.0
    width: int = 64
    height: int = 48


def frame_pool(camera: SoakCamera, episodes: int, seed: int = 0) -> list[np.ndarray]:
    """Frames of ``episodes`` synthetic tea-making episodes, rendered once (recycled by the soak)."""
    from actfusion_ros.tools.world import ActivityWorld

    world = ActivityWorld(width=camera.width, height=camera.height, fps=camera.fps)
    frames: list[np.ndarray] = []
    for k in range(episodes):
        frames.extend(rgb for _, rgb in world.frames(world.episode(seed + k)))
    return frames


def camera_stamp(k: int, fps: float) -> int:
    """Stamp of camera frame ``k``: exact integer ns of ``T0 + k / fps``."""
    return T0_NS + (k * NS_PER_S * 1000) // int(round(fps * 1000))


# ---------------------------------------------------------------------------------------------- core
@dataclass(frozen=True)
class CoreSoakSettings:
    """What the core soak streams (see the module docstring); times are camera (simulated) time.

    ``stream`` configures the :class:`~actfusion_ros.stream.StreamingAnticipator` as the node's parameters
    would (default: the node's, but a 60 s window and horizon cap).
    """

    minutes: float = 30.0
    camera: SoakCamera = field(default_factory=SoakCamera)
    episodes: int = 3
    stream: StreamConfig = field(default_factory=lambda: StreamConfig(max_window_s=60.0, max_horizon_s=60.0))
    tick_rate_hz: float = 2.0
    stall_every_s: float = 600.0  # 0: the camera never stalls
    stall_s: float = 8.0
    ddim_steps: int | None = None  # None: the model's default
    torch_threads: int = 1  # 0: torch's default (oversubscribes a busy 2-core machine)
    bucket_minutes: float = 5.0
    sample_every_s: float = 10.0
    seed: int = 0


@dataclass(frozen=True)
class LatencyBucket:
    """Tick latencies (published ticks only) over ``[start_min, end_min)`` of camera time."""

    start_min: float
    end_min: float
    ticks: int
    median_ms: float
    p95_ms: float
    max_ms: float
    rss_mb_end: float


@dataclass
class CoreSoakReport:
    """Figures of one core soak."""

    settings: CoreSoakSettings
    frames_offered: int
    frames_stalled: int
    wall_s: float
    start: ProcSample
    warm: ProcSample
    end: ProcSample
    max_rss_kb: int
    max_buffer_length: int
    window_capacity: int
    buckets: list[LatencyBucket]
    stats: dict[str, Any]
    expected_features: int
    expected_stalls: int
    rss_series_mb: list[tuple[float, float]] = field(default_factory=list)

    @property
    def frames_per_s(self) -> float:
        return self.frames_offered / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def simulated_s(self) -> float:
        return self.settings.minutes * 60.0


def _stall_windows(total_ns: int, every_ns: int, stall_ns: int) -> list[tuple[int, int]]:
    """``[start, end)`` offsets (ns from T0) during which the camera sends nothing."""
    if every_ns <= 0 or stall_ns <= 0:
        return []
    return [(t, t + stall_ns) for t in range(every_ns, total_ns, every_ns)]


def _in_stall(offset_ns: int, windows: list[tuple[int, int]]) -> bool:
    return any(a <= offset_ns < b for a, b in windows)


def _percentiles(ms: list[float]) -> tuple[float, float, float]:
    if not ms:
        return float("nan"), float("nan"), float("nan")
    a = np.asarray(ms)
    return float(np.median(a)), float(np.percentile(a, 95)), float(a.max())


def run_core_soak(settings: CoreSoakSettings,
                  progress: Callable[[str], None] | None = None) -> CoreSoakReport:
    """Stream ``settings.minutes`` of camera time through the streaming core and measure it."""
    import torch

    threads_before = torch.get_num_threads()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    try:
        return _core_soak(settings, progress)
    finally:
        torch.set_num_threads(threads_before)


def _core_soak(s: CoreSoakSettings, progress: Callable[[str], None] | None) -> CoreSoakReport:
    from actfusion_model.features import build_extractor
    from actfusion_ros.stream import StreamingAnticipator
    from actfusion_ros.stream_model import ModelForecaster
    from actfusion_ros.tools.world import TEA_ACTIONS

    start = proc_sample()
    pool = frame_pool(s.camera, s.episodes, s.seed)
    extractor = build_extractor("color_layout")
    forecaster = ModelForecaster.random_weights(input_dim=extractor.dim, class_names=TEA_ACTIONS,
                                                steps=s.ddim_steps, seed=s.seed)
    config, fps = s.stream, s.camera.fps
    stream = StreamingAnticipator(config, extractor, forecaster, TEA_ACTIONS)

    total_frames = int(round(s.minutes * 60.0 * fps))
    total_ns = camera_stamp(total_frames, fps) - T0_NS
    stalls = _stall_windows(total_ns, int(s.stall_every_s * NS_PER_S), int(s.stall_s * NS_PER_S))
    tick_ns = int(round(NS_PER_S / s.tick_rate_hz))
    bucket_ns = int(round(s.bucket_minutes * 60 * NS_PER_S))
    sample_ns = int(round(s.sample_every_s * NS_PER_S))
    warm_at_ns = int(max(config.max_window_s, 60.0) * NS_PER_S)
    n_buckets = max(1, int(math.ceil(total_ns / bucket_ns)))
    latencies: dict[int, list[float]] = {}
    bucket_rss: dict[int, float] = {}
    rss_series: list[tuple[float, float]] = []
    warm: ProcSample | None = None
    max_rss = start.rss_kb
    max_len = 0
    offered = stalled = 0
    expected_features = 0
    run_length = 0  # frames since the last (re)start of an episode, for the expected feature count
    period_frames = fps / config.feature_rate_hz
    next_tick, next_sample = tick_ns, 0
    last_pushed_ns: int | None = None

    def do_tick(offset_ns: int) -> None:
        nonlocal max_len
        t = time.perf_counter()
        result = stream.tick(T0_NS + offset_ns)
        elapsed_ms = 1e3 * (time.perf_counter() - t)
        if result is not None:
            latencies.setdefault(min(offset_ns // bucket_ns, n_buckets - 1), []).append(elapsed_ms)
            max_len = max(max_len, result.num_observed)

    wall0 = time.perf_counter()
    for k in range(total_frames):
        offset = camera_stamp(k, fps) - T0_NS
        while next_tick < offset:  # every tick due before this frame
            do_tick(next_tick)
            next_tick += tick_ns
        if offset >= next_sample:
            sample = proc_sample()
            max_rss = max(max_rss, sample.rss_kb)
            rss_series.append((offset / NS_PER_S / 60.0, sample.rss_mb))
            bucket_rss[min(offset // bucket_ns, n_buckets - 1)] = sample.rss_mb
            if warm is None and offset >= warm_at_ns:
                warm = sample
            next_sample += sample_ns
            if progress is not None and offset % (60 * NS_PER_S) < sample_ns:
                progress(f"  {offset / NS_PER_S / 60:5.1f} min: RSS {sample.rss_mb:7.1f} MB, "
                         f"{stream.stats.published} forecasts, {time.perf_counter() - wall0:6.1f} s wall")
        if _in_stall(offset, stalls):
            stalled += 1
            continue
        if last_pushed_ns is not None and offset - last_pushed_ns > config.episode_gap_s * NS_PER_S:
            expected_features += math.ceil(run_length / period_frames)
            run_length = 0
        stream.push_frame(T0_NS + offset, pool[k % len(pool)])
        offered += 1
        run_length += 1
        last_pushed_ns = offset
    while next_tick <= total_ns:
        do_tick(next_tick)
        next_tick += tick_ns
    wall = time.perf_counter() - wall0
    expected_features += math.ceil(run_length / period_frames)
    end = proc_sample()
    max_rss = max(max_rss, end.rss_kb)

    buckets = []
    bucket_rss[n_buckets - 1] = end.rss_kb / 1024.0
    for b in range(n_buckets):
        med, p95, mx = _percentiles(latencies.get(b, []))
        buckets.append(LatencyBucket(b * s.bucket_minutes, min((b + 1) * s.bucket_minutes, s.minutes),
                                     len(latencies.get(b, [])), med, p95, mx, bucket_rss.get(b, float("nan"))))
    st = stream.stats
    stats = {f.name: (dict(getattr(st, f.name)) if f.name in ("reset_reasons", "skip_reasons")
                      else getattr(st, f.name)) for f in fields(st)}
    return CoreSoakReport(settings=s, frames_offered=offered, frames_stalled=stalled, wall_s=wall, start=start,
                          warm=warm or end, end=end, max_rss_kb=max_rss, max_buffer_length=max_len,
                          window_capacity=config.window_capacity, buckets=buckets, stats=stats,
                          expected_features=expected_features, expected_stalls=len(stalls),
                          rss_series_mb=rss_series)


def print_core_report(r: CoreSoakReport, out: Callable[[str], None] = print) -> None:
    s, cam, cfg = r.settings, r.settings.camera, r.settings.stream
    out(f"core soak: {s.minutes:g} simulated min at {cam.fps:g} fps ({cam.width}x{cam.height} world frames, "
        f"{s.episodes} episodes recycled), features {cfg.feature_rate_hz:g} Hz, ticks {s.tick_rate_hz:g} Hz "
        f"of camera time, window {cfg.max_window_s:g} s ({r.window_capacity} features), horizon cap "
        f"{cfg.max_horizon_s:g} s, tiny random-weights model (ddim steps {s.ddim_steps or 'default'}); camera "
        f"stall of {s.stall_s:g} s every {s.stall_every_s:g} s")
    out(f"  wall time {r.wall_s:.1f} s for {r.simulated_s:.0f} s of camera time "
        f"({r.simulated_s / r.wall_s:.1f}x real time); {r.frames_offered} frames pushed "
        f"({r.frames_per_s:.0f} frames/s), {r.frames_stalled} withheld by stalls")
    out(f"  RSS start {r.start.rss_mb:.1f} MB, after warm-up {r.warm.rss_mb:.1f} MB, end {r.end.rss_mb:.1f} MB "
        f"(end - warm-up {r.end.rss_mb - r.warm.rss_mb:+.1f} MB); max sampled {r.max_rss_kb / 1024:.1f} MB, "
        f"process peak (VmHWM) {r.end.peak_rss_kb / 1024:.1f} MB")
    out(f"  threads start {r.start.threads}, after warm-up {r.warm.threads}, end {r.end.threads}; open fds "
        f"start {r.start.fds}, after warm-up {r.warm.fds}, end {r.end.fds}")
    out(f"  buffer: max {r.max_buffer_length} features observed (capacity {r.window_capacity})")
    out("  tick latency per bucket of camera time (published ticks):")
    out("    minutes      ticks   median ms   p95 ms   max ms   RSS MB at end")
    for b in r.buckets:
        out(f"    {b.start_min:5.1f}-{b.end_min:5.1f}  {b.ticks:6d}   {b.median_ms:8.2f}  {b.p95_ms:7.2f}  "
            f"{b.max_ms:7.2f}   {b.rss_mb_end:8.1f}")
    st = r.stats
    out(f"  stream: received {st['frames_received']} = accepted {st['frames_accepted']} + not due "
        f"{st['frames_not_due']} + duplicates {st['duplicates']} + out of order {st['out_of_order']} + invalid "
        f"{st['invalid_frames']} + extract errors {st['extract_errors']}; expected features "
        f"{r.expected_features}")
    out(f"  ticks {st['ticks']} = published {st['published']} + skipped {st['skipped_ticks']} "
        f"{st['skip_reasons']}; resets {st['reset_reasons']} (stalls {r.expected_stalls}); dropped features "
        f"(window bound) {st['dropped_features']}")


# ---------------------------------------------------------------------------------------------- DDS
@dataclass
class DdsSoakReport:
    """Figures of the live-node soak."""

    seconds: float
    fps: float
    sent: int
    received_forecasts: int
    first: ProcSample  # at the first forecast
    warmup_s: float  # until a forecast over a full window
    start: ProcSample  # after the warm-up
    end: ProcSample
    samples: list[tuple[float, ProcSample]]
    diagnostics: dict[str, str]
    exit_code: int | None
    exit_s: float
    window_s: float = 0.0
    log_tail: str = ""


def run_dds_soak(seconds: float, *, camera: SoakCamera = SoakCamera(),
                 tick_rate_hz: float = 2.0, feature_rate_hz: float = 2.0, max_window_s: float = 20.0,
                 sample_every_s: float = 5.0, progress: Callable[[str], None] | None = None) -> DdsSoakReport:
    """Publish world frames to ``actfusion_node`` (subprocess, loopback DDS) for ``seconds``; measure it."""
    from sensor_msgs.msg import Image

    from actfusion_ros.testing.ros_harness import make_image, node_session

    pool = frame_pool(camera, 1)
    fps = camera.fps
    with tempfile.TemporaryDirectory() as tmp, node_session(Path(tmp), {
            "random_weights": True, "tick_rate_hz": tick_rate_hz, "feature_rate_hz": feature_rate_hz,
            "max_window_s": max_window_s, "max_horizon_s": max_window_s, "qos_reliability": "reliable",
            "qos_depth": 10, "diagnostics_period_s": 1.0, "num_threads": 1}, name="soak", depth=50) as session:
        node, client, pub, topic = session.node, session.client, session.image_pub, session.future_topic
        pid = node.proc.pid
        period = 1.0 / fps
        sent = 0

        def publish_one() -> None:
            nonlocal sent
            pub.publish(make_image(Image, pool[sent % len(pool)], time.time_ns()))
            sent += 1

        capacity = math.ceil(max_window_s * feature_rate_hz - 1e-9)
        t = time.monotonic()
        first: ProcSample | None = None
        # warm-up: until a forecast over a full window (the model's largest input from then on)
        while not any(m.num_observed_frames >= capacity for m in client.messages(topic)):
            publish_one()
            if first is None and client.messages(topic):
                first = proc_sample(pid)
            time.sleep(period)
            if time.monotonic() - t > max_window_s + 60:
                raise RuntimeError(f"no full-window forecast within {max_window_s + 60:g} s\n"
                                   f"{node.log_tail()}")
        start = proc_sample(pid)
        warmup_s = time.monotonic() - t
        samples = [(0.0, start)]
        t0 = time.monotonic()
        next_sample = sample_every_s
        i = 0
        while (elapsed := time.monotonic() - t0) < seconds:
            publish_one()
            i += 1
            if elapsed >= next_sample:
                sample = proc_sample(pid)
                samples.append((elapsed, sample))
                next_sample += sample_every_s
                if progress is not None:
                    progress(f"  {elapsed:5.0f} s: node RSS {sample.rss_mb:6.1f} MB, threads "
                             f"{sample.threads}, fds {sample.fds}, {len(client.messages(topic))} forecasts")
            time.sleep(max(0.0, t0 + i * period - time.monotonic()))
        time.sleep(2.5)  # the last frames through the queue, a tick and a diagnostics period
        end = proc_sample(pid)
        samples.append((time.monotonic() - t0, end))
        diags = session.diagnostics()
        diag: dict[str, str] = diags[-1] if diags else {}
        received = len(client.messages(topic))
        t_sig = time.monotonic()
        node.signal(signal.SIGINT)
        try:
            rc: int | None = node.wait(30.0)
        except Exception:  # noqa: BLE001 - reported as None
            rc = None
        exit_s = time.monotonic() - t_sig
        return DdsSoakReport(seconds=seconds, fps=fps, sent=sent, received_forecasts=received,
                             first=first or start, warmup_s=warmup_s, start=start, end=end, samples=samples,
                             diagnostics=diag, exit_code=rc, exit_s=exit_s, window_s=max_window_s,
                             log_tail=node.log_tail(1500))


def print_dds_report(r: DdsSoakReport, out: Callable[[str], None] = print) -> None:
    d = r.diagnostics
    keys = ("images_received", "frames_dropped", "bad_images", "frames_accepted", "ticks", "published",
            "skipped_ticks", "tick_errors", "resets", "buffer_length", "window_capacity", "tick_latency_ms_max")
    out(f"DDS soak: actfusion_node subprocess (tiny random-weights model, window {r.window_s:g} s), "
        f"{r.seconds:g} s of {r.fps:g} fps images over loopback DDS after a {r.warmup_s:.0f} s warm-up "
        f"(until a forecast over a full window)")
    out(f"  images sent {r.sent} (incl. warm-up), forecasts received {r.received_forecasts}")
    out("  node /diagnostics at the end: " + ", ".join(f"{k}={d.get(k, '?')}" for k in keys))
    out(f"  node RSS at the first forecast {r.first.rss_mb:.1f} MB (threads {r.first.threads}, fds "
        f"{r.first.fds}); after warm-up {r.start.rss_mb:.1f} MB, end {r.end.rss_mb:.1f} MB "
        f"({r.end.rss_mb - r.start.rss_mb:+.1f} MB), max sampled "
        f"{max(s.rss_kb for _, s in r.samples) / 1024:.1f} MB, peak (VmHWM) {r.end.peak_rss_kb / 1024:.1f} MB")
    out(f"  node threads after warm-up {r.start.threads}, end {r.end.threads}; open fds after warm-up "
        f"{r.start.fds}, end {r.end.fds}")
    out("  RSS samples (s: MB): " + ", ".join(f"{t:.0f}: {smp.rss_mb:.1f}" for t, smp in r.samples))
    out(f"  SIGINT -> exit code {r.exit_code} after {r.exit_s:.2f} s")


# ---------------------------------------------------------------------------------------------- CLI
def soak_problems(*, dds_requested: bool, dds_skip_reason: str | None, dds: DdsSoakReport | None,
                  dds_error: str | None = None, allow_dds_skip: bool = False) -> list[str]:
    """What makes the soak fail (empty: it passed); ``main`` exits 1 when this is not empty."""
    if not dds_requested:
        return []
    if dds_skip_reason is not None:
        return [] if allow_dds_skip else [f"DDS soak skipped: {dds_skip_reason} (--allow-dds-skip to accept)"]
    if dds_error is not None:
        return [f"DDS soak failed: {dds_error}"]
    if dds is None:
        return ["DDS soak produced no report"]
    if dds.exit_code is None:
        return ["the node did not exit within 30 s of SIGINT"]
    if dds.exit_code != 0:
        return [f"the node exited with code {dds.exit_code} after SIGINT (expected 0)"]
    return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="simulated minutes through the core (0: skip)")
    ap.add_argument("--dds-seconds", type=float, default=60.0, help="seconds through the live node (0: skip)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--window", type=float, default=60.0, help="max_window_s (and max_horizon_s) of the core soak")
    ap.add_argument("--dds-window", type=float, default=20.0, help="max_window_s of the node (warm-up: until full)")
    ap.add_argument("--tick-rate", type=float, default=2.0, help="ticks per second of camera time")
    ap.add_argument("--ddim-steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the core soak (0: torch default)")
    ap.add_argument("--stall-every", type=float, default=600.0, help="camera stall every N s (0: never)")
    ap.add_argument("--stall", type=float, default=8.0, help="stall length in seconds")
    ap.add_argument("--bucket", type=float, default=5.0, help="latency bucket in minutes of camera time")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    ap.add_argument("--allow-dds-skip", action="store_true",
                    help="exit 0 even if the DDS part is skipped because ROS is not importable")
    args = ap.parse_args(argv)
    skip_reason: str | None = None
    dds: DdsSoakReport | None = None
    dds_error: str | None = None
    results: dict[str, Any] = {}
    camera = SoakCamera(fps=args.fps, width=args.width, height=args.height)
    if args.minutes > 0:
        settings = CoreSoakSettings(minutes=args.minutes, camera=camera,
                                    stream=StreamConfig(max_window_s=args.window, max_horizon_s=args.window),
                                    tick_rate_hz=args.tick_rate, ddim_steps=args.ddim_steps,
                                    torch_threads=args.threads, stall_every_s=args.stall_every,
                                    stall_s=args.stall, bucket_minutes=args.bucket)
        report = run_core_soak(settings, progress=lambda m: print(m, flush=True))
        print_core_report(report)
        results["core"] = asdict(report)
    if args.dds_seconds > 0:
        from actfusion_ros.testing.ros_harness import ros_skip_reason

        skip_reason = ros_skip_reason()
        if skip_reason:
            print(f"DDS soak skipped: {skip_reason}")
        else:
            try:
                dds = run_dds_soak(args.dds_seconds, camera=camera, max_window_s=args.dds_window,
                                   progress=lambda m: print(m, flush=True))
            except (RuntimeError, AssertionError, OSError) as err:  # the node died, never matched, ...
                dds_error = str(err)
                print(f"DDS soak failed: {err}")
            if dds is not None:
                print_dds_report(dds)
                results["dds"] = {k: v for k, v in asdict(dds).items() if k != "log_tail"}
                if dds.exit_code != 0:
                    print(dds.log_tail)
    problems = soak_problems(dds_requested=args.dds_seconds > 0, dds_skip_reason=skip_reason, dds=dds,
                             dds_error=dds_error, allow_dds_skip=args.allow_dds_skip)
    results["status"] = {"ok": not problems, "problems": problems}
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    for problem in problems:
        print(f"SOAK FAILED: {problem}", file=sys.stderr)
    sys.stdout.flush()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
