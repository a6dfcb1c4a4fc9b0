"""benchmarks/gpu_check.py without a GPU: its arguments, its plan, the targets' verdicts and its CPU parts."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def test_dry_run_lists_every_path_preset_and_the_targets(gpu_check, capsys) -> None:
    assert gpu_check.main(["--dry-run", "--presets", "50salads", "--lengths", "1024", "2048"]) == 0
    out = capsys.readouterr().out.splitlines()
    paths = [*gpu_check.TORCH_PATHS, *gpu_check.EXPORT_PATHS]
    assert [line.split(":")[0] for line in out[:-1]] == [f"50salads {p}" for p in paths]
    assert "T 1024 2048 x K 1 8" in out[0] and "step <= 1.0 ms" in out[-1]


@pytest.mark.parametrize("argv, message", [
    (["--lengths", "3"], "each T must be >= 5"),
    (["--samples", "0"], "each K must be >= 1"),
    (["--budget-s", "0"], "--budget-s must be > 0"),
    (["--wheels", "/nonexistent/wheels"], "no directory /nonexistent/wheels"),
    (["--presets", "kitchen"], "invalid choice: 'kitchen'"),
])
def test_bad_arguments_exit_2_with_one_line(gpu_check, capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_without_cuda_it_says_so_and_exits_0(gpu_check, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here")
    assert gpu_check.main(["--presets", "50salads"]) == 0
    assert "no CUDA GPU here" in capsys.readouterr().out


def test_targets_pass_only_when_all_three_hold(gpu_check) -> None:
    def row(path: str, k: int, step: float, whole: float) -> dict:
        return {"preset": "50salads", "path": path, "T": 2048, "K": k, "step": {"median_ms": step},
                "forecast": {"median_ms": whole}}

    rows = [row("fast", 1, 0.5, 15.0), row("fast", 8, 0.8, 20.0),
            row("slow-k", 1, 0.5, 10.0), row("slow-k", 8, 0.8, 20.0),  # 2x K = 1
            row("slow-step", 1, 0.9, 20.0), row("slow-step", 8, 1.2, 25.0)]
    verdicts = {line.split()[2].rstrip(":"): line.split()[0] for line in gpu_check.targets(rows)}
    assert verdicts == {"fast": "PASS", "slow-k": "FAIL", "slow-step": "FAIL"}


def test_cpu_smoke_runs_the_exports_and_the_reference(gpu_check, capsys, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the GPU run would start")
    torch.set_num_threads(1)
    assert gpu_check.main(["--cpu-smoke", "--presets", "50salads", "--lengths", "64",
                           "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for precision in ("fp32", "fp16"):
        assert (tmp_path / "50salads" / precision / "manifest.json").is_file()
        assert f"onnxruntime-cpu-{precision} vs torch CPU at T=64" in out
    assert "CPU parts ran" in out


def test_wheels_without_the_gpu_packages_are_reported(gpu_check, capsys, tmp_path: Path) -> None:
    gpu_check.install_wheels(tmp_path, tmp_path / "site")
    assert "no onnxruntime-gpu or tensorrt wheel" in capsys.readouterr().out
