"""Training options of issue 12 §2: time budget, LR schedule, weight EMA, decoder-learning options.

Self-contained data (tests/record_step_reference.write_toy_dataset: 4 training videos, 1 held out for
validation), the tiny preset, one intra-op thread. The time budget runs on a fake clock.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from actfusion_model.checkpoint import load_checkpoint
from actfusion_model.config import ConfigError, LossConfig, TrainingConfig, experiment_config
from actfusion_model.diffusion import cosine_alphas_cumprod, ddim_timesteps, min_snr_weights, training_timesteps
from actfusion_model.export import ExportError, export_onnx
from actfusion_model.losses import actfusion_loss
from actfusion_model.network import ActFusion, training_outputs
from actfusion_model.runtime.base import BackendError
from actfusion_model.runtime.torch_backend import TorchBackend
from actfusion_training.schedule import WeightAverage, budget_total_steps, lr_factor
from actfusion_training.train import main as train_main
from actfusion_training.trainer import BUDGET_TIMING_STEPS, Trainer, TrainOptions, train
from tests.record_step_reference import write_toy_dataset
from tests.test_train import _read_csv, loss_rows, state_of, write_config

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy"))


class FakeClock:
    """Every reading advances ``step`` seconds (the trainer reads it at the start and after each step)."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.reads = 0.0, step, 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now


def _train(config: Path, data: Path, out: Path, **kw) -> str:
    status, _ = train(TrainOptions(config=config, data_root=data, split=1, out=out, progress=False, **kw))
    return status


# ---------------------------------------------------------------------------------------------- time budget


def test_time_budget_stops_mid_epoch_validates_saves_and_resumes(data: Path, tmp_path: Path):
    cfg = write_config(tmp_path / "c.yaml", epochs=3, accumulate=1, eval_every=10, checkpoint_every=10)
    straight = tmp_path / "straight"
    assert _train(cfg, data, straight) == "finished"
    run = tmp_path / "run"
    # 3 training videos per epoch, one step each; 60 s per clock reading: spent (>= 90 s) after step 2.
    assert _train(cfg, data, run, time_budget_minutes=1.5, clock=FakeClock(60.0)) == "budget"
    state = state_of(run)
    assert state["progress"]["step"] == 2 and state["progress"]["epoch"] == 0  # stopped inside epoch 1
    assert state["progress"]["stopped_on_budget"] is True
    best = load_checkpoint(run / "best.pt").metadata
    last = load_checkpoint(run / "last.pt").metadata
    assert best["validation"]["epoch"] == 1 and last["time_budget_minutes"] == 1.5 and last["stopped_on_budget"]
    epochs = _read_csv(run / "epochs.csv")
    assert len(epochs) == 1 and epochs[0]["val_combined"] != "" and epochs[0]["iterations"] == "2"
    # --resume gets a fresh budget (none here): the run continues and ends where the straight run did.
    status, _ = train(TrainOptions(config=cfg, data_root=data, split=1, out=run, resume=True, progress=False))
    assert status == "finished"
    a, b = state_of(run), state_of(straight)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["progress"]["stopped_on_budget"] is False
    assert [r["iteration"] for r in loss_rows(run)] == [r["iteration"] for r in loss_rows(straight)]


def test_time_budget_at_an_epoch_end_and_cli(data: Path, tmp_path: Path, capsys):
    cfg = write_config(tmp_path / "c.yaml", epochs=3, accumulate=1, eval_every=10, checkpoint_every=10)
    run = tmp_path / "run"
    assert _train(cfg, data, run, time_budget_minutes=2.5, clock=FakeClock(60.0)) == "budget"
    state = state_of(run)
    assert state["progress"]["step"] == 3 and state["progress"]["epoch"] == 1 and (run / "best.pt").is_file()
    assert train_main(["--config", str(cfg), "--data-root", str(data), "--split", "1", "--out",
                       str(tmp_path / "x"), "--time-budget", "0"]) == 2
    assert "--time-budget must be > 0" in capsys.readouterr().err


def test_budget_total_steps_estimate():
    # 10 steps timed in 20 s, 100 s left: 50 more steps after the 12 done; never past the epochs' cap.
    assert budget_total_steps(12, 10, 20.0, 100.0, cap=1000) == 62
    assert budget_total_steps(12, 10, 20.0, 100.0, cap=40) == 40
    assert budget_total_steps(12, 10, 20.0, -5.0, cap=40) == 13


def test_cosine_schedule_under_a_budget_spans_the_estimate(data: Path, tmp_path: Path):
    cfg = write_config(tmp_path / "c.yaml", epochs=50, accumulate=1, eval_every=100, checkpoint_every=100,
                       validation_fraction=0.0, lr_schedule="cosine")
    seen: list[int | None] = []

    def watch(trainer: Trainer, iteration: int) -> None:
        seen.append(trainer.progress.schedule_total)
        if iteration == BUDGET_TIMING_STEPS + 3:
            trainer.stop.requested = True

    # 1 s per reading: timing starts after step 1 and has timed 10 steps at step 11 (10 s): 1 s per step.
    assert _train(cfg, data, tmp_path / "run", time_budget_minutes=1.0, clock=FakeClock(1.0),
                  on_iteration=watch) == "interrupted"
    assert seen[BUDGET_TIMING_STEPS - 1] is None
    # the budget starts at the first reading (1 s); step 11 reads 12 s: 49 s left at 1 s/step -> 11 + 49.
    assert seen[BUDGET_TIMING_STEPS] == 60 and seen[-1] == 60


# ---------------------------------------------------------------------------------------------- LR schedule


def test_lr_factor_warmup_cosine_constant():
    cos = TrainingConfig(lr_schedule="cosine", warmup_iters=4, min_lr_ratio=0.1)
    assert [lr_factor(cos, s, 20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(cos, 4, 20) == pytest.approx(1.0)
    assert lr_factor(cos, 12, 20) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(cos, 20, 20) == pytest.approx(0.1) and lr_factor(cos, 99, 20) == pytest.approx(0.1)
    const = TrainingConfig()
    assert all(lr_factor(const, s, 20) == 1.0 for s in range(30))
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainingConfig(lr_schedule="linear")


def test_trainer_applies_the_schedule_per_step(data: Path, tmp_path: Path):
    cfg = write_config(tmp_path / "c.yaml", epochs=2, accumulate=1, validation_fraction=0.0, lr=0.01,
                       lr_schedule="cosine", warmup_iters=2, min_lr_ratio=0.0, eval_every=10, checkpoint_every=10)
    lrs: list[float] = []
    trainer_cfg = experiment_config("tiny", {"training": {"lr_schedule": "cosine", "warmup_iters": 2}}).training
    assert _train(cfg, data, tmp_path / "run",
                  on_iteration=lambda t, i: lrs.append(t.optimizer.param_groups[0]["lr"])) == "finished"
    total = 2 * 4  # 4 training videos, one step each, 2 epochs
    expected = [0.01 * lr_factor(trainer_cfg, s, total) for s in range(total)]
    assert lrs == pytest.approx(expected) and lrs[0] == pytest.approx(0.005) and lrs[-1] < 0.001


# ---------------------------------------------------------------------------------------------- EMA


def test_weight_average_math():
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(3.0)
    ema.update(net)  # d = min(0.5, 1/10) = 0.1: 0.1 * 1 + 0.9 * 3
    assert ema.shadow["weight"].item() == pytest.approx(2.8)
    with ema.applied(net):
        assert net.weight.item() == pytest.approx(2.8)
    assert net.weight.item() == 3.0


def test_ema_is_validated_saved_and_resumed_exactly(data: Path, tmp_path: Path):
    cfg = write_config(tmp_path / "c.yaml", epochs=2, accumulate=1, ema_decay=0.9)
    straight = tmp_path / "straight"
    assert _train(cfg, data, straight) == "finished"
    state = state_of(straight)
    last = load_checkpoint(straight / "last.pt")
    assert last.metadata["ema_weights"] is True
    shadow = state["ema"]["shadow"]
    saved = last.model.state_dict()
    assert all(torch.equal(saved[k], shadow[k]) for k in shadow)
    assert any(not torch.equal(state["model"][k], shadow[k]) for k in shadow)  # EMA != trained weights
    run = tmp_path / "run"

    def stop_at_4(trainer: Trainer, iteration: int) -> None:
        if iteration == 4:
            trainer.stop.requested = True

    assert _train(cfg, data, run, on_iteration=stop_at_4) == "interrupted"
    assert _train(cfg, data, run, resume=True) == "finished"
    resumed = state_of(run)
    assert resumed["ema"]["updates"] == state["ema"]["updates"]
    assert all(torch.equal(resumed["ema"]["shadow"][k], shadow[k]) for k in shadow)


# ---------------------------------------------------------------------------------------------- decoder options


def _tiny(**model) -> ActFusion:
    torch.manual_seed(0)
    return ActFusion(experiment_config("tiny", num_classes=5, input_dim=8, **model).model).eval()


def _inputs(b: int = 2, t: int = 30):
    gen = torch.Generator().manual_seed(4)
    return (torch.randn(b, 8, t, generator=gen), torch.ones(b, t, dtype=torch.bool),
            torch.randint(0, 5, (b, t), generator=gen))


def test_k_timesteps_share_one_encoder_pass():
    model = _tiny()
    feats, visible, targets = _inputs()
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    out = training_outputs(model, feats, visible, targets, generator=torch.Generator().manual_seed(0),
                           loss_cfg=LossConfig(dec_timesteps_per_video=3))
    assert len(calls) == 1 and out.dec_logits.shape == (6, 5, 30) and out.steps.shape == (6,)
    # run k of video b sits at k*B + b and is the decoder on video b's condition
    _, cond = model.encode(feats, visible)
    from actfusion_model.diffusion import labels_to_signal, q_sample, signal_to_unit
    gen = torch.Generator().manual_seed(0)
    steps = torch.randint(0, 1000, (6,), generator=gen)
    noise = torch.randn(6, 5, 30, generator=gen)
    onehot = torch.nn.functional.one_hot(targets, 5).permute(0, 2, 1).float().repeat(3, 1, 1)
    x01 = signal_to_unit(q_sample(labels_to_signal(onehot, 1.0), steps, noise, model.alphas_cumprod), 1.0)
    for run in (1, 4):
        ref = model.decoder(cond[run % 2:run % 2 + 1], steps[run:run + 1], x01[run:run + 1])
        torch.testing.assert_close(out.dec_logits[run:run + 1], ref)
    # the decoder terms average the K runs
    cfg = LossConfig(dec_timesteps_per_video=3, class_weighting=False)
    terms = actfusion_loss(out.enc_logits, out.dec_logits, targets, torch.zeros(2, 30), cfg)
    per_run = [actfusion_loss(out.enc_logits, out.dec_logits[2 * k:2 * k + 2], targets, torch.zeros(2, 30), cfg)
               for k in range(3)]
    assert terms["dec_ce"].item() == pytest.approx(sum(r["dec_ce"].item() for r in per_run) / 3, rel=1e-5)
    assert terms["enc_ce"].item() == pytest.approx(per_run[0]["enc_ce"].item(), rel=1e-6)


def test_default_decoder_options_draw_what_the_original_pass_drew():
    model = _tiny()
    feats, visible, targets = _inputs()
    out = training_outputs(model, feats, visible, targets, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.steps, torch.randint(0, 1000, (2,), generator=torch.Generator().manual_seed(0)))
    assert model.decoder.conv_in.in_channels == 5


def test_train_on_ddim_steps_draws_only_the_sampler_steps():
    model = _tiny()
    feats, visible, targets = _inputs(b=4)
    allowed = {t for t, _ in ddim_timesteps(model.cfg.ddim_steps, model.cfg.num_timesteps)}
    out = training_outputs(model, feats, visible, targets, generator=torch.Generator().manual_seed(0),
                           loss_cfg=LossConfig(train_on_ddim_steps=True, dec_timesteps_per_video=8))
    assert set(out.steps.tolist()) <= allowed and len(set(out.steps.tolist())) > 1
    assert training_timesteps(1000, 5).tolist() == sorted(allowed)


def test_min_snr_weights_and_their_effect_on_the_decoder_terms():
    abar = cosine_alphas_cumprod(1000)
    every = training_timesteps(1000)
    w = min_snr_weights(every, abar, 5.0, every)
    assert w.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert w[0] > w[500] > w[999] and w[0] == pytest.approx(w[1])  # clamped at gamma near t = 0
    gen = torch.Generator().manual_seed(2)
    enc, dec = torch.randn(2, 5, 20, generator=gen), torch.randn(2, 5, 20, generator=gen)
    targets, bnd = torch.randint(0, 5, (2, 20), generator=gen), torch.rand(2, 20, generator=gen)
    cfg = LossConfig(class_weighting=False)
    weights = torch.tensor([2.0, 0.5])
    got = actfusion_loss(enc, dec, targets, bnd, cfg, dec_weights=weights)
    plain = actfusion_loss(enc, dec, targets, bnd, cfg)
    one = [actfusion_loss(enc[i:i + 1], dec[i:i + 1], targets[i:i + 1], bnd[i:i + 1], cfg) for i in range(2)]
    for key in ("dec_ce", "dec_smooth", "dec_boundary"):
        assert got[key].item() == pytest.approx((2.0 * one[0][key] + 0.5 * one[1][key]).item() / 2, rel=1e-5)
    assert got["enc_ce"].item() == plain["enc_ce"].item()
    with pytest.raises(ConfigError, match="timestep_weighting"):
        LossConfig(timestep_weighting="snr")


def test_self_conditioning_widens_conv_in_feeds_previous_x0_and_is_refused_by_runtime(tmp_path: Path):
    model = _tiny(self_condition=True)
    assert model.decoder.conv_in.in_channels == 10
    feats, visible, targets = _inputs()
    _, cond = model.encode(feats, visible)
    x01, steps = torch.rand(2, 5, 30), torch.tensor([100, 800])
    prev = torch.softmax(torch.randn(2, 5, 30), dim=1)
    assert not torch.allclose(model.decoder(cond, steps, x01), model.decoder(cond, steps, x01, previous_x0=prev))
    with pytest.raises(ValueError, match="self_condition"):
        _tiny().decoder(cond, steps, x01, previous_x0=prev)
    out = training_outputs(model, feats, visible, targets, generator=torch.Generator().manual_seed(0))
    assert out.dec_logits.shape == (2, 5, 30)
    probs = model.sample(cond, generator=torch.Generator().manual_seed(0))
    assert probs.shape == (2, 5, 30) and torch.allclose(probs.sum(1), torch.ones(2, 30))
    # The eager forecast path (evaluation) self-conditions exactly like ActFusion.sample.
    from actfusion_model.diffusion import sample_noise
    from actfusion_model.forecast import EagerBackend, forecast
    one = feats[:1, :, :12]
    noise = sample_noise((1, 5, 12 + 20), model.cfg.ddim_steps, generator=torch.Generator().manual_seed(1))
    fc = forecast(EagerBackend(model), one, horizon=20, noise=noise)
    padded = torch.cat([one, one.new_zeros(1, one.shape[1], 20)], dim=2)
    mask = torch.zeros(1, 32, dtype=torch.bool)
    mask[:, :12] = True
    _, cond1 = model.encode(padded, mask)
    direct = model.sample(cond1, noise=noise)
    assert torch.allclose(torch.cat([fc.observed_probs, fc.future_probs], dim=-1).reshape(direct.shape), direct,
                          atol=1e-5)
    with pytest.raises(BackendError, match="self_condition"):
        TorchBackend(model)
    with pytest.raises(ExportError, match="self_condition"):
        export_onnx(model, tmp_path / "onnx")


def test_a_run_saved_before_the_new_options_resumes(data: Path, tmp_path: Path):
    """trainer_state.pt written without the new config keys: --resume treats them as their defaults."""
    cfg = write_config(tmp_path / "c.yaml", epochs=1, accumulate=1, validation_fraction=0.0)
    run = tmp_path / "run"
    assert _train(cfg, data, run) == "finished"
    state = state_of(run)
    for key in ("batch_size", "lr_schedule", "warmup_iters", "min_lr_ratio", "ema_decay"):
        del state["experiment"]["training"][key]
    del state["experiment"]["model"]["self_condition"]
    del state["experiment"]["loss"]["dec_timesteps_per_video"]
    torch.save(state, run / "trainer_state.pt")
    assert _train(cfg, data, run, resume=True, epochs=2) == "finished"
    assert state_of(run)["progress"]["epoch"] == 2
    bigger = write_config(tmp_path / "b.yaml", epochs=1, accumulate=1, validation_fraction=0.0, batch_size=2)
    with pytest.raises(Exception, match="batch_size"):
        _train(bigger, data, run, resume=True, epochs=3)
