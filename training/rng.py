"""All randomness of a training run in one object, with a state that round-trips through a checkpoint.

* ``torch``: a CPU ``torch.Generator`` for the diffusion step and noise of each training sample.
* ``numpy``: a ``numpy.random.Generator`` for the epoch order, temporal offsets and mask geometry.
* ``python``: a ``random.Random`` for the choice of the masking strategy.
* ``dropout``: the state of torch's *default* generators (CPU and, when used, one CUDA device), which
  dropout layers draw from. It is installed only inside :meth:`RngBundle.dropout_scope` (via
  ``torch.random.fork_rng``), so the process-wide generator outside a training step is left untouched.

All states are plain tensors, ints, tuples and dicts, so ``torch.load(weights_only=True)`` reads them.
"""
from __future__ import annotations

import copy
import random
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch


class RngBundle:
    """The seeded generators of one training process (see module docstring)."""

    def __init__(self, seed: int, rank: int = 0, cuda_device: int | None = None) -> None:
        self.seed = int(seed)
        self.rank = int(rank)
        self.cuda_device = cuda_device
        stream = np.random.SeedSequence([self.seed, self.rank])
        words = stream.generate_state(4, dtype=np.uint32)
        self.torch = torch.Generator().manual_seed(int(words[0]) | (int(words[1]) << 32))
        self.numpy = np.random.default_rng(stream.spawn(1)[0])
        self.python = random.Random(int(words[2]))
        # Shared by all ranks (same seed, no rank): the epoch order must agree across processes.
        self.order = np.random.default_rng([self.seed, 0x5EED])
        dropout_seed = int(words[3])
        with torch.random.fork_rng(devices=self._devices()):
            torch.manual_seed(dropout_seed)
            self._dropout_cpu = torch.get_rng_state()
            self._dropout_cuda = (torch.cuda.get_rng_state(cuda_device) if cuda_device is not None else None)

    def _devices(self) -> list[int]:
        return [self.cuda_device] if self.cuda_device is not None else []

    @contextmanager
    def dropout_scope(self) -> Iterator[None]:
        """Run the body with torch's default generators set to this bundle's dropout state, then save it."""
        with torch.random.fork_rng(devices=self._devices()):
            torch.set_rng_state(self._dropout_cpu)
            if self.cuda_device is not None and self._dropout_cuda is not None:
                torch.cuda.set_rng_state(self._dropout_cuda, self.cuda_device)
            try:
                yield
            finally:
                self._dropout_cpu = torch.get_rng_state()
                if self.cuda_device is not None:
                    self._dropout_cuda = torch.cuda.get_rng_state(self.cuda_device)

    def state_dict(self) -> dict[str, Any]:
        """A deep copy of every generator state (safe to keep as a snapshot)."""
        return {
            "seed": self.seed,
            "rank": self.rank,
            "torch": self.torch.get_state().clone(),
            "numpy": copy.deepcopy(self.numpy.bit_generator.state),
            "python": self.python.getstate(),
            "order": copy.deepcopy(self.order.bit_generator.state),
            "dropout_cpu": self._dropout_cpu.clone(),
            "dropout_cuda": None if self._dropout_cuda is None else self._dropout_cuda.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the CUDA dropout state is kept only when this bundle uses CUDA."""
        missing = {"torch", "numpy", "python", "order", "dropout_cpu"} - set(state)
        if missing:
            raise ValueError(f"RNG state lacks {sorted(missing)}")
        self.torch.set_state(state["torch"].clone())
        self.numpy.bit_generator.state = copy.deepcopy(state["numpy"])
        self.python.setstate(_as_python_state(state["python"]))
        self.order.bit_generator.state = copy.deepcopy(state["order"])
        self._dropout_cpu = state["dropout_cpu"].clone()
        if self.cuda_device is not None and state.get("dropout_cuda") is not None:
            self._dropout_cuda = state["dropout_cuda"].clone()


def _as_python_state(state: Any) -> tuple:
    """``random.Random.setstate`` needs tuples; a checkpoint may hand back lists."""
    version, internal, gauss = state
    return int(version), tuple(int(x) for x in internal), gauss
