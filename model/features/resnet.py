"""Per-frame ResNet-18/50 features (512 / 2048-d), in plain torch with torchvision's parameter names.

The modules are named as in ``torchvision.models.resnet`` (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0`` ...; ResNet-50 is the "v1.5" variant with the stride on the 3x3 conv), so a
torchvision weight file (``resnet18-f37072fd.pth``, ``resnet50-0676ba61.pth`` / ``resnet50-11ad3fa6.pth``)
loads directly; the classifier ``fc.*`` is ignored. torchvision itself is not needed.

The feature is the global average of ``layer4``. Preprocessing: shorter side resized to 256, centre
crop 224, ImageNet mean/std normalisation. ``context_frames = 1``: each feature sees its own frame
only (trivially causal).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from actfusion_model.features.backbone import CNNExtractor
from actfusion_model.features.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_normalised_tensor


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(cin, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with a residual connection (ResNet-50 v1.5)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.downsample = _shortcut(cin, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """torchvision's ``downsample`` (``0`` = 1x1 conv, ``1`` = BatchNorm) when the shape changes."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


#: depth -> (block type, blocks per stage)
ARCHITECTURES: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNetTrunk(nn.Module):
    """ResNet without the classifier: ``(B, 3, H, W)`` normalised -> ``(B, 512 * expansion)``."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        if depth not in ARCHITECTURES:
            raise ValueError(f"ResNet depth must be one of {sorted(ARCHITECTURES)}, got {depth!r}")
        block, counts = ARCHITECTURES[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for stage, (width, n) in enumerate(zip((64, 128, 256, 512), counts), start=1):
            blocks = []
            for i in range(n):
                stride = 2 if (i == 0 and stage > 1) else 1
                blocks.append(block(cin, width, stride))
                cin = width * block.expansion
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.feature_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return x.mean(dim=(2, 3))


HOW_TO_GET_RESNET = ("Use a torchvision ImageNet state dict for this depth (e.g. resnet18-f37072fd.pth "
                     "or resnet50-0676ba61.pth from https://download.pytorch.org/models/), downloaded "
                     "by you beforehand; torchvision itself is not required.")


class ResNetExtractor(CNNExtractor):
    """Per-frame ResNet features (``dim`` 512 for depth 18, 2048 for depth 50).

    Parameters as :class:`actfusion_model.features.i3d.I3DRGBExtractor` (no clip: ``context_frames = 1``);
    ``weights`` is a torchvision state dict file for the same depth.
    """

    causal = True
    context_frames = 1

    def __init__(self, depth: int = 18, weights: str | Path | None = None, *,
                 allow_random_weights: bool = False, resize: int = 256, crop: int = 224,
                 device: str | torch.device = "cpu", batch_size: int | None = None,
                 seed: int = 0) -> None:
        if depth not in ARCHITECTURES:
            raise ValueError(f"ResNet depth must be one of {sorted(ARCHITECTURES)}, got {depth!r}")
        self.depth = int(depth)
        super().__init__(lambda: ResNetTrunk(self.depth), weights=weights, allow_random_weights=allow_random_weights,
                         resize=resize, crop=crop, device=device, batch_size=batch_size, seed=seed,
                         ignore_prefixes=("fc.",), what=f"The ResNet-{self.depth} extractor",
                         how_to_get=HOW_TO_GET_RESNET)
        self.dim = int(self.net.feature_dim)

    def __repr__(self) -> str:
        return (f"ResNetExtractor(depth={self.depth}, crop={self.crop}, device={self.device}, "
                f"weights={self.weights_source})")

    def _compute_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        images = np.stack([w[-1] for w in windows])
        with torch.inference_mode():
            x = to_normalised_tensor(images, self.device, IMAGENET_MEAN, IMAGENET_STD)
            out = self.net(x)
        return out.float().cpu().numpy()


class ResNet18Extractor(ResNetExtractor):
    """:class:`ResNetExtractor` with ``depth=18`` (512-d)."""

    def __init__(self, weights: str | Path | None = None, **kwargs: object) -> None:
        super().__init__(18, weights, **kwargs)  # type: ignore[arg-type]


class ResNet50Extractor(ResNetExtractor):
    """:class:`ResNetExtractor` with ``depth=50`` (2048-d)."""

    def __init__(self, weights: str | Path | None = None, **kwargs: object) -> None:
        super().__init__(50, weights, **kwargs)  # type: ignore[arg-type]
