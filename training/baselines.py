"""Label-only forecasters: what the model has to beat ("repeat the last action", a segment grammar).

Every forecaster answers one question through :class:`LabelForecaster`: given the labels observed so far
(one class id per frame, frame 0 first) and a horizon of ``horizon`` frames, which label will each future
frame have? They are fitted on label sequences only (``groundTruth/`` of the training split, or any list
of label files), so they work for every MS-TCN dataset and for the user's own recordings.

* :class:`RepeatLast`: the last observed label over the whole horizon ("nothing changes").
* :class:`GrammarForecaster`: a Markov chain of order ``k`` (1 or 2 in the reports) over consecutive
  *segment* labels (maximal runs, :func:`actfusion_model.labels.segments_from_labels`) with a start and an end state,
  plus per-class segment durations. Forecast: the current (last observed) segment of class ``c`` with
  elapsed part ``e`` runs on for its mean residual duration ``E[D - e | D > e]``, estimated from the
  training segments of class ``c`` longer than ``e``. Then come the most likely successors, greedily: the
  next label is the argmax of ``P(next | last k segment labels)`` (ties: the lowest class id; the end state
  loses ties), never the label of the segment it follows; each runs for its class's mean duration. The
  forecast stops at the end state (the last predicted segment then fills the rest of the horizon: the
  video ends in it) or at the horizon.

  Back-off: a context of ``k`` labels never seen in training falls back to its last ``k - 1`` labels, down
  to the unigram distribution of all segment labels and the end state. Fallbacks for durations: when no
  training segment of class ``c`` is longer than ``e``, the current segment has outlived all of them and
  is predicted to end now (residual 0, the limit of ``E[D - e | D > e]`` as ``e`` reaches the longest
  duration); a class without training segments takes the statistics of all classes pooled. A successor
  lasts at least one frame.

The two horizon protocols of :func:`actfusion_training.inference.lta_layout` use the durations differently:

* **GT length** (``gt``, ``video_length=N`` given): durations are fractions of the video length. A
  training segment of ``d`` frames in a video of ``n`` frames counts ``d / n``; the elapsed part is
  ``e = run / N`` and every predicted duration is multiplied back by ``N``. This is the literature's
  protocol: the horizon (``N - observed``) is itself a known fraction of ``N``.
* **r*N^O** (``rn``, ``video_length=None``): ``N`` is unknown (deployable, streaming), so durations are
  in frames, at the frame rate of the fitted label sequences; ``e`` is the current run in frames.

Next-action distributions (``next_action_distribution``, scored by :mod:`actfusion_training.prob_metrics` against the
model's K-sample distribution of :mod:`actfusion_model.consensus`): repeat-last is certain that nothing changes; the
grammar states its chain's successor probabilities, weighted by the empirical probability that the current
segment ends within the horizon (see :meth:`GrammarForecaster.next_action_distribution`).

Predicted durations are continuous: a segment spans ``[b_i, b_{i+1})`` on the future time axis from 0 and
frame ``t`` takes the label of the segment whose span contains ``t``.

:func:`baseline_lta_labels` places a forecaster in the offline LTA layout exactly where the model's
forecast goes (observed part = the ground truth, forecast at the model's sampled rate from the sampled
observed labels, upsampled to raw frames like the model's); :func:`score_baselines` scores forecasters with
the same :func:`actfusion_training.scoring.moc_tables` as the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from actfusion_model.consensus import NO_CHANGE
from actfusion_model.labels import Segment, segments_from_labels
from actfusion_training.inference import PROTOCOLS, lta_layout, lta_raw_labels

#: Pseudo-labels of the grammar: before the first segment and after the last one (never class ids).
START = -10
END = -11


@runtime_checkable
class LabelForecaster(Protocol):
    """Anything that forecasts future frame labels from observed frame labels (not the model's
    :class:`actfusion_ros.stream_types.Forecaster`, which forecasts from features)."""

    name: str

    def forecast(self, observed_labels: np.ndarray, horizon: int, *,
                 video_length: int | None = None) -> np.ndarray:
        """``horizon`` int64 labels following ``observed_labels`` (frames of the same rate).

        ``video_length`` is the whole video's length in those frames when it is known (GT-length
        protocol), ``None`` when it is not (r*N^O protocol, streaming).
        """
        ...


def _check_inputs(observed_labels: np.ndarray, horizon: int) -> np.ndarray:
    obs = np.asarray(observed_labels)
    if obs.ndim != 1 or obs.size == 0:
        raise ValueError(f"observed_labels must be a non-empty 1-D label array, got shape {obs.shape}")
    if not np.issubdtype(obs.dtype, np.integer):
        raise ValueError(f"observed_labels must hold integer class ids, got dtype {obs.dtype}")
    if int(horizon) < 0:
        raise ValueError(f"horizon must be >= 0, got {horizon}")
    return obs.astype(np.int64, copy=False)


def _observed_segments(observed_labels: np.ndarray, horizon: int,
                       video_length: int | None) -> tuple[list[Segment], bool, float]:
    """``(segments of the observed labels, relative protocol?, frames per unit)`` (checked inputs)."""
    obs = _check_inputs(observed_labels, horizon)
    relative = video_length is not None
    if relative and int(video_length) < obs.size:
        raise ValueError(f"video_length {video_length} is shorter than the {obs.size} observed frames")
    return segments_from_labels(obs), relative, float(video_length) if relative else 1.0


@dataclass(frozen=True)
class RepeatLast:
    """"Nothing changes": the last observed label over the whole horizon."""

    name: str = "repeat_last_observed"

    def forecast(self, observed_labels: np.ndarray, horizon: int, *,
                 video_length: int | None = None) -> np.ndarray:
        obs = _check_inputs(observed_labels, horizon)
        return np.full(int(horizon), obs[-1], dtype=np.int64)

    def next_action_distribution(self, observed_labels: np.ndarray, horizon: int, *,
                                 video_length: int | None = None) -> dict[int, float]:
        """Certain that nothing changes: ``{NO_CHANGE: 1.0}``."""
        _check_inputs(observed_labels, horizon)
        return {NO_CHANGE: 1.0}


@dataclass(frozen=True)
class ClassDurations:
    """Sorted training segment durations of one class: in frames and as fractions of their video."""

    frames: np.ndarray
    relative: np.ndarray

    @classmethod
    def of(cls, frames: Iterable[float], relative: Iterable[float]) -> "ClassDurations":
        return cls(np.sort(np.asarray(list(frames), dtype=np.float64)),
                   np.sort(np.asarray(list(relative), dtype=np.float64)))

    def values(self, relative: bool) -> np.ndarray:
        return self.relative if relative else self.frames

    def mean(self, relative: bool) -> float:
        """Mean duration (frames, or fraction of the video)."""
        return float(self.values(relative).mean())

    def mean_residual(self, elapsed: float, relative: bool) -> float:
        """``E[D - e | D > e]`` over these durations; 0 when none is longer than ``e``."""
        d = self.values(relative)
        longer = d[d > elapsed]
        return float((longer - elapsed).mean()) if longer.size else 0.0


@dataclass(frozen=True)
class GrammarForecaster:
    """Segment-grammar forecaster (see the module docstring); build it with :meth:`fit`.

    ``transitions[context][next]`` counts, over the training sequences ``[START, l_1, ..., l_m, END]``,
    how often ``next`` followed ``context`` (a tuple of the 1..``order`` preceding tokens); ``unigram``
    counts every token after START.
    """

    order: int
    transitions: Mapping[tuple[int, ...], Mapping[int, int]]
    unigram: Mapping[int, int]
    durations: Mapping[int, ClassDurations]
    pooled: ClassDurations
    name: str = ""
    videos: int = 0

    @classmethod
    def fit(cls, label_seqs: Iterable[Sequence[int] | np.ndarray], order: int = 1,
            name: str | None = None) -> "GrammarForecaster":
        """Count segment transitions and durations over frame-label sequences (one per video)."""
        if int(order) < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        order = int(order)
        transitions: dict[tuple[int, ...], dict[int, int]] = {}
        unigram: dict[int, int] = {}
        frames: dict[int, list[float]] = {}
        relative: dict[int, list[float]] = {}
        videos = 0
        for seq in label_seqs:
            arr = np.asarray(seq).reshape(-1)
            if arr.size == 0:
                continue
            if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0:
                raise ValueError("label sequences must hold non-negative integer class ids")
            videos += 1
            segments = segments_from_labels(arr)
            for s in segments:
                frames.setdefault(s.label, []).append(float(s.length))
                relative.setdefault(s.label, []).append(s.length / arr.size)
            tokens = [START] + [s.label for s in segments] + [END]
            for i in range(1, len(tokens)):
                unigram[tokens[i]] = unigram.get(tokens[i], 0) + 1
                for k in range(1, order + 1):
                    if i - k < 0:
                        break
                    row = transitions.setdefault(tuple(tokens[i - k:i]), {})
                    row[tokens[i]] = row.get(tokens[i], 0) + 1
        if not videos:
            raise ValueError("no label sequences to fit the grammar on")
        durations = {c: ClassDurations.of(frames[c], relative[c]) for c in frames}
        pooled = ClassDurations.of([d for c in frames for d in frames[c]],
                                   [d for c in relative for d in relative[c]])
        return cls(order, transitions, unigram, durations, pooled, name or f"grammar_order{order}", videos)

    # ------------------------------------------------------------------------------------------ grammar

    def transition_probabilities(self, history: Sequence[int]) -> dict[int, float]:
        """``P(next | history)`` from the longest seen suffix of at most ``order`` tokens (else unigram)."""
        for k in range(min(self.order, len(history)), 0, -1):
            row = self.transitions.get(tuple(history[-k:]))
            if row:
                return _normalise(row)
        return _normalise(self.unigram)

    def successor(self, history: Sequence[int]) -> int:
        """Most likely next token after ``history`` that is not its last label (may be :data:`END`)."""
        for k in range(min(self.order, len(history)), -1, -1):
            row = self.transitions.get(tuple(history[-k:])) if k else self.unigram
            candidates = {t: n for t, n in (row or {}).items() if t != history[-1]}
            if candidates:
                return min(candidates, key=lambda t: (-candidates[t], t == END, t))
        return END

    # ------------------------------------------------------------------------------------------ durations

    def class_durations(self, label: int) -> ClassDurations:
        return self.durations.get(int(label), self.pooled)

    def mean_duration(self, label: int, *, relative: bool) -> float:
        """Mean training duration of ``label`` (fraction of the video when ``relative``, else frames)."""
        return self.class_durations(label).mean(relative)

    def mean_residual(self, label: int, elapsed: float, *, relative: bool) -> float:
        """``E[D - elapsed | D > elapsed]`` for ``label`` (0 when no training segment is that long)."""
        return self.class_durations(label).mean_residual(elapsed, relative)

    # ------------------------------------------------------------------------------------------ forecast

    def plan(self, observed_labels: np.ndarray, horizon: int, *,
             video_length: int | None = None) -> list[tuple[int, float]]:
        """The forecast as ``(label, duration in frames)`` segments from the first future frame."""
        segments, relative, unit = _observed_segments(observed_labels, horizon, video_length)
        current = segments[-1]
        history = [START] + [s.label for s in segments]
        plan = [(current.label, self.mean_residual(current.label, current.length / unit, relative=relative) * unit)]
        end = plan[0][1]
        while end < horizon:
            nxt = self.successor(history)
            if nxt == END:
                break
            length = max(1.0, self.mean_duration(nxt, relative=relative) * unit)
            plan.append((nxt, length))
            history.append(nxt)
            end += length
        return plan

    def next_action_distribution(self, observed_labels: np.ndarray, horizon: int, *,
                                 video_length: int | None = None) -> dict[int, float]:
        """``{class id or NO_CHANGE: probability}`` of the action after the current one within ``horizon``.

        The chain's probabilistic answer, comparable to the model's sampled distribution
        (:func:`actfusion_model.consensus.next_action_distribution`): the current segment (class ``c``, elapsed ``e``)
        ends within the horizon of ``H`` frames (the next action starts at a future frame ``< H``) with the
        empirical hazard ``P(D < e + H | D > e)`` of the training durations of ``c`` (1 when none is longer
        than ``e``: it ends now, as in :meth:`plan`; 0 for ``H = 0``); it is then
        followed by ``j`` with ``P(j | last k segment labels)`` (the back-off of
        :meth:`transition_probabilities`, ``c`` itself left out and the rest renormalised). The end state and
        a current segment outlasting the horizon both count as :data:`actfusion_model.consensus.NO_CHANGE`.
        Durations and ``H`` are in the units of the protocol (fractions of ``video_length`` when given).
        """
        segments, relative, unit = _observed_segments(observed_labels, horizon, video_length)
        current = segments[-1]
        durations = self.class_durations(current.label).values(relative)
        elapsed, reach = current.length / unit, (current.length + int(horizon)) / unit
        longer = durations[durations > elapsed]
        if int(horizon) == 0:
            p_change = 0.0
        else:
            p_change = float((longer < reach).mean()) if longer.size else 1.0
        row = self.transition_probabilities([START] + [s.label for s in segments])
        successors = {t: p for t, p in row.items() if t != current.label}
        total = sum(successors.values())
        out: dict[int, float] = {NO_CHANGE: 1.0 - p_change}
        for token, p in successors.items():
            key = NO_CHANGE if token == END else int(token)
            out[key] = out.get(key, 0.0) + p_change * p / total
        if not successors:
            out[NO_CHANGE] = 1.0
        return {k: p for k, p in out.items() if p > 0}

    def forecast(self, observed_labels: np.ndarray, horizon: int, *,
                 video_length: int | None = None) -> np.ndarray:
        plan = self.plan(observed_labels, horizon, video_length=video_length)
        out = np.full(int(horizon), plan[-1][0], dtype=np.int64)  # past the end state: the last segment
        t = np.arange(int(horizon), dtype=np.float64)
        start = 0.0
        for label, length in plan:
            out[(t >= start) & (t < start + length)] = label
            start += length
        return out


def _normalise(counts: Mapping[int, int]) -> dict[int, float]:
    total = float(sum(counts.values()))
    return {t: n / total for t, n in counts.items()}


def resample_labels(labels: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """Frame labels at ``from_hz`` -> at ``to_hz``: output frame ``i`` (time ``i / to_hz``) takes the label of
    the last input frame at or before that time."""
    if not (from_hz > 0 and to_hz > 0):
        raise ValueError(f"label rates must be > 0 Hz, got {from_hz} and {to_hz}")
    labels = np.asarray(labels).reshape(-1)
    step = from_hz / to_hz
    count = int(np.ceil(labels.size / step - 1e-9))
    return labels[np.minimum(np.floor(np.arange(count) * step + 1e-9).astype(np.int64), labels.size - 1)]


# ---------------------------------------------------------------------------------------------- offline LTA


def fit_baselines(train_labels: Iterable[np.ndarray], sample_rate: int,
                  orders: Sequence[int] = (1, 2)) -> list[LabelForecaster]:
    """Repeat-last and one grammar per order, fitted on raw-rate training labels subsampled at offset 0."""
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    sampled = [np.asarray(x)[::sample_rate] for x in train_labels]
    return [RepeatLast(), *(GrammarForecaster.fit(sampled, order=k) for k in orders)]


def baseline_lta_labels(forecaster: LabelForecaster, gt: np.ndarray, sample_rate: int, alpha: float, protocol: str,
                        ratio: float = 4.0) -> np.ndarray:
    """Raw-rate prediction of one video (N,) laid out like :func:`actfusion_training.inference.predict_lta`'s.

    The ground truth up to the last observed raw frame; after it the forecast, made at the sampled rate
    from the labels of the sampled observed frames (offset 0: raw frames 0, sr, 2sr, ...) over the same
    ``layout.horizon`` and upsampled the same way; :data:`actfusion_training.inference.NO_PREDICTION` where the
    forecast does not reach.
    """
    gt = np.asarray(gt, dtype=np.int64)
    n = gt.size
    layout = lta_layout(n, sample_rate, alpha, protocol, ratio)
    sampled = gt[::sample_rate][:layout.observed]
    future = forecaster.forecast(sampled, layout.horizon,
                                 video_length=layout.full_len if protocol == "gt" else None)
    out = lta_raw_labels(np.concatenate([sampled, future]), sample_rate, n)
    observed = min(n, layout.observed * sample_rate)
    out[:observed] = gt[:observed]
    return out


@dataclass
class BaselineRun:
    """Scores of each forecaster (``{name: {"lta": ..., "lta_mean": ...}}``) and their raw-rate predictions."""

    metrics: dict[str, dict]
    predictions: dict[str, dict[tuple[str, float], dict[str, np.ndarray]]] = field(default_factory=dict)


def score_baselines(forecasters: Sequence[LabelForecaster], videos: Sequence[tuple[str, np.ndarray]], sample_rate: int,
                    *, protocols: Sequence[str] = PROTOCOLS, alphas: Sequence[float] = (0.2, 0.3),
                    betas: Sequence[float] = (0.1, 0.2, 0.3, 0.5), ratio: float = 4.0) -> BaselineRun:
    """MoC of every forecaster on ``(name, raw-rate ground truth)`` videos, scored like the model."""
    from actfusion_training.scoring import moc_tables

    run = BaselineRun({})
    for f in forecasters:
        preds: dict[tuple[str, float], dict[str, np.ndarray]] = {
            (p, a): {name: baseline_lta_labels(f, gt, sample_rate, a, p, ratio) for name, gt in videos}
            for p in protocols for a in alphas}
        gts = dict(videos)
        lta, lta_mean = moc_tables(lambda p, a: [(pred, gts[name]) for name, pred in preds[(p, a)].items()],
                                   protocols, alphas, betas)
        run.metrics[f.name] = {"lta": lta, "lta_mean": lta_mean}
        run.predictions[f.name] = preds
    return run


def best_per_cell(tables: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float | None]]]]
                  ) -> dict[str, dict[str, dict[str, str]]]:
    """``{protocol: {alpha: {beta: name}}}``: who has the highest MoC in each cell of ``{name: lta table}``.

    Ties go to the name listed first (so the model, listed first, wins ties); cells nobody scored are left out.
    """
    names = list(tables)
    first = tables[names[0]]
    best: dict[str, dict[str, dict[str, str]]] = {}
    for protocol, per_alpha in first.items():
        for alpha, row in per_alpha.items():
            for beta in row:
                scored = [(tables[n][protocol][alpha][beta], -i, n) for i, n in enumerate(names)
                          if tables[n][protocol][alpha][beta] is not None]
                if scored:
                    best.setdefault(protocol, {}).setdefault(alpha, {})[beta] = max(scored)[2]
    return best
