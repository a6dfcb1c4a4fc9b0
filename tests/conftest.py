"""Shared fixtures. Reference data is read from ../shared beside the repository, never copied in."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    path = SHARED / "reference"
    if not path.is_dir():
        pytest.skip(f"reference material not found at {path}")
    return path


@pytest.fixture(scope="session")
def official_shapes(shared_reference: Path):
    """{preset: (num_classes, [(name, shape), ...])} from the authors' state-dict listings."""
    out = {}
    for preset in ("50salads", "breakfast"):
        data = json.loads((shared_reference / f"official_state_dict_{preset}.json").read_text())
        out[preset] = (data["num_classes"], [(n, s) for n, s in data["state_dict"]])
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only MS-TCN label data (``../shared/data`` beside the repo); skips when absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared reference data not found at {path}")
    return path
