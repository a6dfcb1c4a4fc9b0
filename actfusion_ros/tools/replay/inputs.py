"""The checks of a replay's inputs that need no model: the output folder, the bag's topics, the label file.

Each raises :class:`~actfusion_ros.tools.replay.records.ReplayError` naming the problem, before the bag is
replayed (``actfusion-replay`` turns it into one error line and exit 2).
"""
from __future__ import annotations

import os
from pathlib import Path

from actfusion_ros.tools.replay.records import ReplayError


def check_out_dir(out: Path) -> None:
    """Raise :class:`ReplayError` unless ``out`` is (or can be created as) a writable directory."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReplayError(f"--out {out}: exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ReplayError(f"--out {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReplayError(f"--out {out}: {parent} is not writable")


def read_labels_file(path: Path) -> list[str]:
    """One label name per line (blank lines skipped); :class:`ReplayError` if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"--labels {path}: no such file" if not path.exists() else f"--labels {path}: not a file")
    try:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise ReplayError(f"--labels {path}: cannot be read ({type(err).__name__}: {err})") from None


def check_sources(bag: Path, image_topic: str, label_topic: str | None, labels_file: Path | None) -> None:
    """Check, from the bag's metadata only, that the image and label sources exist and fit together.

    Raises :class:`ReplayError` (or :class:`~actfusion_ros.tools.bags.BagError`) naming the problem: a missing
    bag, a missing or mistyped topic (listing the topics present), no ground truth, or a label file whose
    length differs from the number of images.
    """
    from actfusion_ros.tools.bags import IMAGE_TYPES, LABEL_TYPE, bag_topics

    if not label_topic and not labels_file:
        raise ReplayError("ground truth needed: give --label-topic or --labels")
    topics = bag_topics(bag)
    present = ", ".join(f"{t.name} ({t.msgtype}, {t.count} msgs)" for t in topics.values()) or "none"
    for topic, types, what in ((image_topic, tuple(IMAGE_TYPES), "image"),
                               (label_topic, (LABEL_TYPE,), "label")):
        if not topic:
            continue
        if topic not in topics:
            raise ReplayError(f"bag {bag}: {what} topic {topic!r} not found; topics present: {present}")
        if topics[topic].msgtype not in types:
            raise ReplayError(f"bag {bag}: {what} topic {topic!r} has type {topics[topic].msgtype}, "
                              f"expected {' or '.join(types)}")
    if topics[image_topic].count == 0:
        raise ReplayError(f"bag {bag}: no images on {image_topic!r}")
    if labels_file and not label_topic:
        names = read_labels_file(labels_file)
        if len(names) != topics[image_topic].count:
            raise ReplayError(f"{labels_file}: {len(names)} labels for {topics[image_topic].count} images "
                              f"on {image_topic!r}")
