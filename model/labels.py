"""Labels, class mappings and segments: the one place that turns frame labels into segments.

Metrics, messages and plots all call :func:`segments_from_labels`, so a "segment" means the same
thing everywhere: a maximal run of one label, ``[start, end)`` in frame indices.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


class LabelError(ValueError):
    """A label file or mapping is malformed or names an unknown class."""


@dataclass(frozen=True)
class Segment:
    """A maximal run of one class id over frames ``[start, end)``."""

    label: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def segments_from_labels(labels: Sequence[int] | np.ndarray,
                         ignore: Iterable[int] = ()) -> list[Segment]:
    """Split a 1-D label array into maximal runs of equal labels.

    Runs whose label is in ``ignore`` (e.g. background classes) are dropped *after* splitting, so they
    still separate their neighbours.
    """
    arr = np.asarray(labels).reshape(-1)
    if arr.size == 0:
        return []
    change = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [arr.size]))
    skip = set(int(i) for i in ignore)
    return [Segment(int(arr[s]), int(s), int(e)) for s, e in zip(starts, ends) if int(arr[s]) not in skip]


def labels_from_segments(segments: Sequence[Segment], length: int | None = None,
                         fill: int = -1) -> np.ndarray:
    """Inverse of :func:`segments_from_labels` (gaps get ``fill``)."""
    n = length if length is not None else (max((s.end for s in segments), default=0))
    out = np.full(n, fill, dtype=np.int64)
    for s in segments:
        out[s.start:s.end] = s.label
    return out


@dataclass(frozen=True)
class ClassMapping:
    """Bidirectional class-name <-> id mapping (MS-TCN ``mapping.txt``: ``<id> <name>`` per line)."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise LabelError(f"duplicate class names in mapping: {dup}")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def id_of(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise LabelError(f"label {name!r} is not in the class mapping "
                             f"({self.num_classes} classes: {', '.join(self.names[:8])}...)") from None

    def name_of(self, class_id: int) -> str:
        if not 0 <= class_id < len(self.names):
            raise LabelError(f"class id {class_id} out of range [0, {len(self.names)})")
        return self.names[class_id]

    def encode(self, names: Iterable[str]) -> np.ndarray:
        """Names -> int64 ids; raises :class:`LabelError` naming the first unknown label."""
        return np.array([self.id_of(n) for n in names], dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.name_of(int(i)) for i in ids]

    @property
    def _index(self) -> dict[str, int]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {n: i for i, n in enumerate(self.names)}
            object.__setattr__(self, "_idx", idx)
        return idx

    @classmethod
    def from_file(cls, path: str | Path) -> "ClassMapping":
        """Read an MS-TCN ``mapping.txt``; ids must be 0..C-1 (any order)."""
        path = Path(path)
        if not path.is_file():
            raise LabelError(f"class mapping file not found: {path}")
        pairs: dict[int, str] = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2 or not parts[0].lstrip("-").isdigit():
                raise LabelError(f"{path}:{lineno}: expected '<id> <name>', got {line!r}")
            pairs[int(parts[0])] = parts[1].strip()
        if sorted(pairs) != list(range(len(pairs))):
            raise LabelError(f"{path}: class ids must be 0..{len(pairs) - 1}, got {sorted(pairs)[:10]}...")
        return cls(tuple(pairs[i] for i in range(len(pairs))))

    def to_file(self, path: str | Path) -> None:
        from actfusion_model.io import atomic_write_text
        atomic_write_text(path, "".join(f"{i} {n}\n" for i, n in enumerate(self.names)))


def load_class_names(path: str | Path) -> list[str]:
    """Class names from an MS-TCN ``mapping.txt`` (``<id> <name>``) or a one-name-per-line file.

    Raises ``OSError`` for an unreadable file and ``ValueError`` (:class:`LabelError` for a malformed
    mapping) for an empty file or duplicate names.
    """
    path = Path(path).expanduser()
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: no class names")
    if all(len(ln.split(maxsplit=1)) == 2 and ln.split()[0].isdigit() for ln in lines):
        return list(ClassMapping.from_file(path).names)
    if len(set(lines)) != len(lines):
        raise ValueError(f"{path}: duplicate class names")
    return lines


def read_label_file(path: str | Path, mapping: ClassMapping) -> np.ndarray:
    """Read a ``groundTruth/<video>.txt`` (one class name per line) as int64 ids."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"label file not found: {path}")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        return mapping.encode(names)
    except LabelError as err:
        raise LabelError(f"{path}: {err}") from None
