"""The synthetic activity world: grammar, determinism, action-dependent appearance."""
from __future__ import annotations

import numpy as np

from actfusion_model.labels import segments_from_labels
from actfusion_ros.tools.world import TEA_GRAMMAR, ActivityWorld


def test_sequences_follow_the_grammar() -> None:
    world = ActivityWorld()
    for seed in range(30):
        seq = [world.class_names[s.label] for s in segments_from_labels(world.episode(seed).labels)]
        assert seq[0] == "take_cup" and seq[-1] == "drink"
        for a, b in zip(seq, seq[1:]):
            assert b in dict(TEA_GRAMMAR[a]), f"{a} -> {b} is not in the grammar"


def test_episodes_and_frames_are_deterministic() -> None:
    world = ActivityWorld()
    a, b = world.episode(7), world.episode(7)
    assert np.array_equal(a.labels, b.labels) and not np.array_equal(a.labels, world.episode(8).labels)
    fa = [f for _, f in zip(range(5), world.frames(a))]
    fb = [f for _, f in zip(range(5), world.frames(b))]
    assert all(s1 == s2 and np.array_equal(x1, x2) for (s1, x1), (s2, x2) in zip(fa, fb))
    assert [s for s, _ in fa] == [round(i * 1e9 / 15) for i in range(5)]


def test_appearance_depends_on_the_action() -> None:
    world = ActivityWorld(noise=0.0)
    ep = world.episode(1)
    frames = np.stack([f for _, f in world.frames(ep)])
    means = {int(c): frames[ep.labels == c].reshape(-1, 3).mean(0) for c in np.unique(ep.labels)}
    classes = sorted(means)
    gaps = [np.abs(means[x] - means[y]).max() for i, x in enumerate(classes) for y in classes[i + 1:]]
    assert min(gaps) > 3.0
