"""MS-TCN dataset layout reader and training targets.

Layout under ``root``::

    features/<video>.npy           float32 (D, T) frame features
    groundTruth/<video>.txt        one class name per frame
    splits/{train,test}.splitN.bundle   one "<video>.txt" per line
    mapping.txt                    "<id> <name>" per line

Targets (boundaries, class weights, soft labels) follow ``reference/official_architecture.md`` §4-5.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from actfusion_model.labels import ClassMapping, LabelError, read_label_file, segments_from_labels


class DatasetError(ValueError):
    """A dataset file is missing or inconsistent (names the video and what is wrong)."""


@dataclass(frozen=True)
class VideoRecord:
    """One video: ``features`` float32 ``(D, T)`` and ``labels`` int64 ``(T,)`` at the raw frame rate."""

    name: str
    features: np.ndarray
    labels: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[0])


def read_bundle(path: str | Path) -> list[str]:
    """Video names (without ``.txt``) listed in an MS-TCN split bundle, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"split file not found: {path}")
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name = Path(line).name
        names.append(name[:-4] if name.endswith(".txt") else name)
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: duplicate video names")
    return names


def align_lengths(name: str, features: np.ndarray, labels: np.ndarray,
                  tolerance: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Trim features ``(D, T_f)`` and labels ``(T_l,)`` to the shorter length if they differ by at most
    ``tolerance`` frames; otherwise raise :class:`DatasetError` naming the video and both lengths."""
    t_feat, t_lab = int(features.shape[1]), int(labels.shape[0])
    if abs(t_feat - t_lab) > tolerance:
        raise DatasetError(f"video {name!r}: features have {t_feat} frames but labels have {t_lab} "
                           f"(difference {abs(t_feat - t_lab)} > tolerance {tolerance})")
    n = min(t_feat, t_lab)
    return features[:, :n], labels[:n]


class MsTcnDataset:
    """Videos of one split of an MS-TCN style dataset; features are loaded lazily on indexing.

    ``split`` is the split number N of ``splits/{subset}.splitN.bundle``; ``mapping`` defaults to
    ``root/mapping.txt``. Missing feature or label files are reported at construction; a label that is
    not in the mapping or a length mismatch beyond ``tolerance`` frames when a video is loaded.
    """

    def __init__(self, root: str | Path, split: int, subset: str = "train",
                 mapping: ClassMapping | None = None, tolerance: int = 2,
                 names: Sequence[str] | None = None) -> None:
        if subset not in ("train", "test"):
            raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        self.root = Path(root)
        self.split = int(split)
        self.subset = subset
        self.tolerance = int(tolerance)
        try:
            self.mapping = mapping if mapping is not None else ClassMapping.from_file(self.root / "mapping.txt")
        except LabelError as err:
            raise DatasetError(str(err)) from None
        bundle = read_bundle(self.root / "splits" / f"{subset}.split{self.split}.bundle")
        if names is not None:
            unknown = sorted(set(names) - set(bundle))
            if unknown:
                raise DatasetError(f"videos not in {subset} split {split}: {unknown}")
            wanted = set(names)
            bundle = [n for n in bundle if n in wanted]
        self.names: list[str] = bundle
        for name in self.names:
            for path in (self.feature_path(name), self.label_path(name)):
                if not path.is_file():
                    raise DatasetError(f"video {name!r}: file not found: {path}")

    @property
    def num_classes(self) -> int:
        return self.mapping.num_classes

    def feature_path(self, name: str) -> Path:
        return self.root / "features" / f"{name}.npy"

    def label_path(self, name: str) -> Path:
        return self.root / "groundTruth" / f"{name}.txt"

    def load_labels(self, name: str) -> np.ndarray:
        """Raw-rate int64 labels of one video (not trimmed to the features)."""
        try:
            return read_label_file(self.label_path(name), self.mapping)
        except LabelError as err:
            raise DatasetError(f"video {name!r}: {err}") from None

    def load(self, name: str) -> VideoRecord:
        """Read one video's features and labels, checked and aligned."""
        path = self.feature_path(name)
        if not path.is_file():
            raise DatasetError(f"video {name!r}: feature file not found: {path}")
        try:
            feats = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DatasetError(f"video {name!r}: cannot read {path}: {err}") from None
        if feats.ndim != 2:
            raise DatasetError(f"video {name!r}: features must be 2-D (D, T), got shape {feats.shape}")
        labels = self.load_labels(name)
        feats, labels = align_lengths(name, feats, labels, self.tolerance)
        return VideoRecord(name, np.ascontiguousarray(feats, dtype=np.float32), labels)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> VideoRecord:
        return self.load(self.names[index])

    def __iter__(self) -> Iterator[VideoRecord]:
        for name in self.names:
            yield self.load(name)


def read_split_labels(root: str | Path, split: int, subset: str = "train",
                      mapping: ClassMapping | None = None) -> dict[str, np.ndarray]:
    """Raw-rate int64 labels of every video of a split, read from ``groundTruth/`` alone (no features).

    For label-only uses (e.g. fitting :mod:`actfusion_training.baselines`); ``mapping`` defaults to
    ``root/mapping.txt``.
    """
    root = Path(root)
    try:
        mapping = mapping if mapping is not None else ClassMapping.from_file(root / "mapping.txt")
        names = read_bundle(root / "splits" / f"{subset}.split{int(split)}.bundle")
        return {name: read_label_file(root / "groundTruth" / f"{name}.txt", mapping) for name in names}
    except LabelError as err:
        raise DatasetError(str(err)) from None


def read_label_sequences(paths: Sequence[str | Path], class_names: Sequence[str], *,
                         split: int = 1) -> list[np.ndarray]:
    """Label sequences (int64 ids of ``class_names``) named by ``paths``, for label-only fitting.

    One MS-TCN dataset root (a directory with ``splits/``): its ``train.split{split}`` videos; a directory:
    every ``*.txt`` in it (in its ``groundTruth/`` when it has one); a file: that label file.
    Raises :class:`DatasetError` for an unknown label, a missing file or no label at all.
    """
    mapping = ClassMapping(tuple(class_names))
    if len(paths) == 1 and (Path(paths[0]) / "splits").is_dir():
        seqs = list(read_split_labels(paths[0], split, "train", mapping).values())
    else:
        files: list[Path] = []
        for path in map(Path, paths):
            if path.is_dir():
                folder = path / "groundTruth" if (path / "groundTruth").is_dir() else path
                files += sorted(folder.glob("*.txt"))
            else:
                files.append(path)
        try:
            seqs = [read_label_file(f, mapping) for f in files]
        except LabelError as err:
            raise DatasetError(str(err)) from None
    seqs = [s for s in seqs if s.size]
    if not seqs:
        raise DatasetError("no labels found")
    return seqs


# ---------------------------------------------------------------------------------------------- sampling


def sample(features: np.ndarray, labels: np.ndarray, sample_rate: int,
           offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Strided views ``features[:, offset::sr]`` and ``labels[offset::sr]`` (temporal subsampling)."""
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    if not 0 <= offset < sample_rate:
        raise ValueError(f"offset must be in [0, {sample_rate}), got {offset}")
    return features[:, offset::sample_rate], labels[offset::sample_rate]


# ---------------------------------------------------------------------------------------------- smoothing


def gaussian_smooth(x: np.ndarray, sigma: float, axis: int = -1, truncate: float = 4.0) -> np.ndarray:
    """Gaussian filter along ``axis`` (float64), equal to ``scipy.ndimage.gaussian_filter1d`` with its
    defaults (``mode='reflect'``, kernel radius ``int(truncate*sigma + 0.5)``)."""
    x = np.asarray(x, dtype=np.float64)
    if sigma <= 0:
        return x.copy()
    radius = int(truncate * float(sigma) + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    moved = np.moveaxis(x, axis, -1)
    if moved.shape[-1] == 0:
        return x.copy()
    pad = [(0, 0)] * (moved.ndim - 1) + [(radius, radius)]
    padded = np.pad(moved, pad, mode="symmetric")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=-1)
    out = windows @ kernel[::-1]
    return np.moveaxis(out, -1, axis)


def boundary_targets(labels: np.ndarray, sigma: float | None) -> np.ndarray:
    """Smoothed action-boundary target (float32, same length as ``labels``, peak 1).

    The first frame of each segment after the first, and the frame before it, are 1. With ``sigma``,
    the sequence is Gaussian-smoothed at the raw rate, clipped at the peak an isolated 2-frame delta
    would give, and divided by its max. A video with one segment gives all zeros.
    """
    labels = np.asarray(labels).reshape(-1)
    out = np.zeros(labels.size, dtype=np.float64)
    starts = np.array([s.start for s in segments_from_labels(labels)[1:]], dtype=np.int64)
    if starts.size == 0:
        return out.astype(np.float32)
    out[starts] = 1.0
    out[starts - 1] = 1.0
    if sigma is not None and sigma > 0:
        out = gaussian_smooth(out, sigma)
        delta = np.zeros(2 * int(4 * sigma + 0.5) + 4, dtype=np.float64)
        delta[delta.size // 2 - 1: delta.size // 2 + 1] = 1.0
        out = np.minimum(out, gaussian_smooth(delta, sigma).max())
        out /= out.max()
    return out.astype(np.float32)


def subsample_boundary(boundary: np.ndarray, sample_rate: int, offset: int = 0) -> np.ndarray:
    """Subsample a raw-rate boundary target and re-normalise it by its max (training, §5)."""
    if sample_rate < 1 or not 0 <= offset < sample_rate:
        raise ValueError(f"need sample_rate >= 1 and 0 <= offset < sample_rate, got {sample_rate}, {offset}")
    sub = np.array(boundary[offset::sample_rate], dtype=np.float32)
    peak = sub.max() if sub.size else 0.0
    return sub / peak if peak > 0 else sub


def gaussian_soft_labels(labels: np.ndarray, num_classes: int, sigma: float = 4.0) -> np.ndarray:
    """One-hot ``(C, T)`` labels Gaussian-smoothed along time, *not* renormalised (float32).

    Used as the target of the soft-label cross-entropy ``-sum_c g_c log_softmax`` (Breakfast, σ 4).
    """
    labels = np.asarray(labels).reshape(-1)
    onehot = _onehot(labels, num_classes)
    return gaussian_smooth(onehot, sigma, axis=1).astype(np.float32)


def _onehot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    out = np.zeros((num_classes, labels.size), dtype=np.float64)
    out[labels, np.arange(labels.size)] = 1.0
    return out


# ---------------------------------------------------------------------------------------------- weights


def class_weights(label_arrays: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Cross-entropy class weights ``N / ((count_c + 10) * C)`` over raw-rate training labels (float32).

    ``N`` is the total number of frames, ``count_c`` the frames of class c, ``C = num_classes``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    counts = np.zeros(num_classes, dtype=np.int64)
    for labels in label_arrays:
        labels = np.asarray(labels).reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
        counts += np.bincount(labels, minlength=num_classes)
    total = counts.sum()
    return (total / ((counts + 10.0) * num_classes)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- splits


# Camera tokens in a video's name (Breakfast: P21_webcam02_P21_coffee): the views of one recording share its
# labels, so they must fall on the same side of a validation split (else validation scores a memorised recording).
VIEW_TOKEN = re.compile(r"(?:^|_)(?:cam|webcam|stereo|kinect|view|camera)\d+(?=_|$)", re.IGNORECASE)


def recording_key(name: str) -> str:
    """The recording a video shows: its name without camera/view tokens (:data:`VIEW_TOKEN`); names without
    such a token are their own recording (GTEA, 50 Salads)."""
    key = VIEW_TOKEN.sub("", name)
    return key or name


def split_train_validation(names: Sequence[str], fraction: float,
                           seed: int) -> tuple[list[str], list[str]]:
    """Carve a validation subset out of the *training* videos: ``(train_rest, validation)``.

    About ``round(fraction * len(names))`` videos (at least 1 when ``fraction > 0``, never all of them) are
    chosen by a seeded permutation of the sorted recordings (:func:`recording_key`: the camera views of one
    recording go together, taken until the count is reached), so the result does not depend on input order;
    where every video is its own recording this is a permutation of the sorted names, as it always was.
    Both lists keep the input order. Model selection must use this, never the test split.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if len(set(names)) != len(names):
        raise ValueError("names must be unique")
    n_val = max(1, int(round(fraction * len(names)))) if fraction > 0 else 0
    if n_val >= len(names) and n_val > 0:
        raise ValueError(f"cannot carve {n_val} validation videos out of {len(names)}")
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(recording_key(name), []).append(name)
    ordered = sorted(groups)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    chosen: set[str] = set()
    for i in perm:
        if len(chosen) >= n_val:
            break
        if len(chosen) + len(groups[ordered[i]]) >= len(names):
            continue  # never all of them
        chosen.update(groups[ordered[i]])
    return [n for n in names if n not in chosen], [n for n in names if n in chosen]
