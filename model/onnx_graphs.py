"""The three ONNX graphs of ActFusion as torch modules (exported by :mod:`actfusion_model.export`).

- :class:`EncoderGraph`: ``features (1, D, T) float32``, ``frame_mask (1, T) bool`` -> ``logits (1, C, T)``,
  ``condition (1, cond_dim, T)``; run once per forecast.
- :class:`ConditionGraph`: ``condition`` -> for every decoder layer ``i``: ``cond_qk_i (1, T, 2 dec_dim)``
  (the condition's share of the layer's q and k, biases included) and ``slot_terms_i (1, T, 2 kernel)``
  (relative bias + log-validity of the attention logits, and the validity mask). Run once per forecast.
- :class:`DenoiseStepGraph`: those terms, ``timestep (1,) int64``, ``x01 (1, C, T) float32`` ->
  ``logits (1, C, T)`` (x0 logits); run once per DDIM step by :func:`actfusion_model.runtime.forecast`. Exported
  twice: ``denoise_step`` (one sample) and ``denoise_step_batch`` (``x01 (K, C, T)`` -> ``logits (K, C, T)``
  for K noisy samples of one observation, the terms broadcast along K).

The graphs are the same maths as :class:`actfusion_model.network.ActFusion` in eval mode, re-expressed for speed:
inside the graphs a sequence is a time-major ``(T, channels)`` matrix (``(K, T, channels)`` in the
denoise step), so the shifted slices are contiguous row blocks and every reduction runs over the
innermost axis; a layer's q and k 1x1 convs are one Gemm (the decoder adds the condition's share as
Gemm's C input, or as a broadcast add over K); the values are mixed before their projection, so v is
never shifted; the dilated conv is one Gemm over the ``kernel`` shifted copies side by side (im2col); the
decoder's time MLP is a lookup table over all ``num_timesteps`` steps (``conv_in``'s bias folded in); the
mask token is applied after ``conv_in`` (a per-frame linear map, so ``where`` commutes with it). The time
axis (and the denoise step's sample axis) is dynamic: a graph exported at one length runs at any length.

**FP16** (:class:`GraphPrecision`, ``actfusion-export --precision fp16``): the same modules with fp16 weights and
activations behind fp32 graph inputs and outputs (a Cast after each input, before each output), so a backend
feeds and reads an fp16 export exactly like an fp32 one, and TensorRT's strongly typed networks take their
precision from these types. A few ops stay in fp32 (:data:`FP16_KEEP_FP32`, each a named island that casts up
and back). The fp32 graphs are untouched: every cast is a Python-level choice, so they trace to the same nodes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from actfusion_model.export_manifest import BATCH_GRAPH, ExportError
from actfusion_model.layers import (
    LOG_EPS,
    MAX_GAP_DOUBLINGS,
    DecoderLayer,
    EncoderLayer,
    WindowedAttention,
    gap_features,
    last_visible_index,
)
from actfusion_model.network import ActFusion

DEFAULT_LENGTH = 64

#: The ops an fp16 graph may keep in fp32 (islands: cast up, compute, cast back). ``norm``: the instance
#: norm's statistics and normalisation over the T frames. ``attention``: the windowed attention's q.k logits,
#: scale, bias and softmax. ``slot_terms``: ``bias + log(valid + 1e-6)``.
FP32_ISLANDS = ("norm", "attention", "slot_terms")
#: What ``--precision fp16`` keeps in fp32, measured with ``benchmarks/bench_fp16.py`` (docs/gpu.md, "FP16
#: accuracy"): ``norm`` only. Its variance sums T squared deviations: 1.1e5 at T = 4096 and 2.6e5 at T = 8192 in
#: the trained 50 Salads model, past fp16's 65504 for any accumulator that is not fp32 (and eps = 1e-5 is below
#: fp16's normal range). Not kept: ``attention`` (its largest |q.k| was 560, 100x below overflow; keeping it
#: changed no error beyond rounding)
#: and ``slot_terms`` (1e-6 is an fp16 subnormal; flushed to zero it makes log(...) = -inf, which the softmax
#: turns into the same zero weight).
FP16_KEEP_FP32 = ("norm",)


@dataclass(frozen=True)
class GraphPrecision:
    """What a graph computes in: ``fp32`` (default), or ``fp16`` with the islands ``keep_fp32`` (names of
    :data:`FP32_ISLANDS`) in fp32. Inputs and outputs are fp32 either way."""

    name: str = "fp32"
    keep_fp32: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.name not in ("fp32", "fp16"):
            raise ExportError(f"precision must be fp32 or fp16, got {self.name!r}")
        unknown = sorted(set(self.keep_fp32) - set(FP32_ISLANDS))
        if unknown:
            raise ExportError(f"unknown fp32 island(s) {unknown}; known: {', '.join(FP32_ISLANDS)}")
        if self.name == "fp32" and self.keep_fp32:
            raise ExportError("keep_fp32 names ops of an fp16 graph; an fp32 graph is fp32 throughout")
        object.__setattr__(self, "keep_fp32", frozenset(self.keep_fp32))

    @classmethod
    def of(cls, name: str, keep_fp32: Iterable[str] | None = None) -> "GraphPrecision":
        """``name`` with ``keep_fp32`` (None: :data:`FP16_KEEP_FP32` for fp16, nothing for fp32)."""
        if keep_fp32 is None:
            keep_fp32 = FP16_KEEP_FP32 if name == "fp16" else ()
        return cls(name, frozenset(keep_fp32))

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of weights and activations."""
        return torch.float16 if self.name == "fp16" else torch.float32

    def island(self, op: str) -> torch.dtype:
        """The dtype the island ``op`` computes in."""
        return torch.float32 if op in self.keep_fp32 else self.dtype


FP32 = GraphPrecision()


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype``; no op (and no graph node) when it is in it already."""
    return x if x.dtype == dtype else x.to(dtype)


# ---------------------------------------------------------------------------------------------
# Time-major building blocks: a sequence is a (T, channels) matrix, or (K, T, channels) for K samples
# ---------------------------------------------------------------------------------------------
def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight + bias``: one Gemm for a (T, in) matrix, a MatMul + Add for (K, T, in)."""
    if x.dim() == 2:
        return torch.addmm(bias, x, weight)
    return torch.matmul(x, weight) + bias


def _dense(conv: nn.Conv1d, rows: slice | None = None) -> torch.Tensor:
    """1x1 conv weight (out, in, 1) -> MatMul weight (in, out), optionally only some input columns."""
    w = conv.weight.detach()[:, :, 0]
    if rows is not None:
        w = w[:, rows]
    return w.t().contiguous().clone()


def _instance_norm(x: torch.Tensor, eps: float = 1e-5, precision: GraphPrecision = FP32) -> torch.Tensor:
    """:func:`actfusion_model.layers.instance_norm` for (..., T, C): statistics over time, per channel (in the
    ``norm`` island's dtype, the result in the graph's)."""
    out_dtype, x = x.dtype, _cast(x, precision.island("norm"))
    mean = x.mean(dim=-2, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=-2, keepdim=True)
    return _cast(centred / torch.sqrt(var + eps), out_dtype)


class _Window(nn.Module):
    """The windowed attention and the dilated conv of one layer, on (..., T, C) sequences.

    Same maths as :class:`actfusion_model.layers.WindowedAttention`: slot ``j`` reads frame ``t + (j - k//2) d``
    (zero padding outside), ``logits = (q.k + bias_j) / sqrt(dim) + log(valid + 1e-6)``, softmax over
    the slots, weights times ``valid``, weighted sum of the values. Re-arranged for speed:

    - ``q.k * (1/sqrt(dim)) + slot_bias`` with ``slot_bias`` from :meth:`slot_terms` (it depends on T only,
      so the decoder computes it once per tick);
    - the values are never shifted: with ``v = x Wv + bv`` and ``x``'s shifted copies ``x_j`` (zero
      outside, shared with the conv), ``sum_j w_j valid_j v_j = (sum_j w_j x_j) Wv + (sum_j w_j valid_j) bv``;
    - the dilated conv is one Gemm over the ``kernel`` shifted copies of ``x`` side by side (im2col).
    Slices use static starts and negative static ends: no shape arithmetic per slice.
    """

    def __init__(self, attn: WindowedAttention, conv: nn.Conv1d, precision: GraphPrecision = FP32) -> None:
        super().__init__()
        self.precision = precision
        self.kernel, self.dilation, self.dim = attn.kernel, attn.dilation, attn.dim
        self.register_buffer("bias", attn.rel_bias.detach()[attn.bias_rows].clone() / math.sqrt(attn.dim))
        k = self.kernel
        w = conv.weight.detach()  # (out, in, k): column j*C + c of the side-by-side slices meets w[:, c, j]
        self.register_buffer("conv_w", w.permute(2, 1, 0).reshape(k * w.shape[1], w.shape[0]).contiguous())
        self.register_buffer("conv_b", conv.bias.detach().clone())
        self.register_buffer("w_v", _dense(attn.v))
        self.register_buffer("b_v", attn.v.bias.detach().view(1, -1).clone())
        self.pad = (k // 2) * self.dilation
        self.scale = 1.0 / math.sqrt(attn.dim)

    def slices(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ``kernel`` shifted copies of ``x`` (..., T, C): slot j holds ``x[t + (j - k//2) d]`` or 0."""
        padded = F.pad(x, (0, 0, self.pad, self.pad))
        out = []
        for j in range(self.kernel):
            start, end = j * self.dilation, j * self.dilation - 2 * self.pad
            out.append(padded[..., start:end, :] if end < 0 else padded[..., start:, :])
        return out

    def slot_terms(self, reference: torch.Tensor) -> torch.Tensor:
        """(T, 2 kernel): ``[bias_j / sqrt(dim) + log(valid_j + 1e-6) | valid_j]`` for a (T, .) ``reference``
        (in the ``slot_terms`` island's dtype)."""
        length = reference.shape[0]
        pos = torch.arange(length, device=reference.device).unsqueeze(1)
        offsets = (torch.arange(self.kernel, device=reference.device) - self.kernel // 2) * self.dilation
        tap = pos + offsets.unsqueeze(0)
        dtype = self.precision.island("slot_terms") if self.precision.name == "fp16" else reference.dtype
        valid = ((tap >= 0) & (tap < length)).to(dtype)
        return torch.cat([_cast(self.bias, dtype) + torch.log(valid + LOG_EPS), valid], dim=1)

    def conv(self, x_slices: list[torch.Tensor]) -> torch.Tensor:
        return _affine(torch.cat(x_slices, dim=-1), self.conv_w, self.conv_b)

    def attend(self, q: torch.Tensor, k: torch.Tensor, x_slices: list[torch.Tensor],
               slot_terms: torch.Tensor) -> torch.Tensor:
        """``slot_terms`` (T, 2 kernel) from :meth:`slot_terms`, shared by every sample of a batch."""
        slot_bias, valid = slot_terms.split(self.kernel, dim=-1)
        dtype, work = q.dtype, self.precision.island("attention")
        q, k = _cast(q, work), _cast(k, work)
        logits = torch.cat([(q * key).sum(dim=-1, keepdim=True) for key in self.slices(k)], dim=-1)  # (.., T, k)
        weights = _cast(torch.softmax(logits * self.scale + _cast(slot_bias, work), dim=-1), dtype)
        valid = _cast(valid, dtype)
        columns = weights.split(1, dim=-1)
        mixed = columns[0] * x_slices[0]
        for j in range(1, self.kernel):
            mixed = mixed + columns[j] * x_slices[j]
        mass = (weights * valid).sum(dim=-1, keepdim=True)  # (.., T, 1): the weight left on real frames
        return _affine(mixed, self.w_v, mass * self.b_v)


class _FFN(nn.Module):
    def __init__(self, ffn: nn.Sequential) -> None:
        super().__init__()
        self.register_buffer("w1", _dense(ffn[0]))
        self.register_buffer("b1", ffn[0].bias.detach().clone())
        self.register_buffer("w2", _dense(ffn[2]))
        self.register_buffer("b2", ffn[2].bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _affine(torch.relu(_affine(x, self.w1, self.b1)), self.w2, self.b2)


class _EncoderLayer(nn.Module):
    """:class:`actfusion_model.layers.EncoderLayer` (eval) on (T, C); q and k are one Gemm."""

    def __init__(self, layer: EncoderLayer, precision: GraphPrecision = FP32) -> None:
        super().__init__()
        a = layer.attn
        self.dim = a.dim
        self.precision = precision
        self.register_buffer("w_qk", torch.cat([_dense(a.q), _dense(a.k)], dim=1))
        self.register_buffer("b_qk", torch.cat([a.q.bias, a.k.bias]).detach().clone())
        self.window = _Window(a, layer.conv, precision)
        self.ffn = _FFN(layer.ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k = torch.addmm(self.b_qk, x, self.w_qk).split(self.dim, dim=1)
        xs = self.window.slices(x)
        attn = self.window.attend(q, k, xs, self.window.slot_terms(x))
        return x + self.ffn(_instance_norm(self.window.conv(xs) + attn, precision=self.precision))


class _DecoderLayer(nn.Module):
    """:class:`actfusion_model.layers.DecoderLayer` (eval) on (K, T, C), given this forecast's condition terms.

    ``cond_qk`` (T, 2C) is the condition's share of q and k (their biases included), added to one
    MatMul's output (broadcast over the K samples), so q and k come out of one MatMul and one Split.
    """

    def __init__(self, layer: DecoderLayer, precision: GraphPrecision = FP32) -> None:
        super().__init__()
        a, d = layer.attn, layer.dim
        self.dim = d
        self.precision = precision
        self.register_buffer("w_qk", torch.cat([_dense(a.q, slice(0, d)), _dense(a.k, slice(0, d))], dim=1))
        self.window = _Window(a, layer.conv, precision)
        self.ffn = _FFN(layer.ffn)

    def forward(self, x: torch.Tensor, cond_qk: torch.Tensor, slot_terms: torch.Tensor) -> torch.Tensor:
        q, k = _affine(x, self.w_qk, cond_qk).split(self.dim, dim=-1)
        xs = self.window.slices(x)
        attn = self.window.attend(q, k, xs, slot_terms)
        return x + self.ffn(_instance_norm(self.window.conv(xs) + attn, precision=self.precision))


# ---------------------------------------------------------------------------------------------
# The three exported graphs (one observation; also runnable eagerly, which the tests use)
# ---------------------------------------------------------------------------------------------
def _require_batch_one(x: torch.Tensor, name: str) -> None:
    if x.shape[0] != 1:
        raise ExportError(f"the encoder and condition graphs take batch 1; {name} has batch {x.shape[0]}")


class EncoderGraph(nn.Module):
    """``(features (1, D, T), frame_mask (1, T) bool) -> (logits (1, C, T), condition (1, cond_dim, T))``."""

    def __init__(self, model: ActFusion, precision: GraphPrecision = FP32) -> None:
        super().__init__()
        enc = model.encoder
        self.precision = precision
        self.cond_layers = tuple(model.cfg.cond_layers)
        w_in = enc.conv_in.weight.detach()  # (F, D, 1)
        self.register_buffer("w_in", w_in.clone())
        self.register_buffer("b_in", enc.conv_in.bias.detach().clone())
        # The mask token after conv_in: conv_in is per-frame linear, so where() commutes with it.
        token = F.conv1d(model.mask_token.detach(), w_in, enc.conv_in.bias.detach())  # (1, F, 1)
        self.register_buffer("token", token.clone())
        # masked_input "carry": a masked frame reads conv_in of the last visible frame plus conv_in's image of
        # the token without its bias, and the gap features' projection is added (ActFusion.encoder_input).
        self.carry = model.cfg.masked_input == "carry"
        if self.carry:
            self.register_buffer("token_delta", (token - enc.conv_in.bias.detach().view(1, -1, 1)).clone())
            self.register_buffer("w_gap", enc.gap_in.weight.detach().t().contiguous().clone())  # (G, F)
        self.layers = nn.ModuleList(_EncoderLayer(layer, precision) for layer in enc.layers)
        self.register_buffer("w_out", _dense(enc.conv_out))
        self.register_buffer("b_out", enc.conv_out.bias.detach().clone())
        self.to(precision.dtype)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _require_batch_one(features, "features")
        features = _cast(features, self.precision.dtype)
        h = F.conv1d(features, self.w_in, self.b_in)  # (1, F, T): one GEMM over the 2048-d input
        if self.carry:
            last = last_visible_index(frame_mask, MAX_GAP_DOUBLINGS)
            carried = torch.gather(h, 2, last.clamp(min=0).unsqueeze(1).expand(-1, h.shape[1], -1))
            masked = torch.where((last >= 0).unsqueeze(1), carried + self.token_delta, self.token)
            h = torch.where(frame_mask.unsqueeze(1), h, masked)[0].t()  # (T, F)
            h = h + torch.matmul(_cast(gap_features(frame_mask, last)[0].t(), h.dtype), self.w_gap)
        else:
            h = torch.where(frame_mask.unsqueeze(1), h, self.token)[0].t()  # (T, F)
        taken = []
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i in self.cond_layers:
                taken.append(h)
        logits = torch.addmm(self.b_out, h, self.w_out)
        return (_cast(logits, torch.float32).t().unsqueeze(0),
                _cast(torch.cat(taken, dim=1), torch.float32).t().unsqueeze(0))


class ConditionGraph(nn.Module):
    """``condition (1, cond_dim, T)`` -> per decoder layer ``i``: ``cond_qk_i`` (1, T, 2 dec_dim), the
    condition's share of q and k (their biases included), and ``slot_terms_i`` (1, T, 2 kernel): the
    attention's relative bias plus log-validity, and the validity mask. Constant across the DDIM steps.
    """

    def __init__(self, model: ActFusion, precision: GraphPrecision = FP32) -> None:
        super().__init__()
        d = model.cfg.dec_dim
        self.precision = precision
        ws, bs = [], []
        for layer in model.decoder.layers:
            for proj in (layer.attn.q, layer.attn.k):
                ws.append(_dense(proj, slice(d, None)))
                bs.append(proj.bias.detach())
        self.dim = d
        self.register_buffer("w", torch.cat(ws, dim=1))
        self.register_buffer("b", torch.cat(bs).clone())
        self.windows = nn.ModuleList(_Window(layer.attn, layer.conv, precision) for layer in model.decoder.layers)
        cond_in = model.decoder.cond_in  # model.dec_input_condition: one more term, added to the decoder input
        self.input_condition = cond_in is not None
        if cond_in is not None:
            self.register_buffer("w_cin", _dense(cond_in))
            self.register_buffer("b_cin", cond_in.bias.detach().clone())
        self.to(precision.dtype)

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _require_batch_one(condition, "condition")
        condition = _cast(condition, self.precision.dtype)
        qk = torch.addmm(self.b, condition[0].t(), self.w).split(2 * self.dim, dim=1)  # L x (T, 2d)
        out: list[torch.Tensor] = []
        for part, window in zip(qk, self.windows):
            out += [part.unsqueeze(0), window.slot_terms(part).unsqueeze(0)]
        if self.input_condition:
            out.append(torch.addmm(self.b_cin, condition[0].t(), self.w_cin).unsqueeze(0))  # (1, T, dec_dim)
        return tuple(_cast(term, torch.float32) for term in out)


class DenoiseStepGraph(nn.Module):
    """``(*terms, timestep (1,) int64, x01 (1, C, T)) -> x0 logits (1, C, T)``; terms from :class:`ConditionGraph`.

    ``batched``: ``x01 (K, C, T) -> logits (K, C, T)`` for K noisy samples of one observation, the terms
    (batch 1) broadcast along K (exported as ``denoise_step_batch``; the batch-1 graph keeps the plain
    Gemm form, which ONNX Runtime runs ~10% faster than the batched MatMul + Add at K = 1).
    The time MLP is a lookup table over all ``num_timesteps`` steps, with ``conv_in``'s bias folded in.
    """

    def __init__(self, model: ActFusion, *, batched: bool = False, precision: GraphPrecision = FP32) -> None:
        super().__init__()
        dec = model.decoder
        self.precision = precision
        steps = torch.arange(model.cfg.num_timesteps)
        with torch.no_grad():
            table = dec.time_bias(steps)[:, :, 0] + dec.conv_in.bias.detach()  # (S, dec_dim)
        self.batched = batched
        self.input_condition = dec.cond_in is not None
        self.register_buffer("time_table", table.clone())
        self.register_buffer("w_in", _dense(dec.conv_in))
        self.layers = nn.ModuleList(_DecoderLayer(layer, precision) for layer in dec.layers)
        self.register_buffer("w_out", _dense(dec.conv_out))
        self.register_buffer("b_out", dec.conv_out.bias.detach().clone())
        self.to(precision.dtype)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *terms, timestep, x01 = inputs
        dtype = self.precision.dtype
        x01 = _cast(x01, dtype)
        terms = [term if i < 2 * len(self.layers) and i % 2 else _cast(term, dtype)  # slot terms: cast in attend
                 for i, term in enumerate(terms)]
        if self.batched:
            h = _affine(x01.transpose(1, 2), self.w_in, self.time_table[timestep])  # (K, T, dec_dim)
        else:
            _require_batch_one(x01, "x01")
            h = _affine(x01[0].t(), self.w_in, self.time_table[timestep])  # (T, dec_dim)
        if self.input_condition:
            h = h + terms[-1][0]  # the condition's input term (T, dec_dim), broadcast over the samples
        for i, layer in enumerate(self.layers):
            h = layer(h, terms[2 * i][0], terms[2 * i + 1][0])
        logits = _cast(_affine(h, self.w_out, self.b_out), torch.float32)
        return logits.transpose(1, 2) if self.batched else logits.t().unsqueeze(0)


def term_names(num_layers: int, *, input_condition: bool = False) -> list[str]:
    """Outputs of ``decoder_condition`` = leading inputs of ``denoise_step``, in order:
    cond_qk_0, slot_terms_0, cond_qk_1, slot_terms_1, ..., then ``cond_in`` (1, T, dec_dim) when the model has
    ``dec_input_condition``."""
    names = [f"{which}_{i}" for i in range(num_layers) for which in ("cond_qk", "slot_terms")]
    return names + ["cond_in"] if input_condition else names


@dataclass(frozen=True)
class GraphSpec:
    """One graph to export: module, example inputs and names; time and sample axes are marked dynamic."""

    name: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    time_axes: dict[str, int]
    sample_axes: dict[str, int] = field(default_factory=dict)


def graph_specs(model: ActFusion, *, length: int = DEFAULT_LENGTH,
                precision: GraphPrecision = FP32) -> list[GraphSpec]:
    """The graphs of ``model`` (eval) with example inputs of ``length`` frames: the three of
    :data:`~actfusion_model.export_manifest.GRAPHS`, then the batched denoise step; in ``precision``."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(1, cfg.input_dim, length, generator=gen)
    mask = torch.ones(1, length, dtype=torch.bool)
    mask[:, length // 2:] = False
    cond = torch.randn(1, cfg.cond_dim, length, generator=gen)
    names = term_names(cfg.dec_layers, input_condition=cfg.dec_input_condition)
    with torch.no_grad():
        terms = ConditionGraph(model, precision)(cond)
    x01 = torch.rand(2, cfg.num_classes, length, generator=gen)  # 2 samples: the sample axis is traced as such
    step = torch.tensor([cfg.num_timesteps // 2], dtype=torch.int64)
    step_axes = {**{n: 1 for n in names}, "x01": 2, "logits": 2}
    return [
        GraphSpec("encoder", EncoderGraph(model, precision).eval(), (feats, mask), ["features", "frame_mask"],
                  ["logits", "condition"], {"features": 2, "frame_mask": 1, "logits": 2, "condition": 2}),
        GraphSpec("decoder_condition", ConditionGraph(model, precision).eval(), (cond,), ["condition"], names,
                  {"condition": 2, **{n: 1 for n in names}}),
        GraphSpec("denoise_step", DenoiseStepGraph(model, precision=precision).eval(), (*terms, step, x01[:1]),
                  [*names, "timestep", "x01"], ["logits"], step_axes),
        GraphSpec(BATCH_GRAPH, DenoiseStepGraph(model, batched=True, precision=precision).eval(), (*terms, step, x01),
                  [*names, "timestep", "x01"], ["logits"], step_axes, {"x01": 0, "logits": 0}),
    ]
