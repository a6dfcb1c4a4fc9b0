"""How long does a forecast keep the current action? Remaining-duration diagnostics of a forecaster.

At a forecast the current action (class ``c``, already ``e`` frames long) ends at some future frame ``r``
(``r = 0``: it ends at the observation cut). A forecast of ``H`` future frames predicts ``r`` as the index of
its first frame whose label differs from ``c`` (:func:`first_change`); a forecast that keeps ``c`` to its end
says "not within the horizon", which is read as ``H`` (censored). The true ``r`` is read the same way from
the ground truth of the same frames, and both are clipped at ``H``, so they compare on equal terms.

:class:`RemainingDuration` holds one forecast's figures: the consensus forecast's ``r``, the median of the K
samples' own ``r``, the grammar baseline's ``E[D - e | D > e]`` (clipped at ``H``) and the truth; plus whether
the forecast changes at the cut and whether the truth does. :func:`summarize` gives the bias (mean signed
error, frames and fraction of the truth's mean), the mean absolute error, and the same per group (e.g. by
elapsed part or by observed ratio), which is what ``benchmarks/bench_current_action_duration.py`` prints.
:func:`lookahead_outcome` says why one look-ahead frame is wrong (segmentation, too early, too late, next label).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np


def first_change(labels: np.ndarray, current: int) -> int:
    """Index of the first of ``labels`` (future frames, 1-D ints) that is not ``current``; ``len(labels)``
    when all of them are (the current action outlasts the horizon)."""
    arr = np.asarray(labels).reshape(-1)
    differs = np.flatnonzero(arr != int(current))
    return int(differs[0]) if differs.size else int(arr.size)


def elapsed_run(observed: np.ndarray) -> int:
    """Length of the last run of ``observed`` labels (1-D, at least one frame): the current action's elapsed
    part as the observer sees it."""
    arr = np.asarray(observed).reshape(-1)
    if arr.size == 0:
        raise ValueError("elapsed_run needs at least one observed label")
    differs = np.flatnonzero(arr != arr[-1])
    return int(arr.size - (differs[-1] + 1 if differs.size else 0))


def median_sample_change(sample_labels: np.ndarray, current: int) -> float:
    """Median over K sampled futures ``(K, H)`` of each sample's :func:`first_change`."""
    samples = np.asarray(sample_labels)
    if samples.ndim != 2 or samples.shape[0] < 1:
        raise ValueError(f"sample labels must be (K >= 1, H), got shape {samples.shape}")
    return float(np.median([first_change(s, current) for s in samples]))


@dataclass(frozen=True)
class RemainingDuration:
    """One forecast: remaining frames of the current action, each clipped at the horizon ``horizon``."""

    horizon: int
    elapsed: int            # frames of the current action observed so far
    alpha: float            # observed frames / whole episode (video) frames
    predicted: int          # first change of the consensus forecast
    sample_median: float    # median of the samples' first changes
    grammar: float          # the order-1 grammar's E[D - e | D > e], clipped at the horizon
    truth: int              # first change of the ground truth
    changes_at_cut: bool    # the forecast's first future frame is not the current action
    truth_changes_at_cut: bool


def remaining_duration(future_labels: np.ndarray, truth_future: np.ndarray, current: int, *, elapsed: int,
                       alpha: float, grammar_residual: float,
                       sample_labels: np.ndarray | None = None) -> RemainingDuration | None:
    """:class:`RemainingDuration` of one forecast: ``future_labels`` (H,) the consensus forecast,
    ``truth_future`` (H,) the true labels of the same frames, negative where unknown (past the end of the
    recording), ``sample_labels`` (K, H) the K sampled futures (default: the consensus as one sample),
    ``grammar_residual`` the baseline's residual in frames.

    Only the frames up to the first unknown truth count (the horizon is cut there, as the scores skip
    unknown frames); ``None`` when the first future frame is already unknown."""
    future = np.asarray(future_labels).reshape(-1)
    truth = np.asarray(truth_future).reshape(-1)
    if future.size == 0 or future.size != truth.size:
        raise ValueError(f"forecast and truth must cover the same H >= 1 frames, got {future.size} and {truth.size}")
    samples = future[None, :] if sample_labels is None else np.asarray(sample_labels)
    unknown = np.flatnonzero(truth < 0)
    h = int(unknown[0]) if unknown.size else int(future.size)
    if h == 0:
        return None
    future, truth, samples = future[:h], truth[:h], samples[:, :h]
    predicted = first_change(future, current)
    true_r = first_change(truth, current)
    return RemainingDuration(h, int(elapsed), float(alpha), predicted,
                             min(float(h), median_sample_change(samples, current)),
                             min(float(h), float(grammar_residual)), true_r, predicted == 0, true_r == 0)


def _stats(rows: Sequence[RemainingDuration]) -> dict[str, float]:
    truth = np.array([r.truth for r in rows], dtype=np.float64)
    out: dict[str, float] = {"n": float(len(rows)), "truth_mean": float(truth.mean())}
    for key in ("predicted", "sample_median", "grammar"):
        err = np.array([getattr(r, key) for r in rows], dtype=np.float64) - truth
        out[f"{key}_bias"] = float(err.mean())
        out[f"{key}_mae"] = float(np.abs(err).mean())
    out["predicted_changes_at_cut"] = float(np.mean([r.changes_at_cut for r in rows]))
    out["truth_changes_at_cut"] = float(np.mean([r.truth_changes_at_cut for r in rows]))
    return out


def summarize(rows: Sequence[RemainingDuration],
              groups: Mapping[str, Callable[[RemainingDuration], str]] | None = None) -> dict[str, object]:
    """``{"all": stats, <group name>: {<group value>: stats}}``; stats: ``n``, ``truth_mean``, for the
    consensus (``predicted``), the samples' median and the grammar their ``*_bias`` (mean of estimate - truth,
    frames; negative = ends too early) and ``*_mae``, and the fractions of forecasts and of truths that change
    at the cut. ``groups`` maps a name to a function giving each row's group value."""
    if not rows:
        raise ValueError("no forecasts to summarize")
    out: dict[str, object] = {"all": _stats(rows)}
    for name, key in (groups or {}).items():
        buckets: dict[str, list[RemainingDuration]] = {}
        for r in rows:
            buckets.setdefault(key(r), []).append(r)
        out[name] = {k: _stats(v) for k, v in sorted(buckets.items())}
    return out


LOOKAHEAD_OUTCOMES = ("right", "current action wrong (segmentation)", "changes too early", "changes too late",
                      "wrong next action")


def lookahead_outcome(current_pred: int, current_true: int, predicted: int, truth: int) -> str:
    """Why a look-ahead frame is right or wrong (one of :data:`LOOKAHEAD_OUTCOMES`): the current action's
    label, then whether the forecast has already left it when the truth has not (early) or the reverse (late),
    else the label of the next action."""
    if predicted == truth:
        return LOOKAHEAD_OUTCOMES[0]
    if current_pred != current_true:
        return LOOKAHEAD_OUTCOMES[1]
    if truth == current_true:
        return LOOKAHEAD_OUTCOMES[2]
    if predicted == current_true:
        return LOOKAHEAD_OUTCOMES[3]
    return LOOKAHEAD_OUTCOMES[4]


def bin_label(value: float, edges: Sequence[float]) -> str:
    """``"[lo, hi)"`` of the bin of ``edges`` (ascending) holding ``value``; ``"< e0"`` / ``">= eN"`` outside."""
    if value < edges[0]:
        return f"< {edges[0]:g}"
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo <= value < hi:
            return f"[{lo:g}, {hi:g})"
    return f">= {edges[-1]:g}"


def rows_as_dicts(rows: Iterable[RemainingDuration]) -> list[dict[str, object]]:
    """The rows as plain dicts (JSON)."""
    return [asdict(r) for r in rows]
