"""Schedule, DDIM arithmetic and typed configuration."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from actfusion_model.config import ConfigError, experiment_config, load_experiment_config, model_config, preset_with
from actfusion_model.diffusion import (
    DDIMSchedule,
    DDIMStepOutput,
    cosine_alphas_cumprod,
    ddim_coefficients,
    ddim_sample,
    ddim_schedule,
    ddim_step,
    ddim_timesteps,
    sample_noise,
)
from actfusion_model.runtime import schedule_for


def test_cosine_schedule_matches_reported_values() -> None:
    abar = cosine_alphas_cumprod(1000)
    assert abar.dtype == torch.float64
    assert 1 - abar[0].item() == pytest.approx(4.13e-5, rel=1e-2)  # beta_0
    assert abar[999].item() == pytest.approx(2.4e-9, rel=5e-2)


def test_ddim_timesteps_25_of_1000() -> None:
    steps = ddim_timesteps(25, 1000)
    assert steps[0] == (999, 959) and steps[1] == (959, 919) and steps[-1] == (39, -1) and len(steps) == 25


def test_ddim_step_with_eta_zero_is_deterministic_and_recovers_x0_at_the_end() -> None:
    abar = cosine_alphas_cumprod(1000)
    x0 = torch.tensor([1.0, -1.0])
    eps = torch.tensor([0.3, -0.2])
    t, tp = 500, 400
    x_t = abar[t].sqrt().float() * x0 + (1 - abar[t]).sqrt().float() * eps
    out = ddim_step(x_t, x0, ddim_coefficients(abar, t, tp, eta=0.0), None)
    expected = abar[tp].sqrt().float() * x0 + (1 - abar[tp]).sqrt().float() * eps
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs noise"):
        ddim_step(x_t, x0, ddim_coefficients(abar, t, tp, eta=1.0), None)


def test_presets_follow_table_s5() -> None:
    assert (model_config("50salads").enc_layers, model_config("50salads").dec_dim) == (10, 24)
    b = model_config("breakfast")
    assert (b.enc_layers, b.enc_dim, b.dec_dim, b.snr_scale, b.cond_dim) == (12, 256, 128, 0.5, 768)
    assert model_config("gtea").cond_layers == (7, 9)


def test_preset_with_replaces_or_adds_only_the_keys_it_names() -> None:
    base = {"model": {"a": 1, "b": 2}, "loss": {"c": 3}}
    derived = preset_with(base, model={"b": 5}, training={"e": 1})
    assert derived == {"model": {"a": 1, "b": 5}, "loss": {"c": 3}, "training": {"e": 1}}
    assert base == {"model": {"a": 1, "b": 2}, "loss": {"c": 3}}  # the base is not touched
    derived["loss"]["c"] = 0
    assert base["loss"]["c"] == 3  # nor shared with the copy
    assert preset_with(base) == base


def test_gtea_is_50salads_but_for_its_conditioning_rate_and_optimisation() -> None:
    """What the GTEA preset resolves to, field by field (recorded before it was written as a derived preset)."""
    salads, gtea = experiment_config("50salads"), experiment_config("gtea")
    differ = {(section, name): (getattr(getattr(gtea, section), name))
              for section in ("model", "loss", "masking", "training")
              for name in (f.name for f in dataclasses.fields(getattr(salads, section)))
              if getattr(getattr(salads, section), name) != getattr(getattr(gtea, section), name)}
    assert differ == {("model", "cond_layers"): (7, 9), ("model", "sample_rate"): 1,
                      ("training", "epochs"): 10000, ("training", "weight_decay"): 1e-6,
                      ("training", "median_filter"): 0}


def test_yaml_overrides_and_clear_errors(tmp_path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("preset: gtea\nmodel: {num_classes: 11, ddim_steps: 10}\ntraining: {lr: 0.001}\n")
    cfg = load_experiment_config(good)
    assert cfg.model.num_classes == 11 and cfg.model.ddim_steps == 10 and cfg.training.lr == 0.001
    cases = {
        "model: {num_clases: 3}\n": r"unknown key\(s\) \['num_clases'\]",
        "model: {num_classes: three}\n": r"model.num_classes: expected an integer, got 'three'",
        "model: {num_classes: 3, cond_layers: [12]}\n": r"cond_layers.*\[0, enc_layers=10\)",
        "model: {num_classes: 3, enc_kernel: 4}\n": "enc_kernel=4: must be odd",
        "masking: {types: [full, nope]}\n": r"unknown \['nope'\]",
        "preset: imagenet\n": "unknown preset 'imagenet'",
        "extras: {}\n": r"unknown config section\(s\) \['extras'\]",
    }
    for i, (text, msg) in enumerate(cases.items()):
        p = tmp_path / f"bad{i}.yaml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=msg):
            load_experiment_config(p)


# -- DDIMSchedule ----------------------------------------------------------------------------------
def test_schedule_holds_the_pairs_and_coefficients_and_is_frozen() -> None:
    schedule = DDIMSchedule.create(25, num_timesteps=1000, eta=0.5, snr_scale=2.0)
    abar = cosine_alphas_cumprod(1000)
    assert schedule.pairs == tuple(ddim_timesteps(25, 1000)) and schedule.num_steps == 25
    assert schedule.coefficients == tuple(ddim_coefficients(abar, t, tp, 0.5) for t, tp in schedule.pairs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.eta = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"ddim steps must be in \[1, 1000\], got 0"):
        DDIMSchedule.create(0)


def test_schedule_is_built_once_per_setting() -> None:
    cfg = model_config("tiny", num_classes=3)
    assert schedule_for(cfg) is schedule_for(cfg, cfg.ddim_steps, cfg.ddim_eta)
    assert schedule_for(cfg, 3) is ddim_schedule(3, cfg.num_timesteps, cfg.ddim_eta, cfg.snr_scale)
    assert schedule_for(cfg, 3) is not schedule_for(cfg, 4)


def test_step_returns_the_previous_sample_and_the_clamped_x0() -> None:
    schedule = DDIMSchedule.create(4, num_timesteps=100, eta=0.0, snr_scale=1.5)
    x_t = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1)), dim=1)
    out = schedule.step(0, x_t, probs, None)
    assert isinstance(out, DDIMStepOutput)
    torch.testing.assert_close(out.pred_x0, (probs * 2 - 1) * 1.5)
    assert float(out.pred_x0.abs().max()) <= 1.5
    assert torch.equal(out.prev_sample, ddim_step(x_t, out.pred_x0, schedule.coefficients[0], None))


def test_ddim_sample_runs_the_schedule_and_checks_the_noise() -> None:
    schedule = DDIMSchedule.create(3, num_timesteps=50, eta=1.0)
    seen: list[int] = []

    def denoise(t: int, x01: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        assert float(x01.min()) >= 0 and float(x01.max()) <= 1
        return torch.zeros_like(x01)

    probs = ddim_sample(denoise, schedule, sample_noise((1, 4, 6), 3, generator=torch.Generator().manual_seed(2)))
    assert seen == [t for t, _ in schedule.pairs]
    torch.testing.assert_close(probs, torch.full((1, 4, 6), 0.25))
    with pytest.raises(ValueError, match="noise has shape"):
        ddim_sample(denoise, schedule, torch.zeros(2, 1, 4, 6))
