"""Tests of the causal I3D-RGB extractor: architecture names, weights files, causality, streaming."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_model.features import CausalFeatureStream, build_extractor
from actfusion_model.features.backbone import MissingWeightsError, WeightsError
from actfusion_model.features.i3d import I3DRGBExtractor, InceptionI3d, same_padding
from actfusion_model.features.preprocess import SYMMETRIC_MEAN, SYMMETRIC_STD, resize_and_crop, to_normalised_tensor

CLIP = 8
SIZE = 32


pytestmark = pytest.mark.usefixtures("single_torch_thread_module")


@pytest.fixture(scope="module")
def i3d() -> I3DRGBExtractor:
    """Tiny-input random-weight I3D: 32x32 crops, 8-frame clips (fast on the CPU)."""
    return I3DRGBExtractor(allow_random_weights=True, clip_frames=CLIP, resize=SIZE, crop=SIZE, seed=1)


def _frames(seed: int, n: int, h: int = 36, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- architecture
def test_state_dict_names_and_shapes_follow_pytorch_i3d(i3d: I3DRGBExtractor) -> None:
    sd = i3d.net.state_dict()
    expected = {
        "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
        "Conv3d_1a_7x7.bn.running_mean": (64,),
        "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
        "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
        "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
        "Mixed_3b.b1a.conv3d.weight": (96, 192, 1, 1, 1),
        "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
        "Mixed_3b.b2a.bn.weight": (16,),
        "Mixed_3b.b2b.conv3d.weight": (32, 16, 3, 3, 3),
        "Mixed_3b.b3b.conv3d.weight": (32, 192, 1, 1, 1),
        "Mixed_4b.b0.conv3d.weight": (192, 480, 1, 1, 1),
        "Mixed_4f.b1b.conv3d.weight": (320, 160, 3, 3, 3),
        "Mixed_5b.b0.conv3d.weight": (256, 832, 1, 1, 1),
        "Mixed_5c.b3b.bn.running_var": (128,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.endswith("conv3d.bias") for k in sd)                      # bias-free convolutions
    assert not any(".b3a." in k or k.startswith(("MaxPool", "logits")) for k in sd)
    bns = [m for m in i3d.net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert bns and all(m.eps == 0.001 and m.momentum == 0.01 for m in bns)
    blocks = [n for n, _ in i3d.net.named_children()]
    assert blocks == ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3",
                      "MaxPool3d_3a_3x3", "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b",
                      "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b",
                      "Mixed_5c"]


def test_same_padding_rule_and_output_sizes() -> None:
    assert same_padding(16, 7, 2) == (2, 3)       # 16 % 2 == 0 -> total k - s = 5
    assert same_padding(15, 7, 2) == (3, 3)       # 15 % 2 == 1 -> total k - 1 = 6
    assert same_padding(5, 1, 1) == (0, 0)
    assert same_padding(7, 3, 2) == (1, 1)
    with torch.device("meta"):                    # shapes only: no memory, no arithmetic
        net = InceptionI3d().eval()
        x = torch.zeros(1, 3, 16, 224, 224)
    sizes = {}
    with torch.inference_mode():
        for name, module in net.named_children():
            x = module(x)
            sizes[name] = tuple(x.shape[1:])
    assert sizes["Conv3d_1a_7x7"] == (64, 8, 112, 112)
    assert sizes["MaxPool3d_3a_3x3"] == (192, 8, 28, 28)
    assert sizes["MaxPool3d_4a_3x3"] == (480, 4, 14, 14)
    assert sizes["Mixed_5c"] == (1024, 2, 7, 7)   # the pytorch-i3d avg pool [2, 7, 7] = global mean


# --------------------------------------------------------------------------- weights
def test_refuses_to_start_without_weights() -> None:
    with pytest.raises(MissingWeightsError, match=r"rgb_imagenet\.pt.*allow_random_weights=True"):
        I3DRGBExtractor()
    with pytest.raises(MissingWeightsError):
        build_extractor("i3d_rgb")


def _fake_state_dict(i3d: I3DRGBExtractor, seed: int) -> dict[str, torch.Tensor]:
    """A pytorch-i3d-style file: every key of the module, plus a 400-class head, no BN counters."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in i3d.net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        fake = torch.rand(value.shape, generator=g) * 0.1
        state[key] = fake + 0.5 if key.endswith("running_var") else fake
    state["logits.conv3d.weight"] = torch.zeros(400, 1024, 1, 1, 1)
    state["logits.conv3d.bias"] = torch.zeros(400)
    return state


def test_weights_file_loads_by_pytorch_i3d_names(i3d: I3DRGBExtractor, tmp_path: Path) -> None:
    state = _fake_state_dict(i3d, seed=5)
    path = tmp_path / "rgb_fake.pt"
    torch.save(state, path)
    ext = I3DRGBExtractor(path, clip_frames=CLIP, resize=SIZE, crop=SIZE)
    loaded = ext.net.state_dict()
    for key in ("Conv3d_1a_7x7.conv3d.weight", "Mixed_4d.b2b.bn.running_var", "Mixed_5c.b0.bn.bias"):
        assert torch.equal(loaded[key], state[key]), key
    assert int(loaded["Mixed_3b.b0.bn.num_batches_tracked"]) == 0
    frames = _frames(0, 3)
    assert not np.allclose(ext.extract(frames), i3d.extract(frames))
    # DataParallel prefix and a {"state_dict": ...} wrapper are accepted too
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    ext2 = I3DRGBExtractor(wrapped, clip_frames=CLIP, resize=SIZE, crop=SIZE)
    np.testing.assert_array_equal(ext2.extract(frames), ext.extract(frames))


def test_weights_file_errors_name_the_keys(i3d: I3DRGBExtractor, tmp_path: Path) -> None:
    base = _fake_state_dict(i3d, seed=6)
    extra = dict(base, **{"Mixed_3b.b9.conv3d.weight": torch.zeros(1)})
    missing = {k: v for k, v in base.items() if k != "Mixed_4c.b1b.bn.running_var"}
    shaped = dict(base, **{"Conv3d_2b_1x1.conv3d.weight": torch.zeros(64, 64, 3, 3, 3)})
    cases = [(extra, r"unexpected keys: Mixed_3b\.b9\.conv3d\.weight"),
             (missing, r"missing keys: Mixed_4c\.b1b\.bn\.running_var"),
             (shaped, r"wrong shapes .*Conv3d_2b_1x1\.conv3d\.weight \(64, 64, 3, 3, 3\) != \(64, 64, 1, 1, 1\)")]
    for k, (state, pattern) in enumerate(cases):
        path = tmp_path / f"bad{k}.pt"
        torch.save(state, path)
        with pytest.raises(WeightsError, match=pattern) as info:
            I3DRGBExtractor(path, clip_frames=CLIP, resize=SIZE, crop=SIZE)
        assert str(path) in str(info.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read weights file .*garbage.pt"):
        I3DRGBExtractor(garbage)
    with pytest.raises(WeightsError, match="weights file not found"):
        I3DRGBExtractor(tmp_path / "absent.pt")
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(WeightsError, match="expected a state dict"):
        I3DRGBExtractor(tensor_only)


def test_random_weights_are_seeded_not_global() -> None:
    torch.manual_seed(0)
    a = I3DRGBExtractor(allow_random_weights=True, clip_frames=2, resize=32, crop=32, seed=3)
    torch.manual_seed(123)
    b = I3DRGBExtractor(allow_random_weights=True, clip_frames=2, resize=32, crop=32, seed=3)
    c = I3DRGBExtractor(allow_random_weights=True, clip_frames=2, resize=32, crop=32, seed=4)
    frames = _frames(1, 2, 40, 40)
    np.testing.assert_array_equal(a.extract(frames), b.extract(frames))
    assert not np.allclose(a.extract(frames), c.extract(frames))


# --------------------------------------------------------------------------- preprocessing
def test_preprocessing_resize_crop_and_scale() -> None:
    frame = np.zeros((1, 480, 640, 3), np.uint8)
    frame[0, :, :320] = (255, 0, 0)                          # left half red
    out = resize_and_crop(frame, 256, 224)
    assert out.shape == (1, 224, 224, 3) and out.dtype == np.uint8
    # 640x480 -> 341x256; centre crop columns 58..281 of 341; the red/black edge sits at 170.5
    assert (out[0, :, :100, 0] == 255).all() and (out[0, :, 124:, 0] == 0).all()
    t = to_normalised_tensor(np.stack([np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)]),
                             torch.device("cpu"), SYMMETRIC_MEAN, SYMMETRIC_STD)
    assert t.shape == (2, 3, 2, 2)
    assert torch.equal(t[0], torch.full((3, 2, 2), -1.0)) and torch.equal(t[1], torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="crop"):
        I3DRGBExtractor(allow_random_weights=True, resize=200, crop=224)


def test_cuda_request_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        I3DRGBExtractor(allow_random_weights=True, device="cuda")


# --------------------------------------------------------------------------- causality
def test_future_frames_never_change_past_features(i3d: I3DRGBExtractor) -> None:
    clip = _frames(2, 12)
    base = i3d.extract(clip)
    assert base.shape == (12, 1024) and base.dtype == np.float32 and np.isfinite(base).all()
    for cut in (0, 4, 9):
        changed = clip.copy()
        changed[cut + 1:] = 255 - changed[cut + 1:]
        feats = i3d.extract(changed)
        np.testing.assert_array_equal(feats[:cut + 1], base[:cut + 1])
        assert not np.allclose(feats[cut + 1:], base[cut + 1:])


def test_context_is_bounded_to_the_clip(i3d: I3DRGBExtractor) -> None:
    clip = _frames(3, 16)
    base = i3d.extract(clip)
    changed = clip.copy()
    changed[3] = 255 - changed[3]
    feats = i3d.extract(changed)
    np.testing.assert_array_equal(feats[:3], base[:3])
    for i in range(3, 3 + CLIP):                                  # frames 3..10 see frame 3
        assert not np.allclose(feats[i], base[i]), i
    np.testing.assert_array_equal(feats[3 + CLIP:], base[3 + CLIP:])


def test_start_of_stream_repeats_the_first_frame(i3d: I3DRGBExtractor) -> None:
    clip = _frames(4, 3)
    padded = np.concatenate([np.repeat(clip[:1], CLIP - 3, axis=0), clip])
    np.testing.assert_array_equal(i3d.extract(clip)[2], i3d.extract(padded)[-1])
    np.testing.assert_array_equal(i3d.extract(clip[:1])[0], i3d.extract(np.repeat(clip[:1], CLIP, 0))[-1])


# --------------------------------------------------------------------------- streaming
def test_stream_with_full_rate_context_equals_offline(i3d: I3DRGBExtractor) -> None:
    clip = _frames(5, 20)
    sampled = [0, 5, 10, 15]
    stream = CausalFeatureStream(i3d)
    online = []
    for i, frame in enumerate(clip):
        if i in sampled:
            online.append(stream.push(frame))
        else:
            stream.observe(frame)
    assert len(stream) == CLIP and stream.frames_pushed == 4 and stream.frames_observed == 16
    assert stream._ring[0].shape == (SIZE, SIZE, 3)               # the ring keeps the cropped form
    online = np.stack(online)
    np.testing.assert_array_equal(online, i3d.extract_at(clip, sampled))
    np.testing.assert_array_equal(online, i3d.extract(clip)[sampled])
    # batched windows differ from single ones by float rounding at most
    batched = i3d.extract_at(clip, sampled, batch_size=4)
    np.testing.assert_allclose(batched, online, rtol=1e-5, atol=1e-5 * np.abs(online).max())
