"""``actfusion-export``: ActFusion as three ONNX graphs plus a manifest, checked against the eager model.

The graphs are the modules of :mod:`actfusion_model.onnx_graphs` (encoder, decoder_condition, denoise_step; the
denoise step over a batch of K samples); the manifest's format and reader are in
:mod:`actfusion_model.export_manifest` (all a runtime backend imports). Written with the TorchScript exporter
(``dynamo=False``), opset 17: the dynamo exporter also gives dynamic graphs of these modules but took
~20x longer to export and its step graph ran ~35% slower in ONNX Runtime. Every op is in TensorRT's ONNX
parser support matrix (``tests/tensorrt_supported_ops.py``).

``--precision fp16`` writes the same graphs with fp16 weights and activations behind fp32 inputs and outputs
(:class:`actfusion_model.onnx_graphs.GraphPrecision`; a few ops kept in fp32, listed in the manifest's
``fp32_ops``): what TensorRT's strongly typed networks build fp16 engines from, and what ONNX Runtime runs
too. It is checked against the eager fp32 model with an fp16 tolerance (:data:`FP16_ATOL`).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from actfusion_model.config import config_to_dict
from actfusion_model.export_manifest import (
    BATCH_GRAPH,
    BATCH_GRAPHS_KEY,
    FORMAT,
    GRAPHS,
    MANIFEST,
    PRECISIONS,
    SAMPLE_AXIS,
    TIME_AXIS,
    ExportError,
    graph_entries,
    sha256_file,
)
from actfusion_model.io import atomic_write_bytes, atomic_write_text
from actfusion_model.network import ActFusion
from actfusion_model.onnx_graphs import DEFAULT_LENGTH, FP32_ISLANDS, GraphPrecision, GraphSpec, graph_specs, term_names

DEFAULT_OPSET = 17
#: How far an fp16 export may be from the eager fp32 model at the verification length: ``atol + rtol * |ref|``
#: per output (logits of order 10 carry ~1e-2 of fp16 rounding through 10+ layers).
FP16_ATOL, FP16_RTOL = 0.1, 0.05


def _export_bytes(spec: GraphSpec, *, opset: int) -> bytes:
    buf = io.BytesIO()
    dynamic_axes: dict[str, dict[int, str]] = {name: {axis: TIME_AXIS} for name, axis in spec.time_axes.items()}
    for name, axis in spec.sample_axes.items():
        dynamic_axes.setdefault(name, {})[axis] = SAMPLE_AXIS
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer warnings
        torch.onnx.export(spec.module, spec.inputs, buf, dynamo=False, opset_version=opset,
                          input_names=spec.input_names, output_names=spec.output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    return buf.getvalue()


def _io_description(values: Sequence[Any]) -> list[dict[str, Any]]:
    import onnx

    out = []
    for v in values:
        t = v.type.tensor_type
        dims: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                    "shape": dims})
    return out


def check_graph(data: bytes, spec: GraphSpec, *, precision: str = "fp32") -> dict[str, Any]:
    """``onnx.checker`` (full, with shape inference) plus our own contract: names, dynamic time and sample axes,
    float inputs and outputs in fp32 whatever the precision, and (fp16) weights in fp16."""
    import onnx

    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    inputs, outputs = _io_description(proto.graph.input), _io_description(proto.graph.output)
    if [i["name"] for i in inputs] != spec.input_names or [o["name"] for o in outputs] != spec.output_names:
        raise ExportError(f"{spec.name}: graph I/O names {[i['name'] for i in inputs]} -> "
                          f"{[o['name'] for o in outputs]} differ from {spec.input_names} -> {spec.output_names}")
    for desc in inputs + outputs:
        for axes, label in ((spec.time_axes, TIME_AXIS), (spec.sample_axes, SAMPLE_AXIS)):
            axis = axes.get(desc["name"])
            if axis is not None and desc["shape"][axis] != label:
                raise ExportError(f"{spec.name}: {desc['name']} axis {axis} is {desc['shape'][axis]!r}, "
                                  f"expected the dynamic axis {label!r}")
        if desc["dtype"].startswith("float") and desc["dtype"] != "float32":
            raise ExportError(f"{spec.name}: {desc['name']} is {desc['dtype']}; graph inputs and outputs are float32")
    weights = [onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in proto.graph.initializer]
    if precision == "fp16" and "float16" not in weights:
        raise ExportError(f"{spec.name}: an fp16 export without fp16 weights")
    return {"inputs": inputs, "outputs": outputs, "ops": sorted({n.op_type for n in proto.graph.node}),
            "nodes": len(proto.graph.node)}


def verify_against_model(model: ActFusion, out_dir: str | Path, *, length: int, atol: float = 1e-4,
                         rtol: float = 0.0) -> float:
    """Run the exported graphs with ONNX Runtime at ``length`` frames and compare with the eager model.

    Returns the largest absolute difference over encoder logits, condition and one denoising step (one
    sample, and a batch of two samples); raises :class:`ExportError` where an output differs by more than
    ``atol + rtol * max |eager output|``.
    """
    import numpy as np
    import onnxruntime as ort

    out_dir = Path(out_dir)
    cfg = model.cfg
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(1, cfg.input_dim, length, generator=gen)
    mask = torch.ones(1, length, dtype=torch.bool)
    mask[:, (2 * length) // 3:] = False
    x01 = torch.rand(2, cfg.num_classes, length, generator=gen)  # two samples of one observation
    step = cfg.num_timesteps // 3
    with torch.no_grad():
        logits, cond = model.encode(feats, mask)
        x0 = model.denoise(cond.expand(2, -1, -1), step, x01)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    run = {n: ort.InferenceSession(str(out_dir / f"{n}.onnx"), opts, providers=["CPUExecutionProvider"])
           for n in (*GRAPHS, BATCH_GRAPH)}
    o_logits, o_cond = run["encoder"].run(None, {"features": feats.numpy(), "frame_mask": mask.numpy()})
    terms = run["decoder_condition"].run(None, {"condition": cond.numpy()})
    feed = dict(zip(term_names(cfg.dec_layers, input_condition=cfg.dec_input_condition), terms))
    feed.update(timestep=np.array([step], dtype=np.int64), x01=x01.numpy())
    (o_x0_batch,) = run[BATCH_GRAPH].run(None, feed)
    (o_x0,) = run["denoise_step"].run(None, {**feed, "x01": x01[:1].numpy()})
    pairs = (("logits", o_logits, logits), ("condition", o_cond, cond), ("x0", o_x0, x0[:1]),
             ("x0 of 2 samples", o_x0_batch, x0))
    diffs = {name: float(np.abs(a - b.numpy()).max()) for name, a, b in pairs}
    bounds = {name: atol + rtol * float(b.abs().max()) for name, _, b in pairs}
    if not all(diffs[name] <= bounds[name] for name in diffs):
        raise ExportError(f"ONNX Runtime differs from the eager model at T={length}: {diffs} (bounds {bounds})")
    return max(diffs.values())


def export_onnx(model: ActFusion, out_dir: str | Path, *, class_names: Sequence[str] | None = None,
                opset: int = DEFAULT_OPSET, length: int = DEFAULT_LENGTH, verify_length: int | None = 97,
                source: dict[str, Any] | None = None, precision: str = "fp32",
                keep_fp32: Sequence[str] | None = None) -> dict[str, Any]:
    """Export the graphs (:func:`actfusion_model.onnx_graphs.graph_specs`) and ``manifest.json`` into ``out_dir``
    (atomic writes); return the manifest.

    ``length``: the single example length used for tracing (the time axis stays dynamic).
    ``verify_length``: if set and onnxruntime is installed, check the graphs against the eager model at
    this other length (raises :class:`ExportError` on mismatch). ``precision``: ``fp32`` or ``fp16``;
    ``keep_fp32``: an fp16 export's ops kept in fp32 (None: :data:`actfusion_model.onnx_graphs.FP16_KEEP_FP32`).
    The manifest is written last.
    """
    import onnx

    if length < 1:
        raise ExportError(f"length must be >= 1, got {length}")
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    graph_precision = GraphPrecision.of(precision, keep_fp32)
    model = model.eval()
    cfg = model.cfg
    if cfg.self_condition:
        raise ExportError("model.self_condition is not exportable yet (the ONNX denoise step has no "
                          "previous-x0 input); export a model trained without it")
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(cfg.num_classes)]
    if len(names) != cfg.num_classes:
        raise ExportError(f"{len(names)} class names for a model with {cfg.num_classes} classes")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, Any] = {}
    for spec in graph_specs(model, length=length, precision=graph_precision):
        data = _export_bytes(spec, opset=opset)
        info = check_graph(data, spec, precision=precision)
        path = out_dir / f"{spec.name}.onnx"
        atomic_write_bytes(path, data)
        graphs[spec.name] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), **info}
    if verify_length is not None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            verify_length = None
        else:
            tolerance = {"atol": FP16_ATOL, "rtol": FP16_RTOL} if precision == "fp16" else {}
            verify_against_model(model, out_dir, length=verify_length, **tolerance)
    manifest = {
        "format": FORMAT,
        "opset": opset,
        "exporter": "torch.onnx (TorchScript, dynamo=False)",
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "precision": precision,
        "fp32_ops": sorted(graph_precision.keep_fp32),
        "export_length": length,
        "verified_length": verify_length,
        "time_axis": TIME_AXIS,
        "sample_axis": SAMPLE_AXIS,
        "term_layout": ("per decoder layer i: cond_qk_i (1, T, 2*dec_dim) = [condition's share of q | of k], "
                        "slot_terms_i (1, T, 2*dec_kernel) = [rel. bias/sqrt(dim) + log(valid+1e-6) | valid]"),
        "config": config_to_dict(cfg),
        "class_names": names,
        "graphs": {name: graphs[name] for name in GRAPHS},
        BATCH_GRAPHS_KEY: {BATCH_GRAPH: graphs[BATCH_GRAPH]},
        "source": dict(source or {}),
    }
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """``actfusion-export --checkpoint CKPT --out DIR [--precision fp16] [--opset 17] [--length 64]``."""
    from actfusion_model.checkpoint import CheckpointError, load_checkpoint

    parser = argparse.ArgumentParser(prog="actfusion-export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint in our format (see actfusion-convert)")
    parser.add_argument("--out", required=True, help="output directory for the .onnx files and manifest.json")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--length", type=int, default=DEFAULT_LENGTH, help="example length used for tracing")
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime check against torch")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp16: fp16 weights and activations, fp32 inputs/outputs (TensorRT fp16 engines)")
    parser.add_argument("--keep-fp32", nargs="*", choices=FP32_ISLANDS, default=None, metavar="OP",
                        help=f"fp16 only: the ops kept in fp32 (default: the measured set; any of "
                             f"{', '.join(FP32_ISLANDS)}; none: --keep-fp32 with no names)")
    args = parser.parse_args(argv)
    if args.keep_fp32 is not None and args.precision != "fp16":
        parser.error("--keep-fp32 goes with --precision fp16")
    try:
        ckpt = load_checkpoint(args.checkpoint)
        manifest = export_onnx(ckpt.model, args.out, class_names=ckpt.class_names, opset=args.opset,
                               length=args.length, verify_length=None if args.no_verify else 97,
                               precision=args.precision, keep_fp32=args.keep_fp32,
                               source={"checkpoint": str(Path(args.checkpoint).resolve()),
                                       "checkpoint_sha256": sha256_file(args.checkpoint)})
    except (CheckpointError, ExportError) as err:
        print(f"actfusion-export: error: {err}", file=sys.stderr)
        return 1
    for g in graph_entries(manifest).values():
        print(f"{args.out}/{g['file']}: {g['nodes']} nodes, sha256 {g['sha256'][:16]}")
    print(f"{args.out}/{MANIFEST}: {manifest['precision']} (fp32 ops: {', '.join(manifest['fp32_ops']) or 'none'}), "
          f"opset {manifest['opset']}, verified at T={manifest['verified_length']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
