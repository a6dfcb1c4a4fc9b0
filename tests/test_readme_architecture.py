"""The README's Architecture section names modules that exist (so it stays true)."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_module_of_the_architecture_section_exists() -> None:
    text = (REPO / "README.md").read_text()
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    paths = set(re.findall(r"`((?:actfusion_ros|model)/[\w/]+(?:\.py|/))`", section))
    assert len(paths) >= 15, paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"README Architecture names missing modules: {missing}"
