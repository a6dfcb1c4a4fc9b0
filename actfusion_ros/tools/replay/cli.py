"""``actfusion-replay BAG --checkpoint CKPT --out DIR``: evaluate the whole streaming pipeline on a rosbag.

The command line of :func:`actfusion_ros.tools.replay.driver.replay` (the package docstring says what a replay
reports): its arguments, the checks that need no model (:func:`check_arguments`), and the node settings the
flags stand for (:func:`pipeline_settings`: ``--params`` or the model and stream flags).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from actfusion_model.backend_names import BACKENDS
from actfusion_ros.node_params import NodeSettings, read_params_file, validate_values
from actfusion_ros.tools.replay.driver import replay
from actfusion_ros.tools.replay.inputs import check_out_dir, check_sources
from actfusion_ros.tools.replay.recording import RecordSettings
from actfusion_ros.tools.replay.records import ReplayError
from actfusion_ros.tools.replay.scoring import DEFAULT_LOOKAHEAD_S, fit_replay_baselines
from actfusion_ros.tools.replay.series import SERIES_FILES


def _parse_kv(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ReplayError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``prog: error: ...`` line (exit 2), without the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def check_arguments(args: argparse.Namespace) -> None:
    """Every check that needs no model: numbers, paths, the bag's topics. Raises :class:`ReplayError`."""
    if args.threads is not None and args.threads < 1:
        raise ReplayError(f"--threads must be >= 1, got {args.threads}")
    if args.tick_rate <= 0:
        raise ReplayError(f"--tick-rate must be > 0 Hz, got {args.tick_rate}")
    if args.feature_rate is not None and args.feature_rate <= 0:
        raise ReplayError(f"--feature-rate must be > 0 Hz, got {args.feature_rate}")
    if any(s <= 0 for s in args.lookahead):
        raise ReplayError(f"--lookahead times must be > 0 s, got {args.lookahead}")
    if args.params is not None:
        if not args.params.is_file():
            raise ReplayError(f"--params {args.params}: no such file")
    elif _runs_checkpoint(args.backend):
        if not args.checkpoint:
            raise ReplayError(f"backend {args.backend} needs --checkpoint")
        if not args.checkpoint.is_file():
            raise ReplayError(f"--checkpoint {args.checkpoint}: no such file")
    else:
        if not args.onnx_dir:
            raise ReplayError(f"backend {args.backend} needs --onnx-dir (written by actfusion-export)")
        if not args.onnx_dir.is_dir():
            raise ReplayError(f"--onnx-dir {args.onnx_dir}: no such directory")
    _parse_kv(args.extractor_opt)
    check_out_dir(args.out)
    if args.record is not None:
        record_settings(args)
    check_sources(args.bag, args.image_topic, args.label_topic, args.labels)


#: Flags that choose the model and the stream; with ``--params`` the params file decides them instead.
PIPELINE_FLAGS = ("checkpoint", "extractor", "extractor_opt", "feature_rate", "tick_rate", "ratio", "max_horizon_s",
                  "max_window_s", "min_observed", "steps", "seed", "num_samples", "backend", "onnx_dir", "engine_dir",
                  "device", "threads")
#: A bag is replayed as one episode, never stale: the largest gap the node's parameters allow.
_NEVER_S = 1.0e6


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The node parameters the model and stream flags stand for (the extractor is resolved later)."""
    values: dict[str, Any] = {
        "backend": args.backend, "device": args.device, "seed": args.seed, "ddim_steps": args.steps or 0,
        "num_samples": args.num_samples,
        "num_threads": args.threads or 0, "tick_rate_hz": args.tick_rate, "ratio": args.ratio,
        "max_horizon_s": args.max_horizon_s, "max_window_s": args.max_window_s,
        "min_observed_frames": args.min_observed, "stale_after_s": _NEVER_S, "episode_gap_s": _NEVER_S}
    if _runs_checkpoint(args.backend):
        values["checkpoint"] = str(args.checkpoint)
    else:
        values["onnx_dir"] = str(args.onnx_dir)
        values["engine_dir"] = str(args.engine_dir or "")
    return values


def _runs_checkpoint(backend: str) -> bool:
    """Whether ``backend`` runs a checkpoint (torch, auto) rather than an ``actfusion-export`` directory."""
    from actfusion_model.runtime.registry import CHECKPOINT, backend_entry

    return backend_entry(backend).runs == CHECKPOINT


def pipeline_settings(args: argparse.Namespace, defaults: Mapping[str, Any]) -> tuple[NodeSettings, Any]:
    """The node settings of this replay and, when already loaded, its forecaster (else ``None``).

    ``--params``: the node's params file, exactly (no model or stream flag may be given beside it).
    Otherwise the flags, with the extractor and feature rate the model records unless given.
    """
    from actfusion_ros.builder import build_forecaster

    if args.params is not None:
        given = sorted(f"--{name.replace('_', '-')}" for name in PIPELINE_FLAGS
                       if getattr(args, name) != defaults[name])
        if given:
            raise ReplayError(f"--params {args.params} decides the model and the stream; drop {', '.join(given)}")
        return validate_values(read_params_file(args.params)), None
    values = _flag_values(args)
    forecaster = build_forecaster(validate_values(values), 0, None)
    recorded = getattr(forecaster, "pipeline", None)
    name = args.extractor or (recorded.extractor if recorded else None)
    if not name:
        raise ReplayError("the checkpoint names no feature extractor: pass --extractor")
    kwargs = dict(recorded.extractor_kwargs) if recorded and not args.extractor else {}
    kwargs.update(_parse_kv(args.extractor_opt))
    rate = args.feature_rate or (recorded.feature_rate_hz if recorded else 2.0)
    values.update(extractor=name, extractor_kwargs=json.dumps(kwargs), feature_rate_hz=float(rate))
    return validate_values(values), forecaster


def record_settings(args: argparse.Namespace) -> RecordSettings | None:
    """``--record`` / ``--record-size`` / ``--record-camera`` as :class:`RecordSettings` (``None`` without
    ``--record``); :class:`ReplayError` for a bad path or size."""
    if args.record is None:
        return None
    path = Path(args.record)
    if path.suffix != ".mcap":
        raise ReplayError(f"--record {path}: the file name must end in .mcap")
    if path.is_dir():
        raise ReplayError(f"--record {path}: is a directory")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        raise ReplayError(f"--record {path}: {path.parent} is not a writable directory")
    width, sep, height = str(args.record_size).lower().partition("x")
    try:
        size = (int(width), int(height)) if sep else None
    except ValueError:
        size = None
    if size is None:
        raise ReplayError(f"--record-size must be WIDTHxHEIGHT, e.g. 640x240, got {args.record_size!r}")
    try:
        settings = RecordSettings(path, width=size[0], height=size[1], camera=bool(args.record_camera))
        settings.timeline_config(["x"])  # validates the size
    except ValueError as err:
        raise ReplayError(f"--record-size {args.record_size}: {err}") from None
    return settings


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: 0 on success, 2 (one line on stderr) for any user error."""
    from actfusion_ros.builder import build_anticipator

    ap = _OneLineParser(prog="actfusion-replay", description=__doc__.split("\n")[0])
    ap.add_argument("bag", type=Path)
    ap.add_argument("--params", type=Path,
                    help="the node's params file (ROS 2 YAML): model, extractor, stream and tick rate exactly as "
                         "actfusion_node runs them (replaces the model and stream flags below)")
    ap.add_argument("--checkpoint", type=Path, help="our checkpoint (backends torch and auto; also names the pipeline)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--image-topic", default="/camera/image_raw")
    ap.add_argument("--label-topic", help="std_msgs/String topic with the ground-truth action")
    ap.add_argument("--labels", type=Path, help="per-frame label file (one name per image message)")
    ap.add_argument("--extractor", help="feature extractor (default: the checkpoint's pipeline metadata)")
    ap.add_argument("--extractor-opt", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--feature-rate", type=float, help="Hz (default: the checkpoint's pipeline metadata)")
    ap.add_argument("--tick-rate", type=float, default=2.0, help="forecasts per second of camera time")
    ap.add_argument("--ratio", type=float, default=4.0)
    ap.add_argument("--max-horizon-s", type=float, default=300.0)
    ap.add_argument("--max-window-s", type=float, default=300.0)
    ap.add_argument("--min-observed", type=int, default=4)
    ap.add_argument("--steps", type=int, help="DDIM steps (default: the model's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-samples", type=int, default=1,
                    help="futures sampled per forecast; K > 1 scores their per-frame consensus")
    ap.add_argument("--backend", default="torch", choices=BACKENDS,
                    help="torch (default), auto (the node's default: the checkpoint's ONNX graphs exported once, "
                         "cached, run by the fastest backend the device has), onnxruntime or tensorrt (--onnx-dir)")
    ap.add_argument("--onnx-dir", type=Path, help="actfusion-export directory (onnxruntime / tensorrt)")
    ap.add_argument("--engine-dir", type=Path, help="TensorRT engine cache (default <onnx-dir>/tensorrt)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lookahead", type=float, nargs="*", default=list(DEFAULT_LOOKAHEAD_S))
    ap.add_argument("--threads", type=int, help="inference CPU threads (small models: 1 is fastest on a busy CPU; "
                                                "default: the node's, max(1, CPUs - 2))")
    ap.add_argument("--baseline-labels", type=Path, nargs="+", metavar="PATH",
                    help="training labels for the grammar baselines: an MS-TCN dataset root (with "
                         "--baseline-split), a groundTruth directory, or label files")
    ap.add_argument("--baseline-split", type=int, default=1, help="training split of a dataset root (default 1)")
    ap.add_argument("--record", type=Path, metavar="OUT.mcap",
                    help="also write the camera topic, every tick's forecast, current action and timeline image and "
                         "the class map into one MCAP file (camera stamps as log times; open it in Foxglove)")
    ap.add_argument("--record-size", default="640x240", metavar="WxH", help="timeline image size (default 640x240)")
    ap.add_argument("--record-camera", action="store_true",
                    help="draw the latest camera frame above each recorded timeline image")
    ap.add_argument("--baseline-labels-hz", type=float,
                    help="labels per second of those files (default: one per feature frame, as actfusion-extract)")
    args = ap.parse_args(argv)
    try:
        check_arguments(args)
        settings, forecaster = pipeline_settings(args, {name: ap.get_default(name) for name in PIPELINE_FLAGS})
        anticipator = build_anticipator(settings, forecaster=forecaster)  # what actfusion_node builds
        rate = anticipator.config.feature_rate_hz
        grammars = fit_replay_baselines(args.baseline_labels, anticipator.class_names, split=args.baseline_split,
                                        labels_hz=args.baseline_labels_hz, feature_rate_hz=float(rate)
                                        ) if args.baseline_labels else []
        report = replay(args.bag, anticipator.forecaster, anticipator.extractor, out=args.out,
                        image_topic=args.image_topic, label_topic=args.label_topic, labels_file=args.labels,
                        config=anticipator.config, tick_rate_hz=settings.tick_rate_hz, lookahead_s=args.lookahead,
                        baselines=grammars, record=record_settings(args))
    except (ValueError, RuntimeError, OSError) as err:
        print(f"actfusion-replay: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print((args.out / "replay.md").read_text())
    print(f"wrote {args.out / 'replay.json'}, {args.out / 'replay.md'}, {args.out / 'timeline.png'} and the "
          f"per-frame / per-tick series ({', '.join(SERIES_FILES)})")
    if args.record is not None:
        counts = report.settings["record"]["messages"]
        print(f"recorded {args.record}: " + ", ".join(f"{topic} {n}" for topic, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
