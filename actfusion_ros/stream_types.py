"""The streaming core's types: its configuration, its inputs and outputs, the forecaster it calls.

* :class:`StreamConfig`: the typed, validated settings of :class:`~actfusion_ros.stream.StreamingAnticipator`
  (the node's stream parameters are its fields: :data:`STREAM_KEYS`);
* :class:`EncodedFrame`: a frame known by its shape before it is decoded;
* :class:`Forecaster`: the protocol of the model behind the stream, and :class:`ForecastOutput`, what it
  returns (the frame probabilities and, when it samples K futures, those);
* :class:`TimedSegment`, :class:`ForecastResult`, :class:`StreamStats`: what a tick and the counters give,
  and :func:`timed_segments`, which cuts frame probabilities into timed segments (the segment-time
  convention of :mod:`actfusion_ros.stream`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

from actfusion_model.consensus import frame_marginals
from actfusion_model.features.pipeline import FeaturePipeline
from actfusion_model.labels import segments_from_labels
from actfusion_ros.next_actions import TimedAlternative
from actfusion_ros.time_ns import NS_PER_S, period_ns_from_rate

__all__ = ["EncodedFrame", "ForecastError", "ForecastOutput", "ForecastResult", "Forecaster", "STREAM_KEYS",
           "StreamConfig", "StreamStats", "TimedSegment", "WINDOW_POLICIES", "timed_segments"]

WINDOW_POLICIES = ("drop_oldest", "downsample")


class ForecastError(ValueError):
    """The forecaster returned arrays of the wrong shape or non-finite values."""


def _bad(name: str, value: object, expected: str) -> ValueError:
    return ValueError(f"StreamConfig.{name} must be {expected}, got {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    """Settings of the streaming core (seconds and Hz at the edge; ns inside).

    feature_rate_hz: model feature rate, in (0, 1000].
    ratio: anticipation ratio r of the r*N^O horizon rule, finite >= 0.
    max_horizon_s: cap on the anticipated time, >= 0 seconds, or None for no cap.
    max_window_s: observed window kept, > 0 seconds; must hold >= max(2, min_observed_frames) features.
    min_observed_frames: features needed before a result is complete (not partial), >= 1.
    publish_partial: publish flagged partial results during start-up (else ticks return None).
    stale_after_s: newest frame older than this at tick time -> no result, > 0 seconds.
    episode_gap_s: a stamp gap larger than this starts a new episode, > 0 seconds.
    backward_jump_s: a stamp going back by more than this starts a new episode (smaller steps back
        are out-of-order frames and are ignored), >= 0 seconds.
    max_future_s: a frame stamped more than this after its arrival time (given to ``admit`` or
        ``push_frame``) is rejected, > 0 seconds.
    window_policy: 'drop_oldest' or 'downsample' (see the module docstring).
    max_downsample_factor: largest rate reduction for 'downsample', a power of two in [1, 1024].
    """

    feature_rate_hz: float = 2.0
    ratio: float = 4.0
    max_horizon_s: float | None = 300.0
    max_window_s: float = 300.0
    min_observed_frames: int = 4
    publish_partial: bool = True
    stale_after_s: float = 2.0
    episode_gap_s: float = 5.0
    backward_jump_s: float = 1.0
    max_future_s: float = 5.0
    window_policy: str = "drop_oldest"
    max_downsample_factor: int = 8

    def __post_init__(self) -> None:
        r = self.feature_rate_hz
        if not _is_real(r) or not (0 < r <= 1000) or not math.isfinite(r):
            raise _bad("feature_rate_hz", r, "a number in (0, 1000] Hz")
        if not _is_real(self.ratio) or not math.isfinite(self.ratio) or self.ratio < 0:
            raise _bad("ratio", self.ratio, "a finite number >= 0")
        mh = self.max_horizon_s
        if mh is not None and (not _is_real(mh) or not math.isfinite(mh) or mh < 0):
            raise _bad("max_horizon_s", mh, "None or a finite number >= 0 seconds")
        for name in ("max_window_s", "stale_after_s", "episode_gap_s", "max_future_s"):
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(v) or v <= 0:
                raise _bad(name, v, "a finite number > 0 seconds")
        bj = self.backward_jump_s
        if not _is_real(bj) or not math.isfinite(bj) or bj < 0:
            raise _bad("backward_jump_s", bj, "a finite number >= 0 seconds")
        m = self.min_observed_frames
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise _bad("min_observed_frames", m, "an int >= 1")
        if not isinstance(self.publish_partial, (bool, np.bool_)):
            raise _bad("publish_partial", self.publish_partial, "a bool")
        if self.window_policy not in WINDOW_POLICIES:
            raise _bad("window_policy", self.window_policy, f"one of {WINDOW_POLICIES}")
        f = self.max_downsample_factor
        if (isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 1 <= f <= 1024
                or f & (f - 1)):
            raise _bad("max_downsample_factor", f, "a power of two in [1, 1024]")
        need = max(2, int(m))
        if self.window_capacity < need:
            raise _bad("max_window_s", self.max_window_s,
                       f">= {need / r:g} s (room for max(2, min_observed_frames)={need} features "
                       f"at {r:g} Hz)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "StreamConfig":
        """Build from a dict (e.g. ROS parameters); unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown StreamConfig keys {unknown}; known: {sorted(known)}")
        return cls(**dict(values))

    @property
    def period_ns(self) -> int:
        """Feature period at the configured rate, integer ns."""
        return period_ns_from_rate(self.feature_rate_hz)

    @property
    def window_capacity(self) -> int:
        """Buffer size in features: ``ceil(max_window_s * feature_rate_hz)``."""
        return int(math.ceil(self.max_window_s * self.feature_rate_hz - 1e-9))

    def max_horizon_frames(self, period_ns: int | None = None) -> int | None:
        """``round(max_horizon_s / period)`` at ``period_ns`` (default: the configured period)."""
        if self.max_horizon_s is None:
            return None
        period = self.period_ns if period_ns is None else period_ns
        return int(round(self.max_horizon_s * NS_PER_S / period))



@dataclass(frozen=True)
class TimedSegment:
    """A segment with absolute camera times: ``[start_ns, end_ns)``."""

    label: str
    class_id: int
    start_ns: int
    end_ns: int
    confidence: float

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, eq=False)
class ForecastResult:
    """One tick's output.

    stamp_ns: camera stamp of the LAST feature used (never the wall clock).
    current: the last observed segment (the action going on at ``stamp_ns``).
    observed / future: segments with absolute times (see the module docstring for the convention).
    num_observed / horizon: N^O and the number of future frames asked for.
    partial: fewer than ``min_observed_frames`` features were available.
    feature_period_ns: the (effective) period of the features and of each future frame.
    observed_stamps_ns: (N^O,) int64 stamps of the observed features.
    observed_probs / future_probs: (C, N^O) and (C, H) float32 frame probabilities (for K > 1 samples:
        the forecaster's per-frame consensus of them).
    inference_s: time spent in the forecaster (``perf_clock``).
    latency_s: ``(now_ns - stamp_ns) / 1e9 + inference_s``: data age at the tick plus inference.
    future_samples: (K, C, H) float32 probabilities of the K sampled futures, or ``None`` for one sample.
    num_samples: K, the number of sampled futures behind this result (1: ``future_probs`` is the one).
    next_actions: the distribution of the action after ``current`` over the K samples, most probable first,
        in camera time (:func:`actfusion_ros.next_actions.timed_alternatives`); for K = 1 the one sample's
        next action with probability 1. Empty when no sample leaves the current action within the horizon
        (the missing probability is "the current action lasts beyond the horizon").
    """

    stamp_ns: int
    episode: int
    current: TimedSegment
    observed: tuple[TimedSegment, ...]
    future: tuple[TimedSegment, ...]
    num_observed: int
    horizon: int
    partial: bool
    feature_period_ns: int
    observed_stamps_ns: np.ndarray
    observed_probs: np.ndarray
    future_probs: np.ndarray
    inference_s: float
    latency_s: float
    future_samples: np.ndarray | None = None
    num_samples: int = 1
    next_actions: tuple[TimedAlternative, ...] = ()

    def future_marginals(self) -> np.ndarray:
        """``(C, H)`` float32 per-frame class distribution of the forecast: for K > 1 samples the fraction of
        samples whose most probable class is ``c`` at future frame ``h`` (the votes behind the future segments'
        confidences, :func:`actfusion_model.consensus.frame_marginals`); for one sample its probabilities.
        Each column sums to 1."""
        if self.future_samples is None:
            return np.asarray(self.future_probs, dtype=np.float32)
        return frame_marginals(self.future_samples, self.future_probs.shape[0]).astype(np.float32)


@dataclass(frozen=True)
class StreamStats:
    """Counters of a :class:`StreamingAnticipator` (a consistent snapshot).

    ``frames_received == frames_accepted + frames_not_due + duplicates + out_of_order
    + invalid_frames + extract_errors + future_frames`` and ``ticks == published + skipped_ticks``.
    """

    frames_received: int
    frames_accepted: int
    frames_not_due: int
    duplicates: int
    out_of_order: int
    invalid_frames: int
    extract_errors: int
    future_frames: int
    resets: int
    reset_reasons: Mapping[str, int]
    ticks: int
    published: int
    skipped_ticks: int
    stale_ticks: int
    skip_reasons: Mapping[str, int]
    buffer_length: int
    dropped_features: int
    episode: int
    feature_rate_hz: float
    downsample_factor: int


class ForecastOutput(NamedTuple):
    """A forecaster's answer, the one type a :class:`Forecaster` returns.

    ``observed_probs (C, N_O)`` and ``future_probs (C, H)``: the frame probabilities the stream segments
    (for K > 1 the per-frame consensus of the samples, :func:`actfusion_model.consensus.consensus_probs`);
    ``future_samples``: ``(K, C, H)`` probabilities of the K sampled futures, ``None`` (the default) when the
    forecast is one sample (then ``future_probs`` is it).

    The model's own result, :class:`actfusion_model.forecast.Forecast`, is torch tensors with a sample axis and
    the encoder's logits; this is what the stream reads of it (numpy, one consensus). What a tick publishes is
    a :class:`ForecastResult`.
    """

    observed_probs: np.ndarray
    future_probs: np.ndarray
    future_samples: np.ndarray | None = None


@runtime_checkable
class Forecaster(Protocol):
    """The model behind the stream (an adapter around ActFusion; tests use fakes).

    ``__call__(observed (D, N_O) float32, horizon)`` returns a :class:`ForecastOutput`: frame-wise class
    probabilities for the observed frames and the ``horizon`` future frames, ``observed_probs (C, N_O)`` and
    ``future_probs (C, H)``, and the K sampled futures ``future_samples (K, C, H)`` (``None`` for one sample).

    The stream calls it and reads ``num_classes``; the builder (:mod:`actfusion_ros.builder`) and replay
    read ``class_names`` (the model's names, ``num_classes`` of them), ``input_dim`` (the feature size it
    expects; ``None``: any) and ``pipeline`` (the feature pipeline it was trained on, checked against the
    deployment's; ``None``: not recorded).
    """

    num_classes: int
    class_names: Sequence[str]
    input_dim: int | None
    pipeline: FeaturePipeline | None

    def __call__(self, observed: np.ndarray, horizon: int) -> ForecastOutput: ...


class EncodedFrame:
    """A frame known by its shape before it is decoded: ``shape`` ``(H, W, 3)`` and ``decode()`` -> the
    ``(H, W, 3) uint8`` RGB array (:class:`actfusion_ros.frames.EncodedImage` is one)."""

    __slots__ = ("shape", "decode")

    def __init__(self, shape: Sequence[int], decode: Callable[[], np.ndarray]) -> None:
        self.shape = tuple(shape)
        self.decode = decode


def timed_segments(probs: np.ndarray, starts_ns: np.ndarray, period_ns: int,
                   class_names: Sequence[str], agreement: np.ndarray | None = None) -> tuple[TimedSegment, ...]:
    """Cut frame probabilities ``(C, T)`` into :class:`TimedSegment` s.

    Frame ``t`` covers ``[starts_ns[t], starts_ns[t+1])``, the last one ``[starts_ns[-1],
    starts_ns[-1] + period_ns)``: a segment of frames ``[i, j)`` spans ``[starts_ns[i], starts_ns[j])``
    and ends exactly where the next begins, however irregular the stamps. Labels are the argmax
    (ties: lowest id); ``confidence`` is the mean max-probability over the segment's frames, or, given
    ``agreement`` ``(C, T)`` (the fraction of K sampled futures voting each class per frame,
    :func:`actfusion_model.consensus.frame_marginals`), the mean agreement with the segment's label: the
    fraction of samples that agree.
    """
    n = probs.shape[1]
    if n == 0:
        return ()
    labels = probs.argmax(axis=0)
    if agreement is not None:
        if np.shape(agreement) != probs.shape:
            raise ValueError(f"agreement {np.shape(agreement)} must have the shape of probs {probs.shape}")
        top = np.asarray(agreement, dtype=np.float64)[labels, np.arange(n)]
    else:
        top = probs.max(axis=0)
    out = []
    for seg in segments_from_labels(labels):
        end_ns = int(starts_ns[seg.end]) if seg.end < n else int(starts_ns[n - 1]) + int(period_ns)
        out.append(TimedSegment(label=class_names[seg.label], class_id=int(seg.label),
                                start_ns=int(starts_ns[seg.start]), end_ns=end_ns,
                                confidence=float(np.mean(top[seg.start:seg.end], dtype=np.float64))))
    return tuple(out)


#: The stream's settings by name: the node's stream parameters are exactly these fields.
STREAM_KEYS: tuple[str, ...] = tuple(f.name for f in fields(StreamConfig))
