"""Image preprocessing for the CNN extractors: OpenCV resize + centre crop, then batched normalisation.

Two stages, so that the streaming side can keep a cheap per-frame form:

1. :func:`resize_and_crop` (per frame, OpenCV, uint8 in and out): resize so the *shorter* side is
   ``resize`` pixels (aspect ratio kept), then cut the central ``crop x crop`` square. This is the
   form a :class:`actfusion_model.features.base.CausalFeatureStream` keeps in its ring (``crop*crop*3`` bytes
   per frame, e.g. 147 KiB at 224).
2. :func:`to_normalised_tensor` (batched, torch, on the target device): uint8 ``(..., H, W, 3)`` ->
   float32 ``(..., 3, H, W)`` as ``(x / 255 - mean) / std`` per channel. Moving uint8 to the device
   and normalising there moves 4x fewer bytes than normalising on the CPU.

Interpolation: ``cv2.INTER_AREA`` when shrinking (no aliasing on large camera frames),
``cv2.INTER_LINEAR`` when enlarging. Rounding of the longer side: ``round(long * resize / short)``.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from actfusion_model.features.base import FrameError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: ``x / 255 * 2 - 1``: the [-1, 1] scaling used by I3D (``(x/255 - 0.5) / 0.5``).
SYMMETRIC_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
SYMMETRIC_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


def check_sizes(resize: int, crop: int) -> tuple[int, int]:
    """Validate ``resize >= crop >= 1`` (ints); return them as ``int``."""
    for name, value in (("resize", resize), ("crop", crop)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize}): the shorter side is "
                         f"resized to {resize} before the centre crop")
    return int(resize), int(crop)


def resize_shorter_side(frame: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 so that ``min(H, W) == size``, keeping the aspect ratio."""
    h, w = frame.shape[:2]
    short = min(h, w)
    if short == size:
        return frame
    scale = size / short
    new_h = size if h == short else max(size, int(round(h * scale)))
    new_w = size if w == short else max(size, int(round(w * scale)))
    interpolation = cv2.INTER_AREA if size < short else cv2.INTER_LINEAR
    return cv2.resize(frame, (new_w, new_h), interpolation=interpolation)


def center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` square of ``(H, W, C)`` (offsets ``(H - size) // 2``)."""
    h, w = frame.shape[:2]
    if h < size or w < size:
        raise FrameError(f"cannot crop {size}x{size} from a {h}x{w} frame")
    top, left = (h - size) // 2, (w - size) // 2
    return frame[top:top + size, left:left + size]


def resize_and_crop(frames: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, crop, crop, 3)`` uint8 RGB (a fresh, contiguous array)."""
    out = np.empty((frames.shape[0], crop, crop, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = center_crop(resize_shorter_side(np.ascontiguousarray(frame), resize), crop)
    return out


def to_normalised_tensor(batch: np.ndarray, device: torch.device, mean: Sequence[float],
                         std: Sequence[float], channel_axis: int = -3) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> contiguous float32 on ``device``: ``(x / 255 - mean) / std``.

    The channel axis moves to ``channel_axis`` (``-3``: ``(..., 3, H, W)`` for 2-D CNNs; ``1`` on a
    ``(B, T, H, W, 3)`` clip batch gives ``(B, 3, T, H, W)`` for 3-D CNNs).
    """
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    x = x.movedim(-1, channel_axis).to(torch.float32)
    shape = [1] * x.dim()
    shape[channel_axis] = 3
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(shape)
    return ((x / 255.0 - m) / s).contiguous()


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``; a CUDA device that is not available raises a clear ``ValueError``."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available "
                         f"(torch {torch.__version__}); use device='cpu'")
    return dev


def default_batch_size(device: torch.device) -> int:
    """Windows per forward pass when none is given: 1 on the CPU, 8 on an accelerator.

    On the CPU, batch 1 keeps offline features bit-identical to the streamed ones (computed one window
    at a time) and costs little: I3D is no faster batched there, ResNet 10-20% (docs/features.md).
    """
    return 1 if device.type == "cpu" else 8
