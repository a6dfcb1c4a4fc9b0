"""Small pieces shared by the training command-line tools."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

THREADS_HELP = "torch CPU threads (default: torch's choice; 1 is fastest for small models on busy CPUs)"


def add_dataset_arguments(parser: argparse.ArgumentParser, *, bundle: str, out_help: str) -> None:
    """``--data-root``, ``--split`` (of ``{bundle}.splitN.bundle``) and ``--out``, all required."""
    parser.add_argument("--data-root", required=True, type=Path, help="MS-TCN dataset root")
    parser.add_argument("--split", required=True, type=int, help=f"split number N ({bundle}.splitN.bundle)")
    parser.add_argument("--out", required=True, type=Path, help=out_help)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` (default cpu) and ``--threads`` (applied by :func:`apply_threads`)."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)


def apply_threads(threads: int | None) -> bool:
    """Set torch's CPU threads from ``--threads`` (None: leave torch's choice); False after printing an error."""
    if threads is None:
        return True
    if threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return False
    torch.set_num_threads(threads)
    return True
