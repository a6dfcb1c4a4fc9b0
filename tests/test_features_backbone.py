"""The CNN extractors' base class (model/features/backbone.py: CNNExtractor) on a toy network.

The toy is a 1x1 convolution (3 -> 2 channels) averaged over the image: cheap, and its feature of a
frame depends on that frame only, like ResNet's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from actfusion_model.features.backbone import CNNExtractor, MissingWeightsError
from actfusion_model.features.i3d import I3DRGBExtractor
from actfusion_model.features.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_normalised_tensor
from actfusion_model.features.resnet import ResNetExtractor


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


class ToyExtractor(CNNExtractor):
    dim = 2

    def __init__(self, weights: str | Path | None = None, *, allow_random_weights: bool = True,
                 resize: int = 8, crop: int = 6, batch_size: int | None = None, seed: int = 0) -> None:
        super().__init__(ToyNet, weights=weights, allow_random_weights=allow_random_weights, resize=resize,
                         crop=crop, device="cpu", batch_size=batch_size, seed=seed, ignore_prefixes=("head.",),
                         what="The toy extractor", how_to_get="Train one.")

    def _compute_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        images = np.stack([w[-1] for w in windows])
        with torch.inference_mode():
            return self.net(to_normalised_tensor(images, self.device, IMAGENET_MEAN, IMAGENET_STD)).numpy()


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 10, 12, 3), dtype=np.uint8)


def test_shared_arguments_are_checked_and_defaulted() -> None:
    toy = ToyExtractor()
    assert (toy.resize, toy.crop, toy.device, toy.batch_size) == (8, 6, torch.device("cpu"), 1)  # CPU default 1
    assert ToyExtractor(batch_size=3).batch_size == 3
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match=r"batch_size must be None or an int >= 1"):
            ToyExtractor(batch_size=bad)
    with pytest.raises(ValueError, match="batch_size"):  # batch_size is checked before the sizes
        ToyExtractor(batch_size=0, resize=4, crop=6)
    with pytest.raises(ValueError, match=r"crop \(6\) must not exceed resize \(4\)"):
        ToyExtractor(resize=4, crop=6)


def test_network_from_a_weights_file_or_refused_without_one(tmp_path: Path) -> None:
    random = ToyExtractor(seed=3)
    assert random.weights is None and random.weights_source == "random weights"
    assert not random.net.training
    path = tmp_path / "toy.pt"
    torch.save({**random.net.state_dict(), "head.weight": torch.zeros(1)}, path)  # ignored prefix
    loaded = ToyExtractor(path, allow_random_weights=False)
    assert loaded.weights == path and loaded.weights_source == str(path)
    frames = _frames(3)
    np.testing.assert_array_equal(loaded.extract(frames), random.extract(frames))
    with pytest.raises(MissingWeightsError, match="The toy extractor needs a weights file.*Train one."):
        ToyExtractor(allow_random_weights=False)


def test_frames_are_cropped_once_and_computed_in_batches() -> None:
    frames = _frames(5, seed=1)
    one, three = ToyExtractor(batch_size=1), ToyExtractor(batch_size=3)
    prepared = one.preprocess(frames)
    assert prepared.shape == (5, 6, 6, 3) and prepared.dtype == np.uint8
    per_frame = np.stack([one.extract_windows([prepared[i:i + 1]])[0] for i in range(5)])
    np.testing.assert_allclose(one.extract(frames), per_frame, rtol=1e-6)
    np.testing.assert_allclose(three.extract(frames), per_frame, rtol=1e-6)


def test_i3d_and_resnet_share_the_base_and_its_checks() -> None:
    assert issubclass(I3DRGBExtractor, CNNExtractor) and issubclass(ResNetExtractor, CNNExtractor)
    for cls in (I3DRGBExtractor, ResNetExtractor):
        with pytest.raises(ValueError, match=r"batch_size must be None or an int >= 1, got 0"):
            cls(allow_random_weights=True, batch_size=0)
    with pytest.raises(ValueError, match="clip_frames"):  # the subclass's own argument comes first
        I3DRGBExtractor(allow_random_weights=True, clip_frames=0, batch_size=0)
    with pytest.raises(ValueError, match="ResNet depth"):
        ResNetExtractor(depth=7, allow_random_weights=True, batch_size=0)
