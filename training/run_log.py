"""Training logs: append-only CSV files and an optional TensorBoard writer.

Each CSV row is written with one ``write`` call and flushed, so a crash leaves at most a partial last line;
:meth:`CsvLog.truncate` (used on ``--resume``) rewrites the file atomically without the rows past the
resumed position and without a partial line.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from actfusion_model.io import atomic_write_text


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class CsvLog:
    """A CSV file with a fixed header; rows are dicts (missing keys are empty cells)."""

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        if not self.path.exists() or self.path.stat().st_size == 0:
            atomic_write_text(self.path, ",".join(self.columns) + "\n")
        else:
            with open(self.path, newline="") as fh:
                header = fh.readline().strip().split(",")
            if header != self.columns:
                raise ValueError(f"{self.path}: header {header} differs from the expected {self.columns}")

    def append(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"{self.path}: unknown column(s) {sorted(unknown)}")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_fmt(row.get(c)) for c in self.columns])
        with open(self.path, "a", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()

    def rows(self) -> list[dict[str, str]]:
        with open(self.path, newline="") as fh:
            text = fh.read()
        if text and not text.endswith("\n"):  # a partial last line from a crash
            text = text[: text.rfind("\n") + 1]
        return list(csv.DictReader(io.StringIO(text)))

    def truncate(self, keep: Callable[[dict[str, str]], bool]) -> int:
        """Keep only the complete rows for which ``keep(row)`` is true; returns how many were dropped."""
        rows = self.rows()
        kept = [r for r in rows if keep(r)]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for r in kept:
            writer.writerow([r.get(c, "") for c in self.columns])
        atomic_write_text(self.path, buf.getvalue())
        return len(rows) - len(kept)


class Scalars:
    """TensorBoard ``SummaryWriter`` when tensorboard imports, else a no-op that says why once."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None,
                 note: Callable[[str], None] = print) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # tensorboard is an optional extra
            note(f"note: TensorBoard logging skipped ({err}); loss curves are still in the CSV files")
            return
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def add(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
