"""ONNX export of ActFusion as three graphs, plus a manifest (``actfusion-export``).

- ``encoder.onnx``: ``features (1, D, T) float32``, ``frame_mask (1, T) bool`` -> ``logits (1, C, T)``,
  ``condition (1, cond_dim, T)``; run once per tick.
- ``decoder_condition.onnx``: ``condition`` -> for every decoder layer ``i``: ``cond_qk_i (1, T, 2 dec_dim)``
  (the condition's share of the layer's q and k, biases included) and ``slot_terms_i (1, T, 2 kernel)``
  (relative bias + log-validity of the attention logits, and the validity mask). Run once per tick.
- ``denoise_step.onnx``: those terms, ``timestep (1,) int64``, ``x01 (1, C, T) float32`` ->
  ``logits (1, C, T)`` (x0 logits); run once per DDIM step by :func:`model.runtime.forecast`.

The graphs are the same maths as :class:`model.network.ActFusion` in eval mode (batch 1), re-expressed for
speed: inside the graphs a sequence is a time-major ``(T, channels)`` matrix, so the shifted slices are
contiguous row blocks and every reduction runs over the innermost axis; a layer's q and k 1x1 convs are
one Gemm (the decoder adds the condition's share as Gemm's C input); the values are mixed before their
projection, so v is never shifted; the dilated conv is one Gemm over the ``kernel`` shifted copies side
by side (im2col); the decoder's time MLP is a lookup table over all ``num_timesteps`` steps
(``conv_in``'s bias folded in); the mask token is applied after ``conv_in`` (a per-frame linear map, so
``where`` commutes with it). The time axis is dynamic: a graph exported at one length runs at any
length. Written with the TorchScript exporter (``dynamo=False``), opset 17: the dynamo exporter also
gives dynamic graphs of these modules but took ~20x longer to export and its step graph ran ~35% slower
in ONNX Runtime. Every op is in TensorRT's ONNX parser support matrix (``tests/tensorrt_supported_ops.py``).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model.config import config_to_dict
from model.io import atomic_write_bytes, atomic_write_text
from model.layers import _LOG_EPS, DecoderLayer, EncoderLayer, WindowedAttention
from model.network import ActFusion

FORMAT = "actfusion_ros/onnx/1"
MANIFEST = "manifest.json"
GRAPHS = ("encoder", "decoder_condition", "denoise_step")
DEFAULT_OPSET = 17
DEFAULT_LENGTH = 64
TIME_AXIS = "T"


class ExportError(RuntimeError):
    """Export failed, or the exported graph does not reproduce the eager model."""


# ---------------------------------------------------------------------------------------------
# Time-major building blocks: inside the graphs a sequence is a 2-D (T, channels) matrix (batch 1)
# ---------------------------------------------------------------------------------------------
def _dense(conv: nn.Conv1d, rows: slice | None = None) -> torch.Tensor:
    """1x1 conv weight (out, in, 1) -> MatMul weight (in, out), optionally only some input columns."""
    w = conv.weight.detach()[:, :, 0]
    if rows is not None:
        w = w[:, rows]
    return w.t().contiguous().clone()


def _instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """:func:`model.layers.instance_norm` for (T, C): statistics over time, per channel."""
    mean = x.mean(dim=0, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=0, keepdim=True)
    return centred / torch.sqrt(var + eps)


class _Window(nn.Module):
    """The windowed attention and the dilated conv of one layer, on (T, C) matrices.

    Same maths as :class:`model.layers.WindowedAttention`: slot ``j`` reads frame ``t + (j - k//2) d``
    (zero padding outside), ``logits = (q.k + bias_j) / sqrt(dim) + log(valid + 1e-6)``, softmax over
    the slots, weights times ``valid``, weighted sum of the values. Re-arranged for speed:

    - ``q.k * (1/sqrt(dim)) + slot_bias`` with ``slot_bias`` from :meth:`slot_terms` (it depends on T only,
      so the decoder computes it once per tick);
    - the values are never shifted: with ``v = x Wv + bv`` and ``x``'s shifted copies ``x_j`` (zero
      outside, shared with the conv), ``sum_j w_j valid_j v_j = (sum_j w_j x_j) Wv + (sum_j w_j valid_j) bv``;
    - the dilated conv is one Gemm over the ``kernel`` shifted copies of ``x`` side by side (im2col).
    Slices use static starts and negative static ends: no shape arithmetic per slice.
    """

    def __init__(self, attn: WindowedAttention, conv: nn.Conv1d) -> None:
        super().__init__()
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
        """The ``kernel`` shifted copies of ``x`` (T, C): slot j holds ``x[t + (j - k//2) d]`` or 0."""
        padded = F.pad(x, (0, 0, self.pad, self.pad))
        out = []
        for j in range(self.kernel):
            start, end = j * self.dilation, j * self.dilation - 2 * self.pad
            out.append(padded[start:end] if end < 0 else padded[start:])
        return out

    def slot_terms(self, reference: torch.Tensor) -> torch.Tensor:
        """(T, 2 kernel): ``[bias_j / sqrt(dim) + log(valid_j + 1e-6) | valid_j]`` for a (T, .) ``reference``."""
        length = reference.shape[0]
        pos = torch.arange(length, device=reference.device).unsqueeze(1)
        offsets = (torch.arange(self.kernel, device=reference.device) - self.kernel // 2) * self.dilation
        tap = pos + offsets.unsqueeze(0)
        valid = ((tap >= 0) & (tap < length)).to(reference.dtype)
        return torch.cat([self.bias + torch.log(valid + _LOG_EPS), valid], dim=1)

    def conv(self, x_slices: list[torch.Tensor]) -> torch.Tensor:
        return torch.addmm(self.conv_b, torch.cat(x_slices, dim=1), self.conv_w)

    def attend(self, q: torch.Tensor, k: torch.Tensor, x_slices: list[torch.Tensor],
               slot_terms: torch.Tensor) -> torch.Tensor:
        slot_bias, valid = slot_terms.split(self.kernel, dim=1)
        logits = torch.cat([(q * key).sum(dim=1, keepdim=True) for key in self.slices(k)], dim=1)  # (T, k)
        weights = torch.softmax(logits * self.scale + slot_bias, dim=1)
        columns = weights.split(1, dim=1)
        mixed = columns[0] * x_slices[0]
        for j in range(1, self.kernel):
            mixed = mixed + columns[j] * x_slices[j]
        mass = (weights * valid).sum(dim=1, keepdim=True)  # (T, 1): the weight left on real frames
        return torch.addmm(mass * self.b_v, mixed, self.w_v)


class _FFN(nn.Module):
    def __init__(self, ffn: nn.Sequential) -> None:
        super().__init__()
        self.register_buffer("w1", _dense(ffn[0]))
        self.register_buffer("b1", ffn[0].bias.detach().clone())
        self.register_buffer("w2", _dense(ffn[2]))
        self.register_buffer("b2", ffn[2].bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b2, torch.relu(torch.addmm(self.b1, x, self.w1)), self.w2)


class _EncoderLayer(nn.Module):
    """:class:`model.layers.EncoderLayer` (eval) on (T, C); q and k are one Gemm."""

    def __init__(self, layer: EncoderLayer) -> None:
        super().__init__()
        a = layer.attn
        self.dim = a.dim
        self.register_buffer("w_qk", torch.cat([_dense(a.q), _dense(a.k)], dim=1))
        self.register_buffer("b_qk", torch.cat([a.q.bias, a.k.bias]).detach().clone())
        self.window = _Window(a, layer.conv)
        self.ffn = _FFN(layer.ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k = torch.addmm(self.b_qk, x, self.w_qk).split(self.dim, dim=1)
        xs = self.window.slices(x)
        attn = self.window.attend(q, k, xs, self.window.slot_terms(x))
        return x + self.ffn(_instance_norm(self.window.conv(xs) + attn))


class _DecoderLayer(nn.Module):
    """:class:`model.layers.DecoderLayer` (eval) on (T, C), given this tick's condition terms.

    ``cond_qk`` (T, 2C) is the condition's share of q and k (their biases included), added as Gemm's
    C input, so q and k come out of one Gemm and one Split.
    """

    def __init__(self, layer: DecoderLayer) -> None:
        super().__init__()
        a, d = layer.attn, layer.dim
        self.dim = d
        self.register_buffer("w_qk", torch.cat([_dense(a.q, slice(0, d)), _dense(a.k, slice(0, d))], dim=1))
        self.window = _Window(a, layer.conv)
        self.ffn = _FFN(layer.ffn)

    def forward(self, x: torch.Tensor, cond_qk: torch.Tensor, slot_terms: torch.Tensor) -> torch.Tensor:
        q, k = torch.addmm(cond_qk, x, self.w_qk).split(self.dim, dim=1)
        xs = self.window.slices(x)
        attn = self.window.attend(q, k, xs, slot_terms)
        return x + self.ffn(_instance_norm(self.window.conv(xs) + attn))


# ---------------------------------------------------------------------------------------------
# The three exported graphs (batch 1; also runnable eagerly, which the tests use)
# ---------------------------------------------------------------------------------------------
def _require_batch_one(x: torch.Tensor, name: str) -> None:
    if x.shape[0] != 1:
        raise ExportError(f"the exported graphs take batch 1; {name} has batch {x.shape[0]}")


class EncoderGraph(nn.Module):
    """``(features (1, D, T), frame_mask (1, T) bool) -> (logits (1, C, T), condition (1, cond_dim, T))``."""

    def __init__(self, model: ActFusion) -> None:
        super().__init__()
        enc = model.encoder
        self.cond_layers = tuple(model.cfg.cond_layers)
        w_in = enc.conv_in.weight.detach()  # (F, D, 1)
        self.register_buffer("w_in", w_in.clone())
        self.register_buffer("b_in", enc.conv_in.bias.detach().clone())
        # The mask token after conv_in: conv_in is per-frame linear, so where() commutes with it.
        token = F.conv1d(model.mask_token.detach(), w_in, enc.conv_in.bias.detach())  # (1, F, 1)
        self.register_buffer("token", token.clone())
        self.layers = nn.ModuleList(_EncoderLayer(layer) for layer in enc.layers)
        self.register_buffer("w_out", _dense(enc.conv_out))
        self.register_buffer("b_out", enc.conv_out.bias.detach().clone())

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _require_batch_one(features, "features")
        h = F.conv1d(features, self.w_in, self.b_in)  # (1, F, T): one GEMM over the 2048-d input
        h = torch.where(frame_mask.unsqueeze(1), h, self.token)[0].t()  # (T, F)
        taken = []
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i in self.cond_layers:
                taken.append(h)
        logits = torch.addmm(self.b_out, h, self.w_out)
        return logits.t().unsqueeze(0), torch.cat(taken, dim=1).t().unsqueeze(0)


class ConditionGraph(nn.Module):
    """``condition (1, cond_dim, T)`` -> per decoder layer ``i``: ``cond_qk_i`` (1, T, 2 dec_dim), the
    condition's share of q and k (their biases included), and ``slot_terms_i`` (1, T, 2 kernel): the
    attention's relative bias plus log-validity, and the validity mask. Constant across the DDIM steps.
    """

    def __init__(self, model: ActFusion) -> None:
        super().__init__()
        d = model.cfg.dec_dim
        ws, bs = [], []
        for layer in model.decoder.layers:
            for proj in (layer.attn.q, layer.attn.k):
                ws.append(_dense(proj, slice(d, None)))
                bs.append(proj.bias.detach())
        self.dim = d
        self.register_buffer("w", torch.cat(ws, dim=1))
        self.register_buffer("b", torch.cat(bs).clone())
        self.windows = nn.ModuleList(_Window(layer.attn, layer.conv) for layer in model.decoder.layers)

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _require_batch_one(condition, "condition")
        qk = torch.addmm(self.b, condition[0].t(), self.w).split(2 * self.dim, dim=1)  # L x (T, 2d)
        out: list[torch.Tensor] = []
        for part, window in zip(qk, self.windows):
            out += [part.unsqueeze(0), window.slot_terms(part).unsqueeze(0)]
        return tuple(out)


class DenoiseStepGraph(nn.Module):
    """``(*terms, timestep (1,) int64, x01 (1, C, T)) -> x0 logits (1, C, T)``; terms from :class:`ConditionGraph`.

    The time MLP is a lookup table over all ``num_timesteps`` steps, with ``conv_in``'s bias folded in.
    """

    def __init__(self, model: ActFusion) -> None:
        super().__init__()
        dec = model.decoder
        steps = torch.arange(model.cfg.num_timesteps)
        with torch.no_grad():
            table = dec.time_bias(steps)[:, :, 0] + dec.conv_in.bias.detach()  # (S, dec_dim)
        self.register_buffer("time_table", table.clone())
        self.register_buffer("w_in", _dense(dec.conv_in))
        self.layers = nn.ModuleList(_DecoderLayer(layer) for layer in dec.layers)
        self.register_buffer("w_out", _dense(dec.conv_out))
        self.register_buffer("b_out", dec.conv_out.bias.detach().clone())

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *terms, timestep, x01 = inputs
        _require_batch_one(x01, "x01")
        h = torch.addmm(self.time_table[timestep], x01[0].t(), self.w_in)  # (T, dec_dim)
        for i, layer in enumerate(self.layers):
            h = layer(h, terms[2 * i][0], terms[2 * i + 1][0])
        return torch.addmm(self.b_out, h, self.w_out).t().unsqueeze(0)


def term_names(num_layers: int) -> list[str]:
    """Outputs of ``decoder_condition`` = leading inputs of ``denoise_step``, in order:
    cond_qk_0, slot_terms_0, cond_qk_1, slot_terms_1, ..."""
    return [f"{which}_{i}" for i in range(num_layers) for which in ("cond_qk", "slot_terms")]


@dataclass(frozen=True)
class GraphSpec:
    """One graph to export: module, example inputs and names; time axes are marked dynamic."""

    name: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    time_axes: dict[str, int]


def graph_specs(model: ActFusion, *, length: int = DEFAULT_LENGTH) -> list[GraphSpec]:
    """The three graphs of ``model`` (eval) with example inputs of ``length`` frames."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(1, cfg.input_dim, length, generator=gen)
    mask = torch.ones(1, length, dtype=torch.bool)
    mask[:, length // 2:] = False
    cond = torch.randn(1, cfg.cond_dim, length, generator=gen)
    names = term_names(cfg.dec_layers)
    with torch.no_grad():
        terms = ConditionGraph(model)(cond)
    x01 = torch.rand(1, cfg.num_classes, length, generator=gen)
    step = torch.tensor([cfg.num_timesteps // 2], dtype=torch.int64)
    return [
        GraphSpec("encoder", EncoderGraph(model).eval(), (feats, mask), ["features", "frame_mask"],
                  ["logits", "condition"], {"features": 2, "frame_mask": 1, "logits": 2, "condition": 2}),
        GraphSpec("decoder_condition", ConditionGraph(model).eval(), (cond,), ["condition"], names,
                  {"condition": 2, **{n: 1 for n in names}}),
        GraphSpec("denoise_step", DenoiseStepGraph(model).eval(), (*terms, step, x01),
                  [*names, "timestep", "x01"], ["logits"], {**{n: 1 for n in names}, "x01": 2, "logits": 2}),
    ]


# ---------------------------------------------------------------------------------------------
# Export, checking and the manifest
# ---------------------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _export_bytes(spec: GraphSpec, *, opset: int) -> bytes:
    buf = io.BytesIO()
    dynamic_axes = {name: {axis: TIME_AXIS} for name, axis in spec.time_axes.items()}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer warnings
        torch.onnx.export(spec.module, spec.inputs, buf, dynamo=False, opset_version=opset,
                          input_names=spec.input_names, output_names=spec.output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    return buf.getvalue()


def _io_description(values: Sequence[Any]) -> list[dict[str, Any]]:
    import onnx

    out = []
    for v in values:
        t = v.type.tensor_type
        dims: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                    "shape": dims})
    return out


def check_graph(data: bytes, spec: GraphSpec) -> dict[str, Any]:
    """``onnx.checker`` (full, with shape inference) plus our own contract: names, dynamic time axis."""
    import onnx

    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    inputs, outputs = _io_description(proto.graph.input), _io_description(proto.graph.output)
    if [i["name"] for i in inputs] != spec.input_names or [o["name"] for o in outputs] != spec.output_names:
        raise ExportError(f"{spec.name}: graph I/O names {[i['name'] for i in inputs]} -> "
                          f"{[o['name'] for o in outputs]} differ from {spec.input_names} -> {spec.output_names}")
    for desc in inputs + outputs:
        axis = spec.time_axes.get(desc["name"])
        if axis is not None and desc["shape"][axis] != TIME_AXIS:
            raise ExportError(f"{spec.name}: {desc['name']} axis {axis} is {desc['shape'][axis]!r}, "
                              f"expected the dynamic axis {TIME_AXIS!r}")
    return {"inputs": inputs, "outputs": outputs, "ops": sorted({n.op_type for n in proto.graph.node}),
            "nodes": len(proto.graph.node)}


def verify_against_model(model: ActFusion, out_dir: str | Path, *, length: int, atol: float = 1e-4) -> float:
    """Run the exported graphs with ONNX Runtime at ``length`` frames and compare with the eager model.

    Returns the largest absolute difference over encoder logits, condition and one denoising step;
    raises :class:`ExportError` above ``atol``.
    """
    import numpy as np
    import onnxruntime as ort

    out_dir = Path(out_dir)
    cfg = model.cfg
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(1, cfg.input_dim, length, generator=gen)
    mask = torch.ones(1, length, dtype=torch.bool)
    mask[:, (2 * length) // 3:] = False
    x01 = torch.rand(1, cfg.num_classes, length, generator=gen)
    step = cfg.num_timesteps // 3
    with torch.no_grad():
        logits, cond = model.encode(feats, mask)
        x0 = model.denoise(cond, step, x01)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    run = {n: ort.InferenceSession(str(out_dir / f"{n}.onnx"), opts, providers=["CPUExecutionProvider"])
           for n in GRAPHS}
    o_logits, o_cond = run["encoder"].run(None, {"features": feats.numpy(), "frame_mask": mask.numpy()})
    terms = run["decoder_condition"].run(None, {"condition": cond.numpy()})
    feed = dict(zip(term_names(cfg.dec_layers), terms))
    feed.update(timestep=np.array([step], dtype=np.int64), x01=x01.numpy())
    (o_x0,) = run["denoise_step"].run(None, feed)
    diffs = {name: float(np.abs(a - b.numpy()).max())
             for name, a, b in (("logits", o_logits, logits), ("condition", o_cond, cond), ("x0", o_x0, x0))}
    worst = max(diffs.values())
    if not worst <= atol:
        raise ExportError(f"ONNX Runtime differs from the eager model at T={length}: {diffs} (atol {atol})")
    return worst


def export_onnx(model: ActFusion, out_dir: str | Path, *, class_names: Sequence[str] | None = None,
                opset: int = DEFAULT_OPSET, length: int = DEFAULT_LENGTH, verify_length: int | None = 97,
                source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export the three graphs and ``manifest.json`` into ``out_dir`` (atomic writes); return the manifest.

    ``length``: the single example length used for tracing (the time axis stays dynamic).
    ``verify_length``: if set and onnxruntime is installed, check the graphs against the eager model at
    this other length (raises :class:`ExportError` on mismatch). The manifest is written last.
    """
    import onnx

    if length < 1:
        raise ExportError(f"length must be >= 1, got {length}")
    model = model.eval()
    cfg = model.cfg
    if cfg.self_condition:
        raise ExportError("model.self_condition is not exportable yet (the ONNX denoise step has no "
                          "previous-x0 input); export a model trained without it")
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(cfg.num_classes)]
    if len(names) != cfg.num_classes:
        raise ExportError(f"{len(names)} class names for a model with {cfg.num_classes} classes")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, Any] = {}
    for spec in graph_specs(model, length=length):
        data = _export_bytes(spec, opset=opset)
        info = check_graph(data, spec)
        path = out_dir / f"{spec.name}.onnx"
        atomic_write_bytes(path, data)
        graphs[spec.name] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), **info}
    if verify_length is not None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            verify_length = None
        else:
            verify_against_model(model, out_dir, length=verify_length)
    manifest = {
        "format": FORMAT,
        "opset": opset,
        "exporter": "torch.onnx (TorchScript, dynamo=False)",
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "export_length": length,
        "verified_length": verify_length,
        "time_axis": TIME_AXIS,
        "term_layout": ("per decoder layer i: cond_qk_i (1, T, 2*dec_dim) = [condition's share of q | of k], "
                        "slot_terms_i (1, T, 2*dec_kernel) = [rel. bias/sqrt(dim) + log(valid+1e-6) | valid]"),
        "config": config_to_dict(cfg),
        "class_names": names,
        "graphs": graphs,
        "source": dict(source or {}),
    }
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(onnx_dir: str | Path, *, verify_hashes: bool = True) -> dict[str, Any]:
    """Load ``manifest.json``; with ``verify_hashes`` every graph file must match its recorded sha256."""
    onnx_dir = Path(onnx_dir)
    path = onnx_dir / MANIFEST
    if not path.is_file():
        raise ExportError(f"no {MANIFEST} in {onnx_dir} (export with actfusion-export first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ExportError(f"{path}: not valid JSON: {err}") from None
    if manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    missing = [g for g in GRAPHS if g not in manifest.get("graphs", {})]
    if missing:
        raise ExportError(f"{path}: graphs {missing} missing from the manifest")
    if verify_hashes:
        for name in GRAPHS:
            entry = manifest["graphs"][name]
            file = onnx_dir / entry["file"]
            if not file.is_file():
                raise ExportError(f"{file}: listed in {MANIFEST} but missing")
            digest = sha256_file(file)
            if digest != entry["sha256"]:
                raise ExportError(f"{file}: sha256 {digest[:12]}... does not match the manifest's "
                                  f"{entry['sha256'][:12]}... (re-export; do not mix files of two exports)")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """``actfusion-export --checkpoint CKPT --out DIR [--opset 17] [--length 64]``."""
    from model.checkpoint import CheckpointError, load_checkpoint

    parser = argparse.ArgumentParser(prog="actfusion-export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint in our format (see actfusion-convert)")
    parser.add_argument("--out", required=True, help="output directory for the .onnx files and manifest.json")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--length", type=int, default=DEFAULT_LENGTH, help="example length used for tracing")
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime check against torch")
    args = parser.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        manifest = export_onnx(ckpt.model, args.out, class_names=ckpt.class_names, opset=args.opset,
                               length=args.length, verify_length=None if args.no_verify else 97,
                               source={"checkpoint": str(Path(args.checkpoint).resolve()),
                                       "checkpoint_sha256": sha256_file(args.checkpoint)})
    except (CheckpointError, ExportError) as err:
        print(f"actfusion-export: error: {err}", file=sys.stderr)
        return 1
    for name in GRAPHS:
        g = manifest["graphs"][name]
        print(f"{args.out}/{g['file']}: {g['nodes']} nodes, sha256 {g['sha256'][:16]}")
    print(f"{args.out}/{MANIFEST}: opset {manifest['opset']}, verified at T={manifest['verified_length']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
