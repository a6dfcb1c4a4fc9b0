"""The ROS-free streaming core: frames in, timed segmentation + anticipation out.

Pipeline (one :class:`StreamingAnticipator`)::

    push_frame(stamp_ns, rgb)  -> FeatureRateSampler (by stamp)   -> new frames: extractor context
                               -> CausalFeatureStream(extractor)  -> sampled frames: feature
                               -> FeatureBuffer (bounded)
    tick(now_ns)               -> snapshot under the lock -> forecaster OUTSIDE the lock -> ForecastResult

Time is integer nanoseconds everywhere (message stamps); nothing here reads the wall clock except
``perf_clock`` for measuring inference time.

Conventions
-----------
* **Feature rate.** Features come at ``feature_rate_hz`` (period ``P = round(1e9 / rate)`` ns) and
  are computed only at the frames the sampler takes. The extractor's *context* is made of camera
  frames: every frame the sampler accepts as new (taken or not due; not duplicates or out-of-order
  frames) enters the extractor's ring (in its preprocessed form), so a 16-frame I3D clip spans the
  last 16 camera frames (0.53 s at 30 fps), and a ``context_frames=2`` extractor compares a frame
  with the previous *camera* frame. Offline feature files use the same rule
  (``FeatureExtractor.extract_at(frames, sample_frame_indices(stamps, rate))`` or
  ``actfusion_ros.tools.extract.extract_sampled``) and match the live features.
* **Segment times.** Consecutive segments share their boundary exactly: a segment ends where the
  next one begins. Observed feature ``i`` (stamp ``s_i``) covers ``[s_i, s_{i+1})``, the last one
  ``[s_last, s_last + P)``; so an observed segment of features ``[i, j)`` spans ``[s_i, s_j)``
  (``[s_i, s_last + P)`` for the last one), whatever the jitter of the stamps or the features lost
  in between. Future frame ``k`` (0-based) covers ``[s_last + (k+1) P, s_last + (k+2) P)``, so the
  first future segment starts where the last observed one ends. ``confidence`` = mean over the
  segment's frames of the max class probability; for the future of K > 1 samples, the fraction of the
  samples that agree with the segment's label (mean over its frames). Segments are cut by
  :func:`actfusion_model.labels.segments_from_labels` on the argmax labels.
* **K samples.** A forecaster that samples K futures returns them with its (consensus) probabilities
  (:class:`~actfusion_ros.stream_types.ForecastOutput`); the result keeps them (``future_samples``) and
  states the next action after ``current`` over them (``next_actions``:
  :func:`actfusion_model.consensus.next_action_distribution`, future frame ``f`` at camera time
  ``s_last + (f+1) P``). A one-sample forecast is the sample: its next action has probability 1.
* **Horizon.** ``anticipation_horizon(N_O, ratio=ratio, max_horizon=round(max_horizon_s / P))``,
  always at the current (effective) feature period.
* **Start-up.** With no features a tick returns ``None`` (reason ``'no_data'``). While fewer than
  ``min_observed_frames`` features are buffered, a tick returns a result with ``partial=True`` when
  ``publish_partial`` is set, else ``None`` (reason ``'warming_up'``).
* **Staleness.** If the newest frame stamp seen is more than ``stale_after_s`` older than the tick's
  ``now_ns``, the tick returns ``None`` (reason ``'stale'``).
* **Frames from the future.** :meth:`StreamingAnticipator.admit` (or ``push_frame(..., now_ns=)``)
  rejects a frame stamped more than ``max_future_s`` after the clock time ``now_ns`` of its arrival
  (counted in ``future_frames``; the sampler never sees it); smaller skews are tolerated. Ticks do
  not judge this (a tick's ``now_ns`` before the newest feature is not stale): frames are checked
  once, when they arrive.
* **Counters.** ``frames_received == frames_accepted + frames_not_due + duplicates + out_of_order +
  invalid_frames + extract_errors + future_frames`` and ``ticks == published + skipped_ticks``
  (``skipped_ticks`` = sum of ``skip_reasons``; a tick that raises is counted under
  ``'forecast_error'``); ``published`` counts the results actually returned.
* **Episodes.** A stamp gap larger than ``episode_gap_s``, a backwards jump larger than
  ``backward_jump_s``, a frame-size change or :meth:`StreamingAnticipator.reset` clears the buffer
  and the extractor context; the frame that triggered it (if any) is the first of the new episode.
  A frame-size change is detected on any incoming frame (not only sampled ones); that frame is
  then taken, whatever its stamp.
* **Window policy.** The buffer holds ``ceil(max_window_s * rate)`` features. ``'drop_oldest'``
  overwrites the oldest. ``'downsample'``: when the buffer fills, every second feature is dropped
  (counting back from the newest, which is kept) and the feature rate is halved, so the buffer stays
  uniformly spaced and covers twice the time; this repeats up to ``max_downsample_factor``, after which
  the oldest is dropped. Each feature keeps its own stamp, so all times stay exact; the model then sees
  a coarser rate than it was trained on (the price of the longer window). The extractor context
  (camera frames) does not depend on the rate. A reset restores the configured rate.

Thread safety
-------------
``push_frame`` may be called from one thread (camera callback) while ``tick`` runs in another (timer).
Three locks, always taken in the order push -> state or tick -> state:

* ``push`` lock serialises ``push_frame``/``reset`` (the extractor context is stateful). The extractor
  runs under it, in the pushing thread: its cheap per-frame preprocessing for every new camera frame,
  the feature computation (a CNN forward pass for I3D/ResNet) for sampled frames only. The node calls
  ``push_frame`` from a worker thread, never from the image callback.
* ``state`` lock guards the sampler, the buffer and the counters; it is held only for short updates
  and for the snapshot copy.
* ``tick`` lock serialises ticks, so the forecaster is never called concurrently. The forecaster runs
  outside the ``state`` lock: pushes never wait for inference. If the episode was reset while the
  forecaster ran, the result is discarded (reason ``'reset_during_inference'``).
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Sequence

import numpy as np

from actfusion_model.consensus import frame_marginals, next_action_distribution
from actfusion_model.features.base import FeatureExtractor, FrameError, check_frame
from actfusion_model.horizon import anticipation_horizon
from actfusion_ros.buffer import FeatureBuffer
from actfusion_ros.next_actions import TimedAlternative, timed_alternatives
from actfusion_ros.sampling import FeatureSampling
from actfusion_ros.stream_types import (
    EncodedFrame,
    Forecaster,
    ForecastError,
    ForecastOutput,
    ForecastResult,
    StreamConfig,
    StreamStats,
    timed_segments,
)
from actfusion_ros.time_ns import NS_PER_S, as_stamp_ns, seconds_to_ns

__all__ = ["StreamingAnticipator"]


def _decoded(image: Any) -> np.ndarray:
    """``image.decode()``, checked to be a frame of the shape it was announced with."""
    frame = check_frame(image.decode())
    if tuple(frame.shape) != tuple(image.shape):
        raise FrameError(f"decoded frame has shape {frame.shape}, its header said {tuple(image.shape)}")
    return frame


@dataclass
class _Counters:
    frames_accepted: int = 0
    invalid_frames: int = 0
    extract_errors: int = 0
    future_frames: int = 0
    ticks: int = 0
    published: int = 0
    skip_reasons: Counter = field(default_factory=Counter)
    reset_reasons: Counter = field(default_factory=Counter)


class StreamingAnticipator:
    """Frames with stamps in, :class:`ForecastResult` out (see the module docstring).

    ``class_names`` must have ``forecaster.num_classes`` entries. ``perf_clock`` (seconds, monotonic)
    only measures inference time.
    """

    def __init__(self, config: StreamConfig, extractor: FeatureExtractor, forecaster: Forecaster,
                 class_names: Sequence[str], *,
                 perf_clock: Callable[[], float] = time.perf_counter) -> None:
        if not isinstance(config, StreamConfig):
            raise TypeError(f"config must be a StreamConfig, got {type(config).__name__}")
        names = tuple(str(n) for n in class_names)
        if len(names) != int(forecaster.num_classes):
            raise ValueError(f"class_names has {len(names)} entries but forecaster.num_classes is "
                             f"{forecaster.num_classes}")
        self.config = config
        self.extractor = extractor
        self.forecaster = forecaster
        self.class_names = names
        self._perf_clock = perf_clock
        self._sampling = FeatureSampling(extractor, config.period_ns,
                                         episode_gap_ns=seconds_to_ns(config.episode_gap_s),
                                         backward_jump_ns=seconds_to_ns(config.backward_jump_s))
        self._sampler = self._sampling.sampler
        self._buffer = FeatureBuffer(config.window_capacity, int(extractor.dim))
        self._stale_ns = seconds_to_ns(config.stale_after_s)
        self._max_future_ns = seconds_to_ns(config.max_future_s)
        self._factor = 1
        self._episode = 0
        self._counters = _Counters()
        self._push_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self.last_skip_reason: str | None = None

    # ------------------------------------------------------------------ state
    @property
    def episode(self) -> int:
        """Episode counter, incremented by every reset."""
        return self._episode

    @property
    def feature_period_ns(self) -> int:
        """Current (effective) feature period, ``config.period_ns * downsample factor``."""
        return self._sampler.period_ns

    @property
    def stats(self) -> StreamStats:
        with self._state_lock:
            c, s = self._counters, self._sampler.counts
            return StreamStats(
                frames_received=s.received + c.invalid_frames + c.future_frames,
                frames_accepted=c.frames_accepted,
                frames_not_due=s.not_due,
                duplicates=s.duplicates,
                out_of_order=s.out_of_order,
                invalid_frames=c.invalid_frames,
                extract_errors=c.extract_errors,
                future_frames=c.future_frames,
                resets=sum(c.reset_reasons.values()),
                reset_reasons=MappingProxyType(dict(c.reset_reasons)),
                ticks=c.ticks,
                published=c.published,
                skipped_ticks=sum(c.skip_reasons.values()),
                stale_ticks=c.skip_reasons["stale"],
                skip_reasons=MappingProxyType(dict(c.skip_reasons)),
                buffer_length=len(self._buffer),
                dropped_features=self._buffer.dropped,
                episode=self._episode,
                feature_rate_hz=NS_PER_S / self._sampler.period_ns,
                downsample_factor=self._factor,
            )

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the buffered ``(features (D, N) float32, stamps (N,) int64)``."""
        with self._state_lock:
            return self._buffer.snapshot()

    def reset(self, reason: str = "manual") -> None:
        """Start a new episode: clear the buffer, the extractor context and the sampler."""
        with self._push_lock, self._state_lock:
            self._sampling.reset()
            self._new_episode_locked(reason)

    def _new_episode_locked(self, reason: str) -> None:
        # caller holds both the push and the state lock; the sampling engine already cleared the context
        self._buffer.clear()
        self._factor = 1
        self._sampler.set_period(self.config.period_ns)
        self._episode += 1
        self._counters.reset_reasons[reason] += 1

    # ------------------------------------------------------------------ input
    def admit(self, stamp_ns: int, now_ns: int) -> bool:
        """Whether a frame stamped ``stamp_ns`` that arrived at clock time ``now_ns`` may be pushed.

        False (counted in ``future_frames`` and ``frames_received``) when it is stamped more than
        ``max_future_s`` after ``now_ns``; do not push it then. ``now_ns == 0`` (a ROS clock that has
        not started, e.g. sim time before the first /clock) admits everything. Cheap: call it before
        decoding the image.
        """
        stamp = as_stamp_ns(stamp_ns)
        now = as_stamp_ns(now_ns, "now_ns")
        if now == 0 or stamp - now <= self._max_future_ns:
            return True
        with self._state_lock:
            self._counters.future_frames += 1
        return False

    def push_frame(self, stamp_ns: int, rgb: np.ndarray, *, now_ns: int | None = None) -> bool:
        """Offer one ``(H, W, 3) uint8`` RGB frame stamped ``stamp_ns``; True when it became a feature.

        ``now_ns``: the clock time when the frame arrived (the ticks' clock), checked by :meth:`admit`
        (a frame too far ahead returns False, the sampler state untouched); ``None``: no check.

        Raises ``TypeError`` for a non-integer stamp, ``FrameError`` for a malformed image (counted in
        ``invalid_frames``; the sampler state is untouched) and re-raises extractor errors (counted in
        ``extract_errors``; that feature is missing, leaving a one-period hole). Not-due frames only
        go into the extractor context; an error while preprocessing one is re-raised (it stays
        counted as not due).
        """
        stamp = as_stamp_ns(stamp_ns)
        with self._push_lock:
            try:
                check_frame(rgb)
            except ValueError:
                with self._state_lock:
                    self._counters.invalid_frames += 1
                raise
            if now_ns is not None and not self.admit(stamp, now_ns):
                return False
            return self._offer(stamp, EncodedFrame(rgb.shape, lambda: rgb))

    def push_encoded(self, stamp_ns: int, image: EncodedFrame, *, now_ns: int | None = None) -> bool:
        """Like :meth:`push_frame` for a frame not decoded yet: the sampler decides from ``stamp_ns`` and
        ``image.shape``, and ``image.decode()`` runs only for the frames it uses (taken frames, and
        not-due frames when the extractor keeps a context). A decoding error is re-raised: counted in
        ``extract_errors`` for a taken frame (a one-period hole), as not due otherwise."""
        stamp = as_stamp_ns(stamp_ns)
        with self._push_lock:
            if now_ns is not None and not self.admit(stamp, now_ns):
                return False
            return self._offer(stamp, image)

    def _offer(self, stamp: int, image: EncodedFrame) -> bool:
        # caller holds the push lock
        with self._state_lock:
            # a new image size, a gap or a backward jump: new episode, this frame starts its grid
            decision = self._sampling.decide(stamp, image.shape)
            if decision.reset_reason is not None:
                self._new_episode_locked(decision.reset_reason)
        if not self._sampling.needs_pixels(decision):
            return False
        if decision.kind == "not_due":
            # a new camera frame between two feature times: context only (cheap preprocessing)
            self._sampling.observe(_decoded(image))
            return False
        try:
            feature = self._sampling.feature(_decoded(image))
        except Exception:
            with self._state_lock:
                self._counters.extract_errors += 1
            raise
        with self._state_lock:
            self._buffer.append(stamp, feature)
            self._counters.frames_accepted += 1
            if (self.config.window_policy == "downsample" and self._buffer.full
                    and self._factor < self.config.max_downsample_factor):
                self._buffer.decimate()
                self._factor *= 2
                self._sampler.set_period(self.config.period_ns * self._factor)
        return True

    # ------------------------------------------------------------------ output
    def _skip_locked(self, reason: str) -> None:
        self._counters.skip_reasons[reason] += 1
        self.last_skip_reason = reason

    def tick(self, now_ns: int) -> ForecastResult | None:
        """Run the forecaster on the buffered features; ``None`` (see ``last_skip_reason``) if nothing.

        ``now_ns`` is the clock time of the tick on the frames' clock (ROS time), used for staleness
        and latency only; the result is stamped with the last feature's camera stamp.
        """
        now = as_stamp_ns(now_ns, "now_ns")
        cfg = self.config
        with self._tick_lock:
            with self._state_lock:
                self._counters.ticks += 1
                n = len(self._buffer)
                if n == 0:
                    self._skip_locked("no_data")
                    return None
                latest = self._sampler.latest_stamp_ns
                if latest is not None and now - latest > self._stale_ns:
                    self._skip_locked("stale")
                    return None
                partial = n < cfg.min_observed_frames
                if partial and not cfg.publish_partial:
                    self._skip_locked("warming_up")
                    return None
                features, stamps = self._buffer.snapshot()
                period = self._sampler.period_ns
                episode = self._episode
            try:  # every tick that got this far ends counted: published, or skipped with a reason
                result = self._forecast(features, stamps, period, episode, n, partial, now)
            except Exception:
                with self._state_lock:
                    self._skip_locked("forecast_error")
                raise
            with self._state_lock:
                if episode != self._episode:
                    self._skip_locked("reset_during_inference")
                    return None
                self._counters.published += 1
                self.last_skip_reason = None
            return result

    def _forecast(self, features: np.ndarray, stamps: np.ndarray, period: int, episode: int, n: int,
                  partial: bool, now: int) -> ForecastResult:
        """Run the forecaster on a snapshot and build the complete result (no counting here)."""
        cfg = self.config
        horizon = anticipation_horizon(n, ratio=cfg.ratio, max_horizon=cfg.max_horizon_frames(period))
        t0 = self._perf_clock()
        obs_probs, fut_probs, samples = self._checked_forecast(features, horizon)
        inference_s = float(self._perf_clock() - t0)
        last = int(stamps[-1])
        observed = timed_segments(obs_probs, stamps, period, self.class_names)
        future_starts = last + period * np.arange(1, horizon + 1, dtype=np.int64)
        agreement = None if samples is None else frame_marginals(samples, fut_probs.shape[0])
        future = timed_segments(fut_probs, future_starts, period, self.class_names, agreement)
        current = observed[-1]
        return ForecastResult(
            stamp_ns=last, episode=episode, current=current, observed=observed, future=future,
            num_observed=n, horizon=horizon, partial=partial, feature_period_ns=period,
            observed_stamps_ns=stamps, observed_probs=obs_probs, future_probs=fut_probs,
            inference_s=inference_s, latency_s=(now - last) / NS_PER_S + inference_s,
            future_samples=samples, num_samples=1 if samples is None else int(samples.shape[0]),
            next_actions=self._next_actions(fut_probs if samples is None else samples, current.class_id,
                                            last + period, period))

    def _next_actions(self, samples: np.ndarray, current: int, future_start_ns: int,
                      period_ns: int) -> tuple[TimedAlternative, ...]:
        """The next action after ``current`` over ``samples`` ((K, C, H), or one sample (C, H)) in camera time."""
        futures = samples[None] if samples.ndim == 2 else samples
        labels = futures.argmax(axis=1)  # (K, H): each sample's labels (the votes the distribution counts)
        dist = next_action_distribution(labels, current, len(self.class_names))
        return timed_alternatives(dist, self.class_names, future_start_ns, period_ns)

    def _checked_forecast(self, features: np.ndarray,
                          horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The forecaster's :class:`ForecastOutput` as ``(observed (C, N), future (C, H), samples (K, C, H) or
        None)`` float32 arrays, checked."""
        c, n = len(self.class_names), features.shape[1]
        out = self.forecaster(features, horizon)
        if not isinstance(out, ForecastOutput):
            raise ForecastError(f"forecaster returned a {type(out).__name__}, expected a ForecastOutput "
                                "(observed_probs, future_probs, future_samples)")
        obs = np.asarray(out.observed_probs, dtype=np.float32)
        fut = np.asarray(out.future_probs, dtype=np.float32)
        if obs.shape != (c, n) or fut.shape != (c, horizon):
            raise ForecastError(f"forecaster returned shapes {obs.shape} and {fut.shape}, expected "
                                f"({c}, {n}) and ({c}, {horizon})")
        if not (np.isfinite(obs).all() and np.isfinite(fut).all()):
            raise ForecastError("forecaster returned non-finite probabilities")
        samples = None if out.future_samples is None else np.asarray(out.future_samples, dtype=np.float32)
        if samples is not None:
            if samples.ndim != 3 or samples.shape[0] < 1 or samples.shape[1:] != (c, horizon):
                raise ForecastError(f"forecaster returned future samples of shape {samples.shape}, expected "
                                    f"(K, {c}, {horizon}) with K >= 1")
            if not np.isfinite(samples).all():
                raise ForecastError("forecaster returned non-finite sample probabilities")
        return obs, fut, samples
