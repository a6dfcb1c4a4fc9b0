"""Shared plumbing of the CNN extractors: their base class, and building a network without downloading anything.

* :class:`CNNExtractor` holds what I3D and ResNet share: the checks of ``resize`` / ``crop`` / ``device`` /
  ``batch_size``, the network built by :func:`build_network`, the per-frame resize + centre crop and the
  batched windows; a subclass adds its own arguments and :meth:`FeatureExtractor._compute_windows`.
* The network is built on the ``meta`` device (no memory, no RNG use), then materialised either from
  a user-supplied weights file or, only when explicitly allowed, with seeded random weights.
* Weights files are read with ``torch.load(weights_only=True)`` (no pickled code runs). Keys are
  compared with the network's own state-dict names; missing, unexpected or mis-shaped keys raise
  :class:`WeightsError` listing them. Classifier heads (``logits.*`` for I3D, ``fc.*`` for ResNet)
  are ignored, and BatchNorm ``num_batches_tracked`` counters may be absent (old checkpoints).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from actfusion_model.features.base import FeatureExtractor
from actfusion_model.features.preprocess import check_sizes, default_batch_size, resize_and_crop, resolve_device


class WeightsError(ValueError):
    """A weights file cannot be read or does not fit the network (names the file and the keys)."""


class MissingWeightsError(ValueError):
    """No weights file was given and random weights were not explicitly allowed."""


#: Buffers that may be missing from a weights file (filled with their neutral value).
OPTIONAL_SUFFIXES: tuple[str, ...] = ("num_batches_tracked",)
_MAX_LISTED = 20


def _listing(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return shown + more


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` with ``torch.load(weights_only=True)`` onto the CPU.

    Accepts a plain ``{name: tensor}`` mapping or one wrapped as ``{"state_dict": ...}`` /
    ``{"model": ...}``; a ``module.`` prefix on every key (``nn.DataParallel``) is stripped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling/format error becomes one clear error
        raise WeightsError(f"cannot read weights file {path} with torch.load(weights_only=True): "
                           f"{type(err).__name__}: {err}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"weights file {path} holds a {type(obj).__name__}, expected a state dict "
                           "(a mapping of parameter names to tensors)")
    state = dict(obj)
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"weights file {path}: entries that are not tensors: {_listing(bad)}")
    return state


def check_state_dict(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], *,
                     ignore_prefixes: Sequence[str], source: str) -> dict[str, torch.Tensor]:
    """Compare ``state`` with the network's ``expected`` state dict; return the entries to load.

    Raises :class:`WeightsError` listing every missing, unexpected and mis-shaped key.
    """
    ignored = tuple(ignore_prefixes)
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in expected and not k.startswith(ignored)]
    mis_shaped = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mis_shaped:
        problems.append(f"wrong shapes (file != network): {_listing(mis_shaped)}")
    if problems:
        raise WeightsError(f"weights {source} do not fit the network: " + "; ".join(problems))
    return {k: state[k] for k in expected if k in state}


def init_random_(net: nn.Module, generator: torch.Generator) -> None:
    """Seeded random weights: He-normal (fan-in) convolutions, identity BatchNorm, zero biases."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                w = module.weight
                fan_in = w[0].numel()
                w.copy_(torch.randn(w.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.num_batches_tracked.zero_()


def build_network(factory: Callable[[], nn.Module], *, weights: str | Path | None,
                  allow_random_weights: bool, seed: int, device: torch.device,
                  ignore_prefixes: Sequence[str], what: str, how_to_get: str) -> nn.Module:
    """Build ``factory()`` in eval mode on ``device`` with weights from ``weights`` (or random).

    ``weights=None`` raises :class:`MissingWeightsError` (with ``how_to_get``) unless
    ``allow_random_weights`` is set; then weights are drawn from ``torch.Generator`` seeded with
    ``seed``, so the same seed always gives the same network. Nothing is downloaded.
    """
    if weights is None and not allow_random_weights:
        raise MissingWeightsError(
            f"{what} needs a weights file and none was given. {how_to_get} Pass it as weights=PATH "
            "(CLI: --weights PATH). Nothing is downloaded at run time. For tests and demos only, "
            "allow_random_weights=True (CLI: --allow-random-weights) runs with random weights, "
            "which give meaningless features.")
    with torch.device("meta"):
        net = factory()
    # Materialise on the CPU with plain torch.empty (Module.to_empty from meta is slow to start).
    shapes = net.state_dict()
    empty = {k: (torch.zeros if k.endswith(OPTIONAL_SUFFIXES) else torch.empty)(v.shape, dtype=v.dtype)
             for k, v in shapes.items()}
    if weights is None:
        net.load_state_dict(empty, assign=True)
        init_random_(net, torch.Generator().manual_seed(int(seed)))
    else:
        state = read_state_dict(weights)
        wanted = check_state_dict(shapes, state, ignore_prefixes=ignore_prefixes, source=f"file {weights}")
        net.load_state_dict({**empty, **{k: v.to(shapes[k].dtype) for k, v in wanted.items()}},
                            assign=True)
    return net.to(device).eval()


class CNNExtractor(FeatureExtractor):
    """A :class:`FeatureExtractor` around a CNN: each frame resized and centre-cropped once, windows batched.

    Subclasses check their own arguments first, then call this constructor, which checks the shared
    ones in this order: ``batch_size`` (``None``: :func:`default_batch_size` of the device), ``resize`` /
    ``crop`` (:func:`check_sizes`), ``device`` (:func:`resolve_device`); then it builds the network with
    :func:`build_network` (``ignore_prefixes``, ``what`` and ``how_to_get`` as there). They implement
    :meth:`FeatureExtractor._compute_windows` on windows of ``(crop, crop, 3)`` uint8 frames.
    """

    def __init__(self, factory: Callable[[], nn.Module], *, weights: str | Path | None,
                 allow_random_weights: bool, resize: int, crop: int, device: str | torch.device,
                 batch_size: int | None, seed: int, ignore_prefixes: Sequence[str], what: str,
                 how_to_get: str) -> None:
        if batch_size is not None and (isinstance(batch_size, bool)
                                       or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
        self.resize, self.crop = check_sizes(resize, crop)
        self.device = resolve_device(device)
        self.batch_size = default_batch_size(self.device) if batch_size is None else int(batch_size)
        self.weights = None if weights is None else Path(weights)
        self.net = build_network(factory, weights=weights, allow_random_weights=allow_random_weights, seed=seed,
                                 device=self.device, ignore_prefixes=ignore_prefixes, what=what,
                                 how_to_get=how_to_get)

    @property
    def weights_source(self) -> str:
        """The weights file, or ``'random weights'`` (for ``repr``)."""
        return str(self.weights) if self.weights is not None else "random weights"

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """Resize the shorter side to ``resize`` and centre-crop ``crop``: ``(N, crop, crop, 3)`` uint8."""
        return resize_and_crop(frames, self.resize, self.crop)

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        return self._compute_via_windows(frames)
