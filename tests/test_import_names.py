"""Import names stay unambiguous on a robot: the repository's model/ and training/ directories install (and are
imported) as ``actfusion_model`` and ``actfusion_training``; nothing installs a bare ``model`` or ``training``."""
from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("actfusion_ros", "model", "training", "tests", "benchmarks", "launch", "scripts")
TOP_LEVEL = {"actfusion_ros", "actfusion_model", "actfusion_training"}


def _python_files() -> list[Path]:
    files = [p for d in SOURCES if (ROOT / d).is_dir() for p in sorted((ROOT / d).rglob("*.py"))]
    return files + [ROOT / "setup.py"]


def test_no_source_imports_a_bare_model_or_training_package() -> None:
    offenders = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                          if n.split(".")[0] in ("model", "training")]
    assert not offenders, offenders


def test_no_command_line_runs_a_bare_module() -> None:
    """``python -m training.x`` in a doc or script would fail on an installed package."""
    offenders = []
    for path in [*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*.sh"),
                 *(ROOT / "scripts").glob("*"), ROOT / "Makefile", *_python_files()]:
        if not path.is_file() or path == Path(__file__).resolve():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for bad in ("-m training.", "-m model.", '"-m", "training.', '"-m", "model.'):
                if bad in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, offenders


@pytest.mark.slow
def test_the_wheel_installs_only_prefixed_top_level_packages(tmp_path: Path) -> None:
    """Build the real wheel (what pip or colcon would install) and list its top-level names."""
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = tmp_path.glob("actfusion_ros-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == TOP_LEVEL, top
    assert "actfusion_model/runtime/onnx_backend.py" in names and "actfusion_model/features/simple.py" in names
    assert "actfusion_training/configs/cpu_hour.yaml" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    targets = [line.split("=", 1)[1].strip().split(":")[0] for line in text.splitlines() if "=" in line]
    assert targets and all(t.split(".")[0] in TOP_LEVEL for t in targets), targets
