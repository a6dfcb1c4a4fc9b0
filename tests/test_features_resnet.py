"""Tests of the per-frame ResNet extractors: torchvision naming, weights files, per-frame causality."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_model.features import CausalFeatureStream, available_extractors, build_extractor
from actfusion_model.features.backbone import MissingWeightsError, WeightsError
from actfusion_model.features.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_normalised_tensor
from actfusion_model.features.resnet import ResNet18Extractor, ResNet50Extractor, ResNetExtractor, ResNetTrunk

SIZE = 32


pytestmark = pytest.mark.usefixtures("single_torch_thread_module")


@pytest.fixture(scope="module")
def r18() -> ResNet18Extractor:
    return ResNet18Extractor(allow_random_weights=True, resize=SIZE, crop=SIZE, seed=2)


def _frames(seed: int, n: int, h: int = 36, w: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _param_count(depth: int) -> int:
    with torch.device("meta"):
        net = ResNetTrunk(depth)
    return sum(p.numel() for p in net.parameters())


def test_torchvision_names_shapes_and_parameter_counts() -> None:
    # torchvision: resnet18 11,689,512 and resnet50 25,557,032 parameters including fc
    assert _param_count(18) == 11_689_512 - (512 * 1000 + 1000)
    assert _param_count(50) == 25_557_032 - (2048 * 1000 + 1000)
    with torch.device("meta"):
        sd18, sd50 = ResNetTrunk(18).state_dict(), ResNetTrunk(50).state_dict()
    expected18 = {"conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,),
                  "layer1.0.conv1.weight": (64, 64, 3, 3), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                  "layer2.0.downsample.1.running_mean": (128,), "layer4.1.bn2.weight": (512,)}
    expected50 = {"layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                  "layer2.0.conv2.weight": (128, 128, 3, 3), "layer3.5.bn3.bias": (1024,),
                  "layer4.2.bn3.weight": (2048,)}
    for sd, expected in ((sd18, expected18), (sd50, expected50)):
        for key, shape in expected.items():
            assert tuple(sd[key].shape) == shape, key
    assert "layer1.0.downsample.0.weight" not in sd18 and not any(k.startswith("fc.") for k in sd18)


def test_registry_dims_and_refusal_without_weights() -> None:
    assert {"i3d_rgb", "resnet18", "resnet50", "color_layout"} <= set(available_extractors())
    ext = build_extractor("resnet50", allow_random_weights=True, resize=SIZE, crop=SIZE)
    assert isinstance(ext, ResNet50Extractor) and ext.dim == 2048 and ext.context_frames == 1
    assert ext.extract(_frames(0, 2)).shape == (2, 2048)
    for name in ("resnet18", "resnet50"):
        with pytest.raises(MissingWeightsError, match=r"torchvision.*allow_random_weights=True"):
            build_extractor(name)
    with pytest.raises(ValueError, match="depth"):
        ResNetExtractor(depth=34, allow_random_weights=True)


def test_torchvision_weights_file_loads_and_fc_is_ignored(r18: ResNet18Extractor, tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(9)
    state = {k: torch.rand(v.shape, generator=g) * 0.1 + (0.5 if k.endswith("running_var") else 0.0)
             for k, v in r18.net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path / "resnet18-fake.pth"
    torch.save(state, path)
    ext = ResNet18Extractor(path, resize=SIZE, crop=SIZE)
    assert torch.equal(ext.net.state_dict()["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    frames = _frames(1, 2)
    assert not np.allclose(ext.extract(frames), r18.extract(frames))
    # a ResNet-18 file is not a ResNet-50 file: the error lists what does not fit
    with pytest.raises(WeightsError, match=r"missing keys: .*layer1\.0\.conv3\.weight") as info:
        ResNet50Extractor(path, resize=SIZE, crop=SIZE)
    assert "resnet18-fake.pth" in str(info.value) and "wrong shapes" in str(info.value)


def test_per_frame_features_ignore_other_frames(r18: ResNet18Extractor) -> None:
    clip = _frames(2, 6)
    base = r18.extract(clip)
    assert base.shape == (6, 512) and base.dtype == np.float32 and np.isfinite(base).all()
    changed = clip.copy()
    changed[3:] = 255 - changed[3:]
    feats = r18.extract(changed)
    np.testing.assert_array_equal(feats[:3], base[:3])              # future frames do not matter
    assert not np.allclose(feats[3:], base[3:])
    for i in range(6):                                              # nor do past ones
        np.testing.assert_array_equal(r18.extract(clip[i:i + 1])[0], base[i])


def test_stream_keeps_no_context_and_matches_offline(r18: ResNet18Extractor) -> None:
    clip = _frames(3, 7)
    stream = CausalFeatureStream(r18)
    online = []
    for i, frame in enumerate(clip):
        if i % 3 == 0:
            online.append(stream.push(frame))
        else:
            stream.observe(frame)                                   # nothing stored for per-frame
            assert len(stream) <= 1
    np.testing.assert_array_equal(np.stack(online), r18.extract_at(clip, [0, 3, 6]))


def test_imagenet_normalisation() -> None:
    frame = np.zeros((1, 2, 2, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 255, 0, 128
    t = to_normalised_tensor(frame, torch.device("cpu"), IMAGENET_MEAN, IMAGENET_STD)
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(t[0, :, 0, 0].numpy(), expected, rtol=1e-6)
