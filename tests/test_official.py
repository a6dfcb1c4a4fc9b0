"""The authors' checkpoints: key mapping, every key used, and numerical equivalence."""
from __future__ import annotations

import pytest
import torch

from actfusion_model.checkpoint import CheckpointError, load_checkpoint
from actfusion_model.config import model_config
from actfusion_model.diffusion import sample_noise
from actfusion_model.network import ActFusion
from actfusion_model.official import convert_official_state_dict, main as convert_main
from tests.official_reference import fake_official_state_dict, official_ddim, official_decoder, official_encoder


@pytest.fixture(scope="module", params=["50salads", "breakfast"])
def converted(request, official_shapes):
    preset = request.param
    num_classes, shapes = official_shapes[preset]
    cfg = model_config(preset, num_classes=num_classes, ddim_steps=4)
    official = fake_official_state_dict(shapes, cfg, seed=1)
    model = ActFusion(cfg).eval()
    model.load_state_dict(convert_official_state_dict(official, cfg))
    return cfg, official, model


def test_every_official_key_maps_and_every_tensor_of_ours_is_filled(official_shapes) -> None:
    for preset, (num_classes, shapes) in official_shapes.items():
        cfg = model_config(preset, num_classes=num_classes)
        official = fake_official_state_dict(shapes, cfg)
        ours = convert_official_state_dict(official, cfg)
        assert set(ours) == set(ActFusion(cfg).state_dict())
        assert len(shapes) == {"50salads": 261, "breakfast": 287}[preset]


@pytest.mark.parametrize("length", [37, 300])
def test_encoder_matches_authors_layers(converted, length: int) -> None:
    cfg, official, model = converted
    feats = torch.randn(1, cfg.input_dim, length, generator=torch.Generator().manual_seed(length))
    mask = torch.ones(1, length, dtype=torch.bool)
    mask[:, length // 3:] = False
    with torch.no_grad():
        ours = model.encode(feats, mask)
        ref = official_encoder(official, cfg, feats, mask)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_decoder_step_and_full_ddim_match_authors(converted) -> None:
    cfg, official, model = converted
    length = 60
    feats = torch.randn(1, cfg.input_dim, length, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        _, cond = model.encode(feats)
        x01 = torch.rand(1, cfg.num_classes, length, generator=torch.Generator().manual_seed(6))
        torch.testing.assert_close(model.denoise(cond, 959, x01), official_decoder(official, cfg, cond, 959, x01),
                                   rtol=1e-4, atol=1e-4)
        noise = sample_noise((1, cfg.num_classes, length), cfg.ddim_steps, generator=torch.Generator().manual_seed(7))
        ours = model.sample(cond, noise=noise)
        ref = official_ddim(official, cfg, cond, noise.double())
    torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-4)


def test_unknown_or_missing_official_keys_are_errors(official_shapes) -> None:
    num_classes, shapes = official_shapes["50salads"]
    cfg = model_config("50salads", num_classes=num_classes)
    official = fake_official_state_dict(shapes, cfg)
    extra = dict(official, **{"encoder.encoder.layers.0.bogus.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unknown key.*bogus"):
        convert_official_state_dict(extra, cfg)
    missing = dict(official)
    del missing["decoder.conv_out.bias"]
    with pytest.raises(CheckpointError, match=r"missing: decoder.conv_out.bias \(19,\)"):
        convert_official_state_dict(missing, cfg)
    with pytest.raises(CheckpointError, match="shape: encoder.conv_out.weight"):
        convert_official_state_dict(official, model_config("50salads", num_classes=20))


def test_convert_cli_writes_a_loadable_checkpoint(tmp_path, official_shapes) -> None:
    num_classes, shapes = official_shapes["50salads"]
    cfg = model_config("50salads", num_classes=num_classes)
    src = tmp_path / "best_combined_model.pth"
    torch.save(fake_official_state_dict(shapes, cfg), src)
    out = tmp_path / "model.pt"
    assert convert_main(["--official", str(src), "--preset", "50salads", "--num-classes", "19", "--out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.config.num_classes == 19 and len(ckpt.class_names) == 19
    assert convert_main(["--official", str(src), "--preset", "breakfast", "--num-classes", "19",
                         "--out", str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()
