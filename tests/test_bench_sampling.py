"""Mechanics of the issue-13 cost benchmarks (benchmarks/bench_backends.py --sampling, profile_denoise_step.py).

No timing is asserted: only that every K is timed in interleaved rounds and that the GEMM FLOP count reads
the profiled shapes correctly.
"""
from __future__ import annotations

import torch

from actfusion_model.config import model_config
from actfusion_model.network import ActFusion
from actfusion_model.runtime import load_backend


def test_interleaved_ticks_times_every_k_round_by_round(monkeypatch) -> None:
    from benchmarks import bench_backends

    torch.manual_seed(0)
    backend = load_backend("torch", ActFusion(model_config("tiny", num_classes=4)).eval())
    order: list[int] = []
    real = bench_backends.forecast

    def spy(backend, obs, **kwargs):
        order.append(kwargs["num_samples"])
        return real(backend, obs, **kwargs)

    monkeypatch.setattr(bench_backends, "forecast", spy)
    obs = torch.randn(1, backend.config.input_dim, 6, generator=torch.Generator().manual_seed(1))
    stats = bench_backends.interleaved_ticks(backend, obs, 6, steps=2, samples=[1, 3], repeats=2)
    assert order == [1, 3] * 3  # warm-up round, then two timed rounds, K interleaved within each
    assert set(stats) == {1, 3}
    for s in stats.values():
        assert set(s) == {"total_s", "sample_s", "cpu_s", "encode_s"} and all(v >= 0 for v in s.values())


def test_gemm_flops_from_profiled_shapes() -> None:
    from benchmarks.profile_denoise_step import gemm_flops

    # (K, T, 24) @ (24, 48): the weight is an initializer, so only the data input and the output are listed
    assert gemm_flops({"input_type_shape": [{"float": [8, 1024, 24]}],
                       "output_type_shape": [{"float": [8, 1024, 48]}]}) == 2 * 8 * 1024 * 24 * 48
    # Gemm with a transposed data input (19, T) -> (T, 24) and a listed bias: 2 * T * 19 * 24
    assert gemm_flops({"input_type_shape": [{"float": [19, 1024]}, {"float": [1, 24]}],
                       "output_type_shape": [{"float": [1024, 24]}]}) == 2 * 1024 * 19 * 24
    assert gemm_flops({}) == 0.0
