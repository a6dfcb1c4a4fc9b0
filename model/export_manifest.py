"""The manifest of an ONNX export (``manifest.json``): its format, the graph names, writing and reading it.

This is all a runtime backend needs from an export; the exporter itself (:mod:`actfusion_model.export`, which
imports the network and the graph modules) is never imported by a backend.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

FORMAT = "actfusion_ros/onnx/1"
MANIFEST = "manifest.json"
GRAPHS = ("encoder", "decoder_condition", "denoise_step")  # every export has these
BATCH_GRAPH = "denoise_step_batch"  # the denoise step over K samples (exports since the sample axis)
BATCH_GRAPHS_KEY = "batch_graphs"  # where the manifest lists it: "graphs" keeps exactly GRAPHS
TIME_AXIS = "T"
SAMPLE_AXIS = "K"  # the denoise step's batch of noisy samples of one observation
#: What an export's graphs compute in (``actfusion-export --precision``): ``fp16`` graphs hold fp16 weights and
#: activations (a few ops in fp32) behind fp32 inputs and outputs, so every backend feeds and reads them alike.
PRECISIONS = ("fp32", "fp16")


class ExportError(RuntimeError):
    """Export failed, the exported graph does not reproduce the eager model, or an export is unreadable."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(onnx_dir: str | Path, *, verify_hashes: bool = True) -> dict[str, Any]:
    """Load ``manifest.json``; with ``verify_hashes`` every graph file must match its recorded sha256."""
    onnx_dir = Path(onnx_dir)
    path = onnx_dir / MANIFEST
    if not path.is_file():
        raise ExportError(f"no {MANIFEST} in {onnx_dir} (export with actfusion-export first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ExportError(f"{path}: not valid JSON: {err}") from None
    if manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    missing = [g for g in GRAPHS if g not in manifest.get("graphs", {})]
    if missing:
        raise ExportError(f"{path}: graphs {missing} missing from the manifest")
    if verify_hashes:
        for name, entry in graph_entries(manifest).items():
            file = onnx_dir / entry["file"]
            if not file.is_file():
                raise ExportError(f"{file}: listed in {MANIFEST} but missing")
            digest = sha256_file(file)
            if digest != entry["sha256"]:
                raise ExportError(f"{file}: sha256 {digest[:12]}... does not match the manifest's "
                                  f"{entry['sha256'][:12]}... (re-export; do not mix files of two exports)")
    return manifest


def graph_entries(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: entry}`` of every graph of an export: :data:`GRAPHS`, then :data:`BATCH_GRAPH` where the
    export has it (older exports do not)."""
    return {**{g: manifest["graphs"][g] for g in GRAPHS}, **manifest.get(BATCH_GRAPHS_KEY, {})}


def export_precision(manifest: Mapping[str, Any]) -> str:
    """The precision the export's graphs compute in (:data:`PRECISIONS`); exports older than the field are fp32."""
    precision = manifest.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ExportError(f"export precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return str(precision)


def samples_batched(manifest: Mapping[str, Any]) -> bool:
    """Whether the export has the denoise step over a batch of K samples."""
    return BATCH_GRAPH in manifest.get(BATCH_GRAPHS_KEY, {})


def input_axes(manifest: Mapping[str, Any], graph: str) -> dict[str, list[int | str]]:
    """``{input name: shape}`` of one graph, dynamic axes named (:data:`TIME_AXIS`, :data:`SAMPLE_AXIS`)."""
    return {i["name"]: list(i["shape"]) for i in graph_entries(manifest)[graph].get("inputs", [])}
