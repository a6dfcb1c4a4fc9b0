"""Batched training: batch size 1 is today's step exactly; padded videos compute what they compute alone;
the batch's loss is the documented frame-weighted combination of the per-video losses."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_model.config import LossConfig, experiment_config
from actfusion_model.losses import actfusion_loss
from actfusion_model.masking import IGNORE_INDEX
from actfusion_model.network import ActFusion, training_outputs
from actfusion_training.batches import TrainingSample, collate
from tests.record_step_reference import OUT as REFERENCE, record_reference_step

LENGTHS = (37, 20, 50)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _model(**overrides) -> ActFusion:
    cfg = experiment_config("tiny", num_classes=5, input_dim=8, **overrides).model
    torch.manual_seed(0)
    return ActFusion(cfg).eval()


def _samples(lengths=LENGTHS, num_classes: int = 5, dim: int = 8) -> list[TrainingSample]:
    gen = torch.Generator().manual_seed(3)
    out = []
    for i, n in enumerate(lengths):
        targets = torch.randint(0, num_classes, (1, n), generator=gen)
        targets[0, n - 3:] = IGNORE_INDEX  # an r*N^O-style unknown tail
        visible = torch.ones(1, n, dtype=torch.bool)
        visible[0, n // 2:] = False
        out.append(TrainingSample(torch.randn(1, dim, n, generator=gen), visible, targets,
                                  torch.rand(1, n, generator=gen), None, "ant", i))
    return out


def test_batch_size_one_is_the_recorded_step_exactly():
    """Loss terms, gradients and updated weights of the pre-batching trainer (tests/record_step_reference.py)."""
    ref = torch.load(REFERENCE, weights_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        got = record_reference_step(Path(tmp), batch_size=1)
    assert got["losses"] == ref["losses"]
    assert set(got["grads"]) == set(ref["grads"])
    # Bit-exact only on the recording machine's CPU kernels: another machine's kernels (e.g. AVX-512 oneDNN)
    # sum in another order, so gradients differ by ~1e-8 absolute. A different step (batching bug, another
    # RNG draw) differs by far more. Adam's first step is ~lr * sign(grad), so a weight whose gradient is
    # rounding noise (biases before an instance norm: mathematically zero) moves by noise * lr / eps; those
    # weights are compared only through their (equal) gradients.
    for k in ref["grads"]:
        torch.testing.assert_close(got["grads"][k], ref["grads"][k], rtol=1e-4, atol=1e-7,
                                   msg=lambda m, k=k: f"{k}: {m}")
    for k in ref["weights"]:
        grad = ref["grads"].get(k)
        meaningful = torch.ones_like(ref["weights"][k], dtype=torch.bool) if grad is None else grad.abs() > 1e-6
        # atol 1e-5: far below the lr (2e-3) that a wrong step moves a weight by
        torch.testing.assert_close(got["weights"][k][meaningful], ref["weights"][k][meaningful], rtol=0,
                                   atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_collate_pads_and_marks_valid_frames():
    batch = collate(_samples())
    assert batch.features.shape == (3, 8, 50) and batch.lengths == list(LENGTHS) and batch.frames == sum(LENGTHS)
    assert batch.valid.sum(dim=1).tolist() == list(LENGTHS)
    assert (batch.targets[1, 20:] == IGNORE_INDEX).all() and not batch.visible[1, 20:].any()
    assert (batch.features[1, :, 20:] == 0).all()
    single = collate(_samples()[:1])
    assert single.valid is None


@pytest.mark.parametrize("self_condition,deep", [(False, False), (True, False), (False, True)])
def test_padded_batch_outputs_equal_each_video_alone(self_condition: bool, deep: bool):
    """``deep``: 7 encoder and 6 decoder layers, so dilations (up to 64 / 32) exceed the videos' lengths."""
    extra = dict(enc_layers=7, cond_layers=(3, 6), dec_layers=6) if deep else {}
    model = _model(self_condition=self_condition, **extra)
    samples = _samples()
    batch = collate(samples)
    gen = torch.Generator().manual_seed(1)
    steps = torch.tensor([10, 500, 999])
    noisy = torch.rand(3, 5, 50, generator=gen)
    previous = torch.softmax(torch.randn(3, 5, 50, generator=gen), dim=1) if self_condition else None
    with torch.no_grad():
        enc, cond = model.encode(batch.features, batch.visible, batch.valid)
        dec = model.decoder(cond, steps, noisy, batch.valid, previous)
        for i, (s, n) in enumerate(zip(samples, LENGTHS)):
            enc1, cond1 = model.encode(s.features, s.visible)
            prev1 = None if previous is None else previous[i:i + 1, :, :n]
            dec1 = model.decoder(cond1, steps[i:i + 1], noisy[i:i + 1, :, :n], None, prev1)
            torch.testing.assert_close(enc[i:i + 1, :, :n], enc1, rtol=0, atol=1e-5)
            torch.testing.assert_close(cond[i:i + 1, :, :n], cond1, rtol=0, atol=1e-5)
            torch.testing.assert_close(dec[i:i + 1, :, :n], dec1, rtol=0, atol=1e-5)


def test_padding_changes_nothing_without_the_mask_it_would():
    """The mask matters: without it the short video's outputs differ (the test above can fail)."""
    model = _model()
    samples = _samples()
    batch = collate(samples)
    with torch.no_grad():
        enc, _ = model.encode(batch.features, batch.visible)  # no valid mask
        enc1, _ = model.encode(samples[1].features, samples[1].visible)
    assert (enc[1:2, :, :20] - enc1).abs().max() > 1e-3


def test_padded_loss_is_the_frame_weighted_combination():
    """Each term of a padded batch = sum_b n_b L_b / sum_b n_b, n_b = the video's element count."""
    samples = _samples()
    batch = collate(samples)
    gen = torch.Generator().manual_seed(5)
    enc, dec = torch.randn(3, 5, 50, generator=gen), torch.randn(3, 5, 50, generator=gen)
    cfg = LossConfig(enc_boundary=0.1)
    weights = torch.tensor([1.0, 0.5, 2.0, 3.0, 0.2])
    got = actfusion_loss(enc, dec, batch.targets, batch.boundary, cfg, class_weights=weights, valid=batch.valid)
    per_video = []
    for i, (s, n) in enumerate(zip(samples, LENGTHS)):
        terms = actfusion_loss(enc[i:i + 1, :, :n], dec[i:i + 1, :, :n], s.targets, s.boundary, cfg,
                               class_weights=weights)
        per_video.append({"ce": int((s.targets != IGNORE_INDEX).sum()), "pairs": n - 1, **terms})
    for key in ("enc_ce", "dec_ce", "enc_smooth", "dec_smooth", "enc_boundary", "dec_boundary"):
        count = "ce" if key.endswith("ce") else "pairs"
        expected = sum(v[count] * v[key] for v in per_video) / sum(v[count] for v in per_video)
        assert got[key].item() == pytest.approx(expected.item(), rel=1e-5), key


def test_padded_frames_get_no_gradient():
    """Padded input frames (left visible, so only the padding mask can stop them) do not affect the loss."""
    model = _model()
    batch = collate(_samples())
    features = batch.features.clone().requires_grad_(True)
    visible = torch.ones_like(batch.visible)
    out = training_outputs(model, features, visible, batch.targets, generator=torch.Generator().manual_seed(0),
                           valid=batch.valid)
    terms = actfusion_loss(out.enc_logits, out.dec_logits, batch.targets, batch.boundary, LossConfig(),
                           valid=batch.valid)
    terms["total"].backward()
    assert features.grad[1, :, 20:].abs().max() == 0 and features.grad[0, :, 37:].abs().max() == 0
    assert features.grad[1, :, :20].abs().max() > 0
    assert np.isfinite(terms["total"].item())
