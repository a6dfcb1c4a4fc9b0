"""Write a pip constraints file (``name==version`` per line) of what is installed in the running Python's environment.

    VENV/bin/python scripts/freeze_constraints.py [--out constraints.txt]

Run it with the Python of a venv whose test suite passed (``make lock`` runs it in the venv of ``make
test-latest``). Written: every distribution that pip installed there (the ROS wheels' ``ros-*``, pip and
setuptools included), except this project itself. Not written: the Python packages that the ROS wheels ship
inside themselves (``rclpy``, ``std_msgs``, ... as bare ``.egg-info`` without pip's INSTALLER record; their
``ros-*`` wheel pins them) and the message package the build installs. A local version label is dropped (``torch
2.13.0+cpu`` -> ``torch==2.13.0``), so the same pin takes the CPU wheel here and a robot's own build of that
version. The file is replaced atomically.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path

PROJECT = "actfusion-ros"
HEADER = """\
# Known-good versions: `make setup` (and so .ci/run) installs with `pip install -c constraints.txt`.
# setup.py keeps its ranges (a robot keeps its own torch/CUDA build); this file only pins what a fresh venv gets.
# Refresh: `make test-latest` (newest versions, full suite in build/venv-latest), then, if it passed, `make lock`.
# Written by scripts/freeze_constraints.py from {python} (Python {version}); do not edit by hand.
"""


def canonical(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> list[str]:
    """``name==version`` of every pip-installed distribution of this environment, sorted by name."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or canonical(name) == PROJECT:
            continue
        if (dist.read_text("INSTALLER") or "").strip() != "pip":
            continue  # shipped inside another wheel (the ROS wheels' egg-info) or built here (actfusion_msgs)
        out[canonical(name)] = dist.version.split("+", 1)[0]
    return [f"{name}=={version}" for name, version in sorted(out.items())]


def write_atomic(path: Path, text: str) -> None:
    path = path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("constraints.txt"), help="file to write")
    args = ap.parse_args(argv)
    lines = pins()
    if not any(line.startswith("torch==") for line in lines):
        print(f"freeze_constraints: error: no torch in {sys.prefix}: run it with the Python of a set-up venv",
              file=sys.stderr)
        return 2
    version = ".".join(map(str, sys.version_info[:3]))
    write_atomic(args.out, HEADER.format(python=os.path.relpath(sys.prefix), version=version) + "\n".join(lines) + "\n")
    print(f"freeze_constraints: {len(lines)} pins -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
