"""Our checkpoint format: round trip, atomic writes, and clear refusals."""
from __future__ import annotations

import pytest
import torch

from actfusion_model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from actfusion_model.config import model_config
from actfusion_model.network import ActFusion

NAMES = ["a", "b", "c"]


@pytest.fixture()
def saved(tmp_path):
    cfg = model_config("tiny", num_classes=3)
    model = ActFusion(cfg).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, NAMES, {"epoch": 7})
    return path, model


def test_round_trip_keeps_weights_config_names(saved) -> None:
    path, model = saved
    ckpt = load_checkpoint(path)
    assert ckpt.config == model.cfg and ckpt.class_names == NAMES and ckpt.metadata == {"epoch": 7}
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt.model.state_dict()[k])


def test_mismatched_expected_config_is_refused_with_the_differences(saved) -> None:
    path, _ = saved
    with pytest.raises(CheckpointError, match=r"num_classes: 3 != 5"):
        load_checkpoint(path, expected_config=model_config("tiny", num_classes=5))
    # sampling settings may differ: the caller's win
    ckpt = load_checkpoint(path, expected_config=model_config("tiny", num_classes=3, ddim_steps=9))
    assert ckpt.config.ddim_steps == 9


def test_weights_of_another_shape_are_listed(saved, tmp_path) -> None:
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["encoder.conv_out.weight"] = torch.zeros(4, 16, 1)
    del payload["state_dict"]["decoder.conv_in.bias"]
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert "shape: encoder.conv_out.weight is (4, 16, 1)" in str(err.value)
    assert "missing: decoder.conv_in.bias" in str(err.value)


def test_truncated_file_is_a_clear_error(saved, tmp_path) -> None:
    path, _ = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(cut)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


class Evil:
    """Any class: unpickling it would run code from the file."""


def test_pickled_objects_are_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "x", "obj": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


def test_failed_write_leaves_previous_file_intact(saved, monkeypatch) -> None:
    path, model = saved
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, model, NAMES)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_atomic_writes_get_ordinary_permissions(saved) -> None:
    path, _ = saved
    import os
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600: the node may be another user
