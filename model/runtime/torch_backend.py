"""Eager PyTorch backend (CPU or CUDA), the reference the exported graphs are tested against.

:meth:`actfusion_model.network.ActFusion.anticipate`, the evaluation and the node's torch forecaster all run the
model through this backend and :func:`actfusion_model.runtime.forecast`. The decoder runs on a batch of K samples
of one observation; the condition terms (batch 1) broadcast along the batch.

On CUDA only: optional fp16/bf16 autocast, optional ``torch.compile`` of the decoder step (falls back
to eager, with one warning, if compilation fails) and optional CUDA graphs of the decoder step (one
captured graph per sequence length and sample count, a small LRU; useful once the stream's window is
full and T stops changing). On CPU these options are refused rather than silently ignored.
"""
from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from actfusion_model.forecast import EagerBackend
from actfusion_model.network import ActFusion
from actfusion_model.runtime.base import default_class_names
from actfusion_model.runtime.registry import BackendError
from actfusion_model.torch_threads import set_process_threads

_LOG = logging.getLogger(__name__)
_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}

Terms = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class _CapturedStep:
    """A CUDA graph of one decoder step with its static input/output buffers (one sequence length)."""

    graph: Any
    terms: Terms
    timesteps: torch.Tensor
    x01: torch.Tensor
    out: torch.Tensor


class TorchBackend(EagerBackend):
    """Runs :class:`actfusion_model.network.ActFusion` directly: the
    :class:`~actfusion_model.forecast.EagerBackend` plus options.

    ``precision``: 'fp32' (default), or 'fp16' / 'bf16' autocast (CUDA only). ``compile``: wrap the
    decoder step in ``torch.compile`` (CUDA only). ``cuda_graphs``: capture the decoder step per length
    (CUDA only; ``graph_cache`` lengths kept).
    """

    name = "torch"

    def __init__(self, model: ActFusion, *, device: str | torch.device | None = "cpu", precision: str = "fp32",
                 compile: bool = False, cuda_graphs: bool = False, graph_cache: int = 2,
                 class_names: Sequence[str] | None = None, threads: int | None = None) -> None:
        self.device = torch.device(device) if device is not None else model.mask_token.device
        if model.cfg.self_condition:
            raise BackendError("this checkpoint was trained with model.self_condition, which the deployment "
                               "backends do not implement yet; score it with actfusion-eval (the eager path)")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device {self.device} requested but torch.cuda.is_available() is False")
        if precision not in _PRECISIONS:
            raise BackendError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        wanted = [flag for flag, on in ((f"precision={precision!r}", precision != "fp32"),
                                        ("compile=True", compile), ("cuda_graphs=True", cuda_graphs)) if on]
        if wanted and self.device.type != "cuda":
            raise BackendError(f"{', '.join(wanted)}: CUDA only; got device {self.device} (use fp32 eager on CPU)")
        set_process_threads(threads)  # start-up: never per forecast (actfusion_model.torch_threads)
        super().__init__(model, device=self.device)
        self.class_names = default_class_names(self.config, class_names)
        self.precision = precision
        self._dtype = _PRECISIONS[precision]
        self._step: Callable[[Terms, torch.Tensor, torch.Tensor], torch.Tensor] = self.model.decoder.forward_prepared
        self._compiled = False
        if compile:
            self._step = torch.compile(self.model.decoder.forward_prepared, dynamic=True)
            self._compiled = True
        self._cuda_graphs = cuda_graphs
        self._graphs: OrderedDict[tuple[int, ...], _CapturedStep] = OrderedDict()
        self._graph_cache = max(1, int(graph_cache))

    # -- Backend protocol -----------------------------------------------------------------
    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            return super().encode(features, frame_mask)

    def prepare(self, condition: torch.Tensor, num_samples: int = 1) -> Terms:
        with self._autocast():
            terms = super().prepare(condition, num_samples)
        if self._cuda_graphs:
            return self._load_graph_terms(terms, int(num_samples))
        return terms

    def denoise(self, state: Terms, t: int, x01: torch.Tensor) -> torch.Tensor:
        if self._cuda_graphs:
            return self._replay(state, t, x01)
        steps = torch.full((x01.shape[0],), int(t), dtype=torch.long, device=self.device)
        with torch.inference_mode(), self._autocast():
            return self._run_step(state, steps, x01.to(self.device)).float()

    def details(self) -> dict[str, Any]:
        return {"precision": self.precision, "compile": self._compiled, "cuda_graphs": self._cuda_graphs}

    # -- helpers ----------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._dtype is None:
            return contextlib.nullcontext()
        # The autocast weight cache must be off while CUDA graphs capture (torch docs, CUDA graphs).
        return torch.autocast(device_type="cuda", dtype=self._dtype, cache_enabled=not self._cuda_graphs)

    def _run_step(self, terms: Terms, steps: torch.Tensor, x01: torch.Tensor) -> torch.Tensor:
        if not self._compiled:
            return self._step(terms, steps, x01)
        try:
            return self._step(terms, steps, x01)
        except Exception as err:  # torch.compile backends fail in many ways; eager is always correct
            _LOG.warning("torch.compile of the decoder step failed (%s: %s); using eager mode",
                         type(err).__name__, err)
            self._step = self.model.decoder.forward_prepared
            self._compiled = False
            return self._step(terms, steps, x01)

    def _load_graph_terms(self, terms: Terms, num_samples: int) -> Terms:
        """Copy this tick's terms into the static buffers of the graph for this length and sample count
        (capture if new)."""
        key = (num_samples, *terms[0][0].shape)
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._capture(terms, num_samples)
            self._graphs[key] = captured
            while len(self._graphs) > self._graph_cache:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
            for (sq, sk), (q, k) in zip(captured.terms, terms):
                sq.copy_(q)
                sk.copy_(k)
        return captured.terms

    def _capture(self, terms: Terms, num_samples: int) -> _CapturedStep:
        static_terms = [(q.clone(), k.clone()) for q, k in terms]
        length = terms[0][0].shape[2]
        timesteps = torch.zeros(num_samples, dtype=torch.long, device=self.device)
        x01 = torch.zeros(num_samples, self.config.num_classes, length, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.inference_mode(), self._autocast():
            for _ in range(2):  # warm-up outside the graph (cuDNN/cuBLAS workspace selection)
                self.model.decoder.forward_prepared(static_terms, timesteps, x01)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode(), self._autocast():
            out = self.model.decoder.forward_prepared(static_terms, timesteps, x01)
        return _CapturedStep(graph, static_terms, timesteps, x01, out)

    def _replay(self, state: Terms, t: int, x01: torch.Tensor) -> torch.Tensor:
        captured = self._graphs.get((int(x01.shape[0]), *state[0][0].shape))
        if captured is None or captured.terms is not state:
            raise BackendError("CUDA-graph state is stale: prepare() was called for another sequence or sample "
                               "count since")
        captured.x01.copy_(x01)
        captured.timesteps.fill_(int(t))
        captured.graph.replay()
        return captured.out.float().clone()


def load_torch_backend(source: str | Path | ActFusion, *, device: str | torch.device | None = "cpu",
                       class_names: Sequence[str] | None = None, **options: Any) -> TorchBackend:
    """A :class:`TorchBackend` from a checkpoint path (our format) or an :class:`ActFusion` instance
    (``device=None``: where the model's parameters are; it is put in eval mode)."""
    if isinstance(source, ActFusion):
        return TorchBackend(source, device=device, class_names=class_names, **options)
    if device is None:
        device = "cpu"
    from actfusion_model.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(source)
    except CheckpointError as err:
        raise BackendError(str(err)) from None
    return TorchBackend(ckpt.model, device=device, class_names=class_names or ckpt.class_names, **options)
