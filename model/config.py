"""Typed configuration of the ActFusion network, diffusion, masking and losses.

Presets follow Table S5 of the paper plus the facts of the authors' implementation
(../shared/reference/official_architecture.md). Every preset can be overridden from YAML.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


TIMESTEP_WEIGHTINGS = ("none", "min_snr")
LR_SCHEDULES = ("constant", "cosine")
MASK_TYPES = ("full", "ant", "random_num_patch", "random_patch", "boundary", "segment", "ant_ratio")
MASKED_INPUTS = ("token", "carry")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture and diffusion settings. Shapes are (batch, channels, time)."""

    num_classes: int
    input_dim: int = 2048
    # Encoder: dilated conv + windowed attention layers, dilation 2**i at layer i.
    enc_layers: int = 10
    enc_dim: int = 64
    enc_kernel: int = 5
    enc_dropout: float = 0.5  # element-wise dropout inside each layer
    enc_channel_dropout: float = 0.5  # Dropout2d over whole input feature channels
    enc_temporal_dropout: float = 0.5  # Dropout2d over whole input frames
    cond_layers: tuple[int, ...] = (5, 7, 9)  # encoder layers (0-based) whose outputs condition the decoder
    # Decoder.
    dec_layers: int = 8
    dec_dim: int = 24
    dec_kernel: int = 7
    dec_dropout: float = 0.1
    time_emb_dim: int = 512
    # Not in the paper: also add a 1x1 projection of the condition to the decoder's input (default off).
    dec_input_condition: bool = False
    # Attention relative bias: slot j of a layer with dilation d uses offset min(j*d, rel_max_dist).
    rel_max_dist: int = 100
    # Diffusion.
    num_timesteps: int = 1000
    snr_scale: float = 1.0
    ddim_steps: int = 25
    ddim_eta: float = 1.0
    # Data rate: the model sees features[:, offset::sample_rate].
    sample_rate: int = 1
    # Self-conditioning: the decoder also sees its previous x0 estimate (C more input channels).
    self_condition: bool = False
    # What a masked frame feeds the encoder. "token": the learnable mask token (the paper). "carry": the
    # features of the last visible frame before it plus the token (so "the current action goes on" is the
    # default the network departs from), and a learned embedding of the frames since that visible frame
    # (so it knows how long ago the cut was). Not in the paper (docs/training.md, "Persistence").
    masked_input: str = "token"

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ConfigError(f"ModelConfig.{name}={getattr(self, name)!r}: {msg}")

        object.__setattr__(self, "cond_layers", tuple(int(i) for i in self.cond_layers))
        need(self.num_classes >= 1, "num_classes", "must be >= 1")
        need(self.input_dim >= 1, "input_dim", "must be >= 1")
        for name in ("enc_layers", "enc_dim", "dec_layers", "dec_dim", "time_emb_dim", "num_timesteps",
                     "ddim_steps", "sample_rate"):
            need(int(getattr(self, name)) >= 1, name, "must be >= 1")
        for name in ("enc_kernel", "dec_kernel"):
            need(getattr(self, name) % 2 == 1, name, "must be odd (centred window)")
        for name in ("enc_dropout", "enc_channel_dropout", "enc_temporal_dropout", "dec_dropout"):
            need(0.0 <= getattr(self, name) < 1.0, name, "must be in [0, 1)")
        need(len(self.cond_layers) >= 1, "cond_layers", "needs at least one encoder layer")
        need(all(0 <= i < self.enc_layers for i in self.cond_layers), "cond_layers",
             f"indices must be in [0, enc_layers={self.enc_layers})")
        need(self.time_emb_dim % 2 == 0 and self.time_emb_dim >= 4, "time_emb_dim", "must be even and >= 4")
        need(self.snr_scale > 0, "snr_scale", "must be > 0")
        need(self.ddim_steps <= self.num_timesteps, "ddim_steps", f"must be <= num_timesteps={self.num_timesteps}")
        need(self.ddim_eta >= 0, "ddim_eta", "must be >= 0")
        need(self.rel_max_dist >= 0, "rel_max_dist", "must be >= 0")
        need(self.masked_input in MASKED_INPUTS, "masked_input", f"choose from {MASKED_INPUTS}")

    @property
    def cond_dim(self) -> int:
        """Channels of the decoder condition (concatenated encoder layer outputs)."""
        return self.enc_dim * len(self.cond_layers)


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Loss weights (Eqs. 8-12) and the frame CE variant."""

    enc_ce: float = 0.5
    enc_smooth: float = 0.1
    enc_boundary: float = 0.0
    dec_ce: float = 0.5
    dec_smooth: float = 0.1
    dec_boundary: float = 0.1
    smooth_clamp: float = 16.0
    class_weighting: bool = True  # hard CE weighted by N / ((count_c + 10) C)
    soft_label_sigma: float | None = None  # Gaussian-soft CE (Breakfast: 4); replaces weighted hard CE
    boundary_sigma: float = 20.0  # smoothing of the boundary targets at the raw frame rate
    # Decoder learning (defaults: the authors' recipe).
    dec_timesteps_per_video: int = 1  # K diffusion timesteps (and noises) per video on one encoder pass
    timestep_weighting: str = "none"  # none | min_snr: decoder terms weighted by min(SNR_t, gamma) / mean
    min_snr_gamma: float = 5.0
    train_on_ddim_steps: bool = False  # draw training timesteps only from the DDIM schedule's steps

    def __post_init__(self) -> None:
        if self.dec_timesteps_per_video < 1:
            raise ConfigError(f"LossConfig.dec_timesteps_per_video={self.dec_timesteps_per_video!r}: must be >= 1")
        if self.timestep_weighting not in TIMESTEP_WEIGHTINGS:
            raise ConfigError(f"LossConfig.timestep_weighting={self.timestep_weighting!r}: choose from "
                              f"{TIMESTEP_WEIGHTINGS}")
        if not self.min_snr_gamma > 0:
            raise ConfigError(f"LossConfig.min_snr_gamma={self.min_snr_gamma!r}: must be > 0")


@dataclass(frozen=True, kw_only=True)
class MaskingConfig:
    """Training-time masking: one type drawn uniformly per iteration from ``types`` (repeats weight)."""

    types: tuple[str, ...] = ("full", "ant", "random_num_patch", "boundary", "segment", "segment")
    ant_ratios: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    patch_size: int = 10
    random_patches: tuple[int, int] = (5, 10)  # random_num_patch: n ~ U{lo..hi}
    fixed_patches: int = 10  # random_patch
    boundary_threshold: float = 0.5
    segment_classes: int = 2
    anticipation_ratio: float = 4.0  # r of the r*N^O rule ("ant_ratio" type)
    # Temporal speed augmentation: each sample's video is resampled in time by s ~ log-uniform [1/a, a]
    # (nearest neighbour) before offset, masking and targets; a = time_stretch, 1.0 = off.
    time_stretch: float = 1.0
    # Training windows (model-rate frames; 0 = the whole video): a sample keeps at most ``window_observed``
    # frames before the anticipation cut and ``window_future`` after it (other masks: a random window of
    # their sum), so the work per sample is bounded whatever the video's length.
    window_observed: int = 0
    window_future: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(self.types))
        if self.window_observed < 0 or self.window_future < 0 or (self.window_observed > 0) != (self.window_future > 0):
            raise ConfigError(f"MaskingConfig.window_observed={self.window_observed!r}, window_future="
                              f"{self.window_future!r}: both 0 (whole videos) or both >= 1")
        if not self.time_stretch >= 1.0:
            raise ConfigError(f"MaskingConfig.time_stretch={self.time_stretch!r}: must be >= 1.0 (1.0 = off; "
                              "a draws each video's speed factor log-uniformly in [1/a, a])")
        bad = [t for t in self.types if t not in MASK_TYPES]
        if bad or not self.types:
            raise ConfigError(f"MaskingConfig.types={self.types!r}: unknown {bad}; choose from {MASK_TYPES}")
        if not all(0.0 < r < 1.0 for r in self.ant_ratios):
            raise ConfigError(f"MaskingConfig.ant_ratios={self.ant_ratios!r}: each must be in (0, 1)")


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Optimisation settings (Table S5)."""

    epochs: int = 5000
    lr: float = 5e-4
    weight_decay: float = 0.0
    accumulate: int = 4
    seed: int = 0
    validation_fraction: float = 0.15
    eval_every: int = 100
    checkpoint_every: int = 100
    median_filter: int = 0  # post-processing window at the sampled rate (0: off)
    batch_size: int = 1  # videos per forward pass (padded to the longest, masked)
    lr_schedule: str = "constant"  # constant | cosine (over the run's optimizer steps, after warm-up)
    warmup_iters: int = 0  # optimizer steps of linear warm-up from 0 to lr
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    ema_decay: float = 0.0  # exponential moving average of the weights (0: off); used to validate and save
    # Stop after this many optimizer steps (None: epochs / time budget decide); the LR schedule spans them.
    max_steps: int | None = None
    # Validate (and keep best.pt) every N optimizer steps and/or every M minutes of wall-clock, besides
    # every ``eval_every`` epochs: a budgeted run on many long videos selects its model within an epoch.
    eval_every_steps: int | None = None
    eval_every_minutes: float | None = None
    validation_max_videos: int | None = None  # validate on the first N of the (fixed) validation videos

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ConfigError(f"TrainingConfig.{name}={getattr(self, name)!r}: {msg}")

        for name in ("max_steps", "eval_every_steps", "validation_max_videos"):
            need(getattr(self, name) is None or getattr(self, name) >= 1, name, "must be >= 1 or null")
        need(self.eval_every_minutes is None or self.eval_every_minutes > 0, "eval_every_minutes",
             "must be > 0 or null")
        need(self.eval_every >= 1 and self.checkpoint_every >= 1, "eval_every", "eval_every and "
             "checkpoint_every must be >= 1")

        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.accumulate >= 1, "accumulate", "must be >= 1")
        need(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"choose from {LR_SCHEDULES}")
        need(self.warmup_iters >= 0, "warmup_iters", "must be >= 0")
        need(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", "must be in [0, 1]")
        need(0.0 <= self.ema_decay < 1.0, "ema_decay", "must be in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Everything one training run needs: model, losses, masking, optimisation."""

    model: ModelConfig
    loss: LossConfig = field(default_factory=LossConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


Preset = dict[str, dict[str, Any]]  # {section: {key: value}}, sections as in ExperimentConfig


def preset_with(base: Mapping[str, Mapping[str, Any]], **changes: Mapping[str, Any]) -> Preset:
    """A copy of preset ``base`` with the keys of ``changes`` (``section={key: value}``) replaced or added.

    For a preset that is another one but for a few values: it then states only those values.
    """
    sections = dict.fromkeys([*base, *changes])
    return {name: {**base.get(name, {}), **changes.get(name, {})} for name in sections}


_50SALADS: Preset = {
    "model": dict(enc_layers=10, enc_dim=64, enc_kernel=5, enc_dropout=0.5, enc_channel_dropout=0.5,
                  enc_temporal_dropout=0.5, cond_layers=(5, 7, 9), dec_layers=8, dec_dim=24,
                  dec_kernel=7, dec_dropout=0.1, snr_scale=1.0, sample_rate=8),
    "loss": dict(enc_smooth=0.1, dec_smooth=0.1, class_weighting=True, soft_label_sigma=None,
                 boundary_sigma=20.0),
    "masking": dict(types=("full", "ant", "random_num_patch", "boundary", "segment", "segment"),
                    boundary_threshold=0.5, segment_classes=2),
    "training": dict(epochs=5000, lr=5e-4, weight_decay=0.0, accumulate=4, median_filter=30),
}

_PRESETS: dict[str, Preset] = {
    "50salads": _50SALADS,
    # The paper lists conditioning layers {5,7,9} for Breakfast; the authors' config uses [7,8,9].
    # We follow the implementation so that their checkpoints load with the same meaning.
    "breakfast": {
        "model": dict(enc_layers=12, enc_dim=256, enc_kernel=5, enc_dropout=0.5, enc_channel_dropout=0.1,
                      enc_temporal_dropout=0.1, cond_layers=(7, 8, 9), dec_layers=8, dec_dim=128,
                      dec_kernel=5, dec_dropout=0.1, snr_scale=0.5, sample_rate=1),
        "loss": dict(enc_smooth=0.025, dec_smooth=0.025, class_weighting=False, soft_label_sigma=4.0,
                     boundary_sigma=3.0),
        "masking": dict(types=("ant", "full", "boundary", "segment", "segment", "random_patch"),
                        boundary_threshold=0.3, segment_classes=1),
        "training": dict(epochs=1000, lr=1e-4, weight_decay=0.0, accumulate=16, median_filter=15),
    },
    # GTEA: Table S5 sizes (those of 50Salads but the conditioning layers and the optimisation); kernel
    # sizes, dropouts, snr, losses and masking follow the 50Salads implementation.
    "gtea": preset_with(_50SALADS, model=dict(cond_layers=(7, 9), sample_rate=1),
                        training=dict(epochs=10000, weight_decay=1e-6, median_filter=0)),
    # A few-thousand-parameter model for tests, CI and the demo.
    "tiny": {
        "model": dict(input_dim=32, enc_layers=4, enc_dim=16, enc_kernel=3, enc_dropout=0.1,
                      enc_channel_dropout=0.1, enc_temporal_dropout=0.1, cond_layers=(1, 3), dec_layers=3,
                      dec_dim=16, dec_kernel=3, dec_dropout=0.1, time_emb_dim=32, snr_scale=1.0,
                      ddim_steps=5, sample_rate=1),
        "loss": dict(enc_smooth=0.1, dec_smooth=0.1, class_weighting=True, boundary_sigma=3.0),
        "masking": dict(types=("full", "ant", "random_num_patch", "boundary", "segment", "ant_ratio"),
                        random_patches=(1, 3), patch_size=4),
        "training": dict(epochs=30, lr=2e-3, accumulate=1, eval_every=10, checkpoint_every=10),
    },
}

PRESETS = tuple(_PRESETS)


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    coerced: dict[str, Any] = {}
    for name, value in values.items():
        coerced[name] = _coerce(value, known[name].type, f"{where}.{name}")
    try:
        return cls(**coerced)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check YAML scalars against the dataclass annotation (given as a string by __future__)."""
    ann = str(annotation)
    if value is None:
        if "None" in ann:
            return None
        raise ConfigError(f"{where}: must not be null (expected {ann})")
    if ann.startswith("tuple"):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        inner = "float" if "float" in ann else ("int" if "int" in ann else "str")
        return tuple(_coerce(v, inner, where) for v in value)
    if ann.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if ann.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if ann.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if ann.startswith("str"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def experiment_config(preset: str = "50salads", overrides: Mapping[str, Any] | None = None,
                      **model_overrides: Any) -> ExperimentConfig:
    """Build a preset, then apply ``overrides`` ({section: {key: value}}) and model keyword overrides."""
    if preset not in _PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {PRESETS}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {"model", "loss", "masking", "training", "preset"})
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; known: model, loss, masking, training")
    sections: dict[str, Any] = {}
    for name, cls in (("model", ModelConfig), ("loss", LossConfig), ("masking", MaskingConfig),
                      ("training", TrainingConfig)):
        values = dict(_PRESETS[preset].get(name, {}))
        extra = overrides.get(name) or {}
        if not isinstance(extra, Mapping):
            raise ConfigError(f"section {name!r} must be a mapping, got {type(extra).__name__}")
        values.update(extra)
        if name == "model":
            values.update(model_overrides)
            values.setdefault("num_classes", 19 if preset != "breakfast" else 48)
        sections[name] = _build(cls, values, name)
    return ExperimentConfig(**sections)


def model_config(preset: str = "50salads", **overrides: Any) -> ModelConfig:
    """A preset's :class:`ModelConfig` with keyword overrides (e.g. ``num_classes=11``)."""
    return experiment_config(preset, **overrides).model


def load_experiment_config(path: str | Path, *, masking_overrides: Mapping[str, Any] | None = None,
                           **model_overrides: Any) -> ExperimentConfig:
    """Load a YAML file ``{preset: NAME, model: {...}, loss: {...}, masking: {...}, training: {...}}``;
    ``masking_overrides`` replace keys of its masking section (values resolved from the data)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    preset = data.get("preset", "50salads")
    if masking_overrides:
        data["masking"] = {**(data.get("masking") or {}), **masking_overrides}
    try:
        return experiment_config(preset, data, **model_overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict form (tuples as lists) for checkpoints and YAML."""
    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(dataclasses.asdict(config))


def model_config_from_dict(values: Mapping[str, Any]) -> ModelConfig:
    """Inverse of ``config_to_dict`` for a :class:`ModelConfig`; unknown keys are an error."""
    return _build(ModelConfig, dict(values), "model")
