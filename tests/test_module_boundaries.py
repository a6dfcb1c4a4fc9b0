"""One list of backend names, and the module boundaries of the inference path (runtime backends read the
export's manifest, not the exporter; no private names across modules)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from actfusion_model.runtime import BACKENDS

ROOT = Path(__file__).resolve().parents[1]


def test_one_list_of_backend_names() -> None:
    from actfusion_model import backend_names
    from actfusion_ros import node_params, stream_model

    assert BACKENDS is backend_names.BACKENDS is node_params.BACKENDS is stream_model.BACKENDS
    assert node_params.spec("backend").choices == BACKENDS
    source = (ROOT / "actfusion_ros" / "tools" / "replay" / "cli.py").read_text()
    assert "choices=BACKENDS" in source and '"onnxruntime", "tensorrt")' not in source


def test_runtime_backends_import_the_manifest_reader_not_the_exporter() -> None:
    code = ("import sys, actfusion_model.runtime.onnx_backend, actfusion_model.runtime.tensorrt_backend, "
            "actfusion_model.runtime.torch_backend; "
            "print([m for m in ('actfusion_model.export', 'actfusion_model.onnx_graphs') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_runtime_modules_import_no_private_names() -> None:
    offenders = []
    extra = [ROOT / "model" / f for f in ("export.py", "export_manifest.py", "onnx_graphs.py", "forecast.py")]
    for path in sorted((ROOT / "model" / "runtime").glob("*.py")) + extra:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("actfusion_model"):
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders


def test_the_network_and_the_forecast_function_do_not_import_the_runtime() -> None:
    code = ("import sys, actfusion_model.network, actfusion_model.forecast; "
            "print(sorted(m for m in sys.modules if m.startswith('actfusion_model.runtime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
