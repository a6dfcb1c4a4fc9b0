"""A small synthetic activity world: procedurally rendered camera frames that follow an action grammar.

It stands in for a camera watching a person make tea, so the demo, the replay tests and the soak tests
have realistic streams (variable durations, optional steps, ambiguous look-alike actions) with exact
ground truth, without shipping any dataset. Appearance depends on the action: a background tint, an
object whose colour, size and motion pattern are action-specific, plus sensor noise and slow lighting
drift. Everything is deterministic given a ``numpy.random.Generator``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class ActionStyle:
    """How one action looks: object colour (RGB), radius (fraction of the image), motion pattern."""

    color: tuple[int, int, int]
    radius: float
    motion: str  # 'still' | 'down' | 'circle' | 'sideways' | 'up'
    tint: tuple[int, int, int]


# The grammar: each action lists (next action, probability); durations are (mean, std) seconds.
TEA_ACTIONS: tuple[str, ...] = ("take_cup", "pour_water", "add_teabag", "add_sugar", "stir", "add_milk", "drink")
TEA_GRAMMAR: dict[str, tuple[tuple[str, float], ...]] = {
    "<start>": (("take_cup", 1.0),),
    "take_cup": (("pour_water", 0.7), ("add_teabag", 0.3)),
    "pour_water": (("add_teabag", 0.6), ("add_sugar", 0.2), ("stir", 0.2)),
    "add_teabag": (("pour_water", 0.35), ("add_sugar", 0.35), ("stir", 0.3)),
    "add_sugar": (("stir", 0.8), ("add_milk", 0.2)),
    "stir": (("add_milk", 0.4), ("drink", 0.6)),
    "add_milk": (("stir", 0.5), ("drink", 0.5)),
    "drink": (("<end>", 1.0),),
}
TEA_DURATIONS: dict[str, tuple[float, float]] = {
    "take_cup": (3.0, 0.8), "pour_water": (5.0, 1.2), "add_teabag": (3.0, 0.8), "add_sugar": (2.5, 0.6),
    "stir": (4.0, 1.0), "add_milk": (2.5, 0.6), "drink": (6.0, 1.5),
}
# add_sugar and add_milk deliberately look alike (same motion, close colours): an honest ambiguity.
TEA_STYLES: dict[str, ActionStyle] = {
    "take_cup": ActionStyle((200, 60, 60), 0.18, "sideways", (30, 20, 20)),
    "pour_water": ActionStyle((60, 120, 220), 0.14, "down", (15, 25, 45)),
    "add_teabag": ActionStyle((150, 100, 40), 0.10, "down", (35, 28, 15)),
    "add_sugar": ActionStyle((235, 235, 235), 0.08, "up", (30, 30, 30)),
    "stir": ActionStyle((220, 200, 60), 0.12, "circle", (35, 35, 15)),
    "add_milk": ActionStyle((245, 240, 225), 0.09, "up", (32, 31, 28)),
    "drink": ActionStyle((90, 200, 110), 0.22, "still", (15, 40, 20)),
}


@dataclass(frozen=True)
class Episode:
    """One rendered-on-demand episode: per-frame labels (class ids) at ``fps``."""

    labels: np.ndarray
    fps: float
    seed: int

    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[0])


class ActivityWorld:
    """Samples action sequences from the grammar and renders their frames."""

    def __init__(self, *, width: int = 64, height: int = 48, fps: float = 15.0, noise: float = 8.0,
                 actions: tuple[str, ...] = TEA_ACTIONS) -> None:
        self.width, self.height, self.fps, self.noise = width, height, fps, noise
        self.actions = actions
        self._ids = {a: i for i, a in enumerate(actions)}

    @property
    def class_names(self) -> list[str]:
        return list(self.actions)

    def sample_sequence(self, rng: np.random.Generator, max_steps: int = 20) -> list[tuple[str, float]]:
        """(action, duration s) pairs from ``<start>`` to ``<end>`` following :data:`TEA_GRAMMAR`."""
        out: list[tuple[str, float]] = []
        state = "<start>"
        for _ in range(max_steps):
            nexts, probs = zip(*TEA_GRAMMAR[state])
            state = str(rng.choice(nexts, p=np.asarray(probs) / sum(probs)))
            if state == "<end>":
                break
            mean, std = TEA_DURATIONS[state]
            out.append((state, float(max(0.8, rng.normal(mean, std)))))
        return out

    def episode(self, seed: int) -> Episode:
        """A whole episode's frame labels (frames are rendered lazily by :meth:`frames`)."""
        rng = np.random.default_rng(seed)
        labels: list[int] = []
        for action, duration in self.sample_sequence(rng):
            labels += [self._ids[action]] * max(1, int(round(duration * self.fps)))
        return Episode(np.asarray(labels, dtype=np.int64), self.fps, seed)

    def frames(self, episode: Episode) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(stamp_ns, rgb (H, W, 3) uint8)`` for every frame, stamps from 0 at ``fps``."""
        rng = np.random.default_rng(episode.seed + 1_000_003)
        yy, xx = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        period = 1.0 / self.fps
        start_of_action = 0
        for i, label in enumerate(episode.labels):
            if i > 0 and label != episode.labels[i - 1]:
                start_of_action = i
            style = TEA_STYLES[self.actions[int(label)]]
            phase = (i - start_of_action) * period
            yield int(round(i * period * 1e9)), self.render(style, phase, i * period, xx, yy, rng)

    def render(self, style: ActionStyle, phase: float, t: float, xx: np.ndarray, yy: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        """One frame of ``style`` at ``phase`` seconds into the action and ``t`` into the episode."""
        w, h = self.width, self.height
        cx, cy = 0.5 * w, 0.5 * h
        if style.motion == "down":
            cy = h * (0.2 + 0.6 * ((phase * 0.4) % 1.0))
        elif style.motion == "up":
            cy = h * (0.8 - 0.6 * ((phase * 0.4) % 1.0))
        elif style.motion == "circle":
            cx += 0.25 * w * math.cos(phase * 3.0)
            cy += 0.25 * h * math.sin(phase * 3.0)
        elif style.motion == "sideways":
            cx = w * (0.2 + 0.6 * (0.5 + 0.5 * math.sin(phase * 1.5)))
        light = 1.0 + 0.15 * math.sin(t * 0.2)
        base = np.array([90, 85, 80], dtype=np.float32) + np.array(style.tint, dtype=np.float32)
        img = np.broadcast_to(base, (h, w, 3)).astype(np.float32) * light
        r = style.radius * min(w, h)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img[inside] = np.array(style.color, dtype=np.float32) * light
        img += rng.normal(0.0, self.noise, size=img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)
