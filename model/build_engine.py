"""``actfusion-build-engine``: build (or verify) the TensorRT engines of an ONNX export.

    actfusion-build-engine --onnx-dir exports/50salads --out exports/50salads/tensorrt \\
        --min-length 1 --opt-length 1024 --max-length 8192 [--max-samples 8 --opt-samples 8]

The engines' precision is the export's: for FP16 engines export with ``actfusion-export --precision fp16`` and
pass that directory (TensorRT 11 has no FP16 builder flag; networks are strongly typed on 10.x and 11.x alike).
An engine is rebuilt exactly when its cache key (ONNX sha256, TensorRT version, GPU, profile, precision)
changed; one built for another GPU is refused unless ``--allow-gpu-change`` (or ``--force``).
``--check`` only reports whether the cached engines are usable (exit 1 if not) and builds nothing.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from actfusion_model.runtime.base import BackendError
from actfusion_model.runtime.engine_cache import EngineMismatchError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actfusion-build-engine", description=__doc__.split("\n")[0])
    parser.add_argument("--onnx-dir", required=True, help="directory written by actfusion-export")
    parser.add_argument("--out", required=True, help="directory for the engines and their JSON sidecars")
    parser.add_argument("--min-length", type=int, default=1,
                        help="shortest sequence (observed + horizon) the engine accepts; the node starts at 1 + r")
    parser.add_argument("--opt-length", type=int, default=1024)
    parser.add_argument("--max-length", type=int, default=8192)
    parser.add_argument("--opt-samples", type=int, default=1, help="samples per forecast the engine is tuned for")
    parser.add_argument("--max-samples", type=int, default=1,
                        help="most samples per forecast (above 1: also build the batched denoise step)")
    parser.add_argument("--fp16", action="store_true", help=argparse.SUPPRESS)  # gone: refused with the remedy
    parser.add_argument("--device", default="cuda", help="CUDA device, e.g. cuda:0")
    parser.add_argument("--workspace-mb", type=int, default=None, help="builder workspace limit")
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache key matches")
    parser.add_argument("--allow-gpu-change", action="store_true",
                        help="rebuild engines that were built for another GPU instead of refusing")
    parser.add_argument("--check", action="store_true", help="only check the cache, build nothing")
    args = parser.parse_args(argv)
    if args.fp16:
        print("actfusion-build-engine: error: --fp16 is gone: FP16 engines come from an FP16 export "
              "(actfusion-export --precision fp16 --out DIR), then --onnx-dir DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from actfusion_model.runtime.tensorrt_backend import LengthProfile, build_engines

        profile = LengthProfile(min_length=args.min_length, opt_length=args.opt_length,
                                max_length=args.max_length, opt_samples=args.opt_samples,
                                max_samples=args.max_samples)
        result = build_engines(args.onnx_dir, args.out, profile=profile, device=args.device,
                               force=args.force, allow_gpu_change=args.allow_gpu_change,
                               build_missing=not args.check,
                               workspace_bytes=args.workspace_mb * (1 << 20) if args.workspace_mb else None)
    except (BackendError, EngineMismatchError, ValueError) as err:
        print(f"actfusion-build-engine: error: {err}", file=sys.stderr)
        return 1
    print(f"# TensorRT engines of a {_precision(args.onnx_dir)} export")
    for graph, (path, action) in result.items():
        print(f"{graph:18s} {action:7s} {path}")
    return 0


def _precision(onnx_dir: str) -> str:
    from actfusion_model.export_manifest import export_precision, read_manifest

    return export_precision(read_manifest(onnx_dir, verify_hashes=False))


if __name__ == "__main__":
    sys.exit(main())
