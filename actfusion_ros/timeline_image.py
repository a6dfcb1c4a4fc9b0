"""A live picture of what the model thinks: one tick drawn as an RGB image (ROS-free; numpy + OpenCV only).

:class:`TimelineRenderer` is configured once (:class:`TimelineConfig`: size, class names, a fixed colour
per class id, the seconds shown before and after "now") and :meth:`TimelineRenderer.render` draws one
tick into an ``(H, W, 3) uint8`` RGB array::

    +---------------------------------------------------------------+
    |              latest camera frame (downscaled, optional)        |
    +---------------------------------------------------------------+
    | now: pour_water 83%   next: stir 70% @ +2.1s, ...              |  header line
    | observed segments (full height)   |   forecast (inset band)    |  colour strip, class labels
    |                            next-action start intervals ^       |  alternatives band
    | -30s      -20s      -10s         now        +10s      +20s     |  time axis (seconds from now)
    +---------------------------------------------------------------+

Time runs left to right: column ``x`` shows camera time ``now - past_s + (x - plot_left + 0.5) *
seconds_per_px`` (:meth:`TimelineLayout.x_of` is the inverse). "now" is the end of the observed part,
where the forecast begins (``ForecastResult.current.end_ns``, one feature period after the tick's stamp).
Observed segments fill the strip's height, forecast segments a band inset from its top and bottom so the
two read apart; each segment carries its class label when the label fits. The colour of class ``k`` is
``config.colors[k]`` (default :func:`default_colors`), the same on every tick.

:meth:`TimelineRenderer.render_result` draws a :class:`~actfusion_ros.stream_types.ForecastResult`
as it comes from a tick; :meth:`TimelineRenderer.render` takes the parts (segments, or per-frame labels
as :class:`FrameLabels`). The camera frame may be an ``(H, W, 3) uint8`` array or an encoded frame with
``decode()`` (:class:`~actfusion_ros.stream_types.EncodedFrame`, :class:`actfusion_ros.frames.EncodedImage`
from ``inspect_image``; decoded only here, so a node that keeps the latest encoded frame decodes it only when
a picture is drawn). Bad input raises :class:`TimelineImageError`
(a ``ValueError``) naming the problem. :class:`RenderGate` says when a picture is due (a rate limit, and
only while someone subscribes).
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from actfusion_ros.next_actions import TimedAlternative
from actfusion_ros.stream_types import EncodedFrame, ForecastResult, TimedSegment, timed_segments
from actfusion_ros.time_ns import NS_PER_S

__all__ = ["FONT", "FrameLabels", "RenderGate", "camera_rgb", "TimelineConfig", "TimelineImageError",
           "TimelineLayout", "TimelineRenderer", "default_colors", "frame_label_segments"]

RGB = tuple[int, int, int]

#: The first 20 class colours (matplotlib's "tab20", reordered dark then light), RGB.
_BASE_COLORS: tuple[RGB, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
    (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141), (158, 218, 229))
BACKGROUND: RGB = (32, 32, 32)
TEXT: RGB = (235, 235, 235)
NOW_MARKER: RGB = (255, 255, 255)
#: The font of every text drawn (OpenCV's Hershey simplex); its metrics differ between OpenCV releases, so
#: code and tests measure text with ``cv2.getTextSize(text, FONT, scale, 1)`` rather than assume a width.
FONT = cv2.FONT_HERSHEY_SIMPLEX


class TimelineImageError(ValueError):
    """A timeline image cannot be drawn from the input (the message names the problem)."""


def default_colors(num_classes: int) -> tuple[RGB, ...]:
    """A fixed, distinct colour per class id: the 20 "tab20" colours, then hues spaced by the golden ratio."""
    out = list(_BASE_COLORS[:num_classes])
    for k in range(len(out), num_classes):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618033988749895) % 1.0, 0.65, 0.9)
        out.append((int(round(255 * r)), int(round(255 * g)), int(round(255 * b))))
    return tuple(out)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True, kw_only=True)
class TimelineConfig:
    """Settings of a :class:`TimelineRenderer` (validated on creation).

    class_names: the model's classes (class id ``k`` is ``class_names[k]``), at least one.
    width / height: image size in pixels, width in [160, 4096], height in [48, 4096].
    past_s / future_s: seconds of observed time shown left of "now" and of forecast right of it, > 0.
    colors: one RGB colour per class (default :func:`default_colors`).
    camera_fraction: share of the height the camera frame takes when one is drawn, in [0, 0.9]
        (the timeline keeps at least 48 pixels).
    """

    class_names: Sequence[str]
    width: int = 640
    height: int = 240
    past_s: float = 30.0
    future_s: float = 30.0
    colors: Sequence[RGB] | None = None
    camera_fraction: float = 0.6

    def __post_init__(self) -> None:
        names = self.class_names
        if isinstance(names, str) or not isinstance(names, Sequence) or not names:
            raise TimelineImageError(f"TimelineConfig.class_names must be a non-empty sequence of str, got {names!r}")
        if not all(isinstance(n, str) for n in names):
            raise TimelineImageError(f"TimelineConfig.class_names must all be str, got {list(names)!r}")
        object.__setattr__(self, "class_names", tuple(names))
        for name, low in (("width", 160), ("height", 48)):
            v = getattr(self, name)
            if not _is_int(v) or not low <= v <= 4096:
                raise TimelineImageError(f"TimelineConfig.{name} must be an int in [{low}, 4096], got {v!r}")
        for name in ("past_s", "future_s"):
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(v) or v <= 0:
                raise TimelineImageError(f"TimelineConfig.{name} must be a finite number > 0 seconds, got {v!r}")
        f = self.camera_fraction
        if not _is_real(f) or not 0 <= f <= 0.9:
            raise TimelineImageError(f"TimelineConfig.camera_fraction must be in [0, 0.9], got {f!r}")
        colors = default_colors(len(names)) if self.colors is None else tuple(self.colors)
        if len(colors) != len(names):
            raise TimelineImageError(f"TimelineConfig.colors has {len(colors)} colours for {len(names)} classes")
        for k, c in enumerate(colors):
            if (not isinstance(c, Sequence) or len(c) != 3 or not all(_is_int(v) and 0 <= v <= 255 for v in c)):
                raise TimelineImageError(f"TimelineConfig.colors[{k}] must be 3 ints in [0, 255], got {c!r}")
        object.__setattr__(self, "colors", tuple(tuple(int(v) for v in c) for c in colors))


class FrameLabels(NamedTuple):
    """Per-frame class ids with their camera stamps: frame ``t`` covers ``[stamps_ns[t], stamps_ns[t+1])``,
    the last one ``period_ns`` (the convention of :func:`~actfusion_ros.stream_types.timed_segments`)."""

    labels: Sequence[int] | np.ndarray
    stamps_ns: Sequence[int] | np.ndarray
    period_ns: int


def frame_label_segments(frames: FrameLabels, class_names: Sequence[str]) -> tuple[TimedSegment, ...]:
    """Per-frame labels -> timed segments (confidence 1), cut as the stream cuts its probabilities."""
    labels = np.asarray(frames.labels)
    stamps = np.asarray(frames.stamps_ns)
    if labels.ndim != 1 or stamps.shape != labels.shape:
        raise TimelineImageError(f"FrameLabels: labels {labels.shape} and stamps_ns {stamps.shape} must be "
                                 "1-d of the same length")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0
                        or labels.max() >= len(class_names)):
        raise TimelineImageError(f"FrameLabels: labels must be class ids in [0, {len(class_names)}), got "
                                 f"{labels.dtype} in [{labels.min()}, {labels.max()}]")
    if not np.issubdtype(stamps.dtype, np.integer) or (stamps.size > 1 and np.any(np.diff(stamps) <= 0)):
        raise TimelineImageError("FrameLabels: stamps_ns must be increasing integer nanoseconds")
    if not _is_int(frames.period_ns) or frames.period_ns <= 0:
        raise TimelineImageError(f"FrameLabels: period_ns must be an int > 0, got {frames.period_ns!r}")
    one_hot = np.eye(len(class_names), dtype=np.float32)[labels.astype(np.int64)].T
    return timed_segments(one_hot, stamps.astype(np.int64), int(frames.period_ns), class_names)


@dataclass(frozen=True)
class TimelineLayout:
    """Where things are drawn (pixel rows and columns of the image).

    camera: ``(top, bottom)`` rows of the camera area, ``None`` when no frame is drawn.
    header / strip / alternatives / axis: ``(top, bottom)`` rows (bottom exclusive).
    future: ``(top, bottom)`` rows of the forecast band (inside ``strip``).
    plot_left / plot_right: the columns the time line spans, ``[plot_left, plot_right)``.
    """

    camera: tuple[int, int] | None
    header: tuple[int, int]
    strip: tuple[int, int]
    future: tuple[int, int]
    alternatives: tuple[int, int]
    axis: tuple[int, int]
    plot_left: int
    plot_right: int
    past_s: float
    future_s: float
    font_scale: float = field(default=0.4)

    @property
    def seconds_per_px(self) -> float:
        return (self.past_s + self.future_s) / (self.plot_right - self.plot_left)

    def x_of(self, t_ns: int, now_ns: int) -> float:
        """The (fractional) column of camera time ``t_ns`` when "now" is ``now_ns``."""
        return self.plot_left + ((t_ns - now_ns) / NS_PER_S + self.past_s) / self.seconds_per_px


def _layout(config: TimelineConfig, with_camera: bool) -> TimelineLayout:
    w, h = config.width, config.height
    camera_h = int(round(h * config.camera_fraction)) if with_camera else 0
    camera_h = min(camera_h, h - 48)
    panel = h - camera_h
    line = int(np.clip(round(panel * 0.12), 13, 20))
    alt = max(4, line // 3)
    top = camera_h
    header = (top, top + line)
    axis = (h - line, h)
    alternatives = (axis[0] - alt, axis[0])
    strip = (header[1] + 1, alternatives[0] - 1)
    inset = max(1, (strip[1] - strip[0]) // 5)
    margin = max(4, w // 80)
    font_scale = max(0.3, (line - 4) / 24.0)
    return TimelineLayout(camera=(0, camera_h) if camera_h else None, header=header, strip=strip,
                          future=(strip[0] + inset, strip[1] - inset), alternatives=alternatives, axis=axis,
                          plot_left=margin, plot_right=w - margin, past_s=float(config.past_s),
                          future_s=float(config.future_s), font_scale=font_scale)


def _check_segments(segments: Sequence[TimedSegment], what: str, num_classes: int) -> tuple[TimedSegment, ...]:
    if isinstance(segments, (str, bytes)) or not isinstance(segments, Sequence):
        raise TimelineImageError(f"{what} must be a sequence of TimedSegment, got {type(segments).__name__}")
    for i, seg in enumerate(segments):
        _check_segment(seg, f"{what}[{i}]", num_classes)
    return tuple(segments)


def _check_segment(seg: TimedSegment, what: str, num_classes: int) -> None:
    if not isinstance(seg, TimedSegment):
        raise TimelineImageError(f"{what} must be a TimedSegment, got {type(seg).__name__}")
    if not _is_int(seg.class_id) or not 0 <= seg.class_id < num_classes:
        raise TimelineImageError(f"{what}: class_id {seg.class_id!r} is not in [0, {num_classes})")
    if not (_is_int(seg.start_ns) and _is_int(seg.end_ns)) or seg.end_ns < seg.start_ns:
        raise TimelineImageError(f"{what}: [start_ns, end_ns) = [{seg.start_ns!r}, {seg.end_ns!r}) is not an "
                                 "interval of integer nanoseconds")


def camera_rgb(frame: np.ndarray | EncodedFrame) -> np.ndarray:
    """The frame as an RGB array; an encoded one (anything with ``decode()``: :class:`EncodedFrame`,
    :class:`actfusion_ros.frames.EncodedImage`) is decoded here."""
    if not isinstance(frame, np.ndarray) and callable(getattr(frame, "decode", None)):
        try:
            frame = frame.decode()
        except Exception as err:  # noqa: BLE001 - any decoder failure is bad input here
            raise TimelineImageError(f"camera_frame could not be decoded: {type(err).__name__}: {err}") from err
    if not isinstance(frame, np.ndarray):
        raise TimelineImageError(f"camera_frame must be an (H, W, 3) uint8 array, got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise TimelineImageError(f"camera_frame must be a non-empty (H, W, 3) uint8 array, got {frame.dtype} "
                                 f"{frame.shape}")
    return frame


def _text_color(color: RGB) -> RGB:
    """Black on light colours, white on dark ones (BT.601 luma)."""
    return (0, 0, 0) if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] > 140 else (255, 255, 255)


class TimelineRenderer:
    """Draws ticks as timeline images with one :class:`TimelineConfig` (see the module docstring)."""

    def __init__(self, config: TimelineConfig) -> None:
        if not isinstance(config, TimelineConfig):
            raise TimelineImageError(f"config must be a TimelineConfig, got {type(config).__name__}")
        self.config = config
        self._layouts = {flag: _layout(config, flag) for flag in (False, True)}
        self._blank = np.empty((config.height, config.width, 3), np.uint8)
        self._blank[:, :] = np.asarray(BACKGROUND, np.uint8)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of every image drawn: ``(height, width, 3)``."""
        return self.config.height, self.config.width, 3

    def layout(self, with_camera: bool = False) -> TimelineLayout:
        """Where the parts are drawn, with or without a camera frame."""
        return self._layouts[bool(with_camera)]

    def render_result(self, result: ForecastResult,
                      camera_frame: np.ndarray | EncodedFrame | None = None) -> np.ndarray:
        """One tick's :class:`ForecastResult` (observed, current, future, next actions) as an image."""
        if not isinstance(result, ForecastResult):
            raise TimelineImageError(f"result must be a ForecastResult, got {type(result).__name__}")
        return self.render(result.observed, result.future, current=result.current,
                           next_actions=result.next_actions, camera_frame=camera_frame)

    def render(self, observed: Sequence[TimedSegment] | FrameLabels, future: Sequence[TimedSegment], *,
               current: TimedSegment | None = None, now_ns: int | None = None,
               next_actions: Sequence[TimedAlternative] = (),
               camera_frame: np.ndarray | EncodedFrame | None = None) -> np.ndarray:
        """Draw one tick; returns a new ``(height, width, 3) uint8`` RGB array.

        observed: the observed segmentation, oldest first (segments, or :class:`FrameLabels`).
        future: the forecast's segments after "now".
        current: the action in progress (default: the last observed segment); named in the header.
        now_ns: the "now" marker (default: the end of ``current``, where the forecast begins; without
            observed segments, the start of the first future one).
        next_actions: the alternatives for the next action, drawn as start intervals and in the header.
        camera_frame: drawn, downscaled, above the timeline when given.
        """
        names = self.config.class_names
        if isinstance(observed, FrameLabels):
            observed = frame_label_segments(observed, names)
        observed = _check_segments(observed, "observed", len(names))
        future = _check_segments(future, "future", len(names))
        if current is None and observed:
            current = observed[-1]
        if current is not None:
            _check_segment(current, "current", len(names))
        if now_ns is None:
            if current is not None:
                now_ns = current.end_ns
            elif future:
                now_ns = future[0].start_ns
            else:
                raise TimelineImageError("nothing to draw: no observed or future segment and no now_ns")
        if not _is_int(now_ns):
            raise TimelineImageError(f"now_ns must be integer nanoseconds, got {now_ns!r}")
        alternatives = tuple(next_actions)
        for i, alt in enumerate(alternatives):
            if not isinstance(alt, TimedAlternative):
                raise TimelineImageError(f"next_actions[{i}] must be a TimedAlternative, got {type(alt).__name__}")
        rgb = None if camera_frame is None else camera_rgb(camera_frame)

        lay = self.layout(rgb is not None)
        img = self._blank.copy()
        if rgb is not None and lay.camera is not None:
            self._draw_camera(img, rgb, lay.camera)
        for seg in observed:
            self._draw_segment(img, lay, seg, int(now_ns), lay.strip)
        for seg in future:
            self._draw_segment(img, lay, seg, int(now_ns), lay.future)
        self._draw_alternatives(img, lay, alternatives, int(now_ns))
        self._draw_axis(img, lay)
        self._draw_header(img, lay, current, alternatives, int(now_ns))
        return img

    # ------------------------------------------------------------------ parts
    def _columns(self, lay: TimelineLayout, start_ns: int, end_ns: int, now_ns: int) -> tuple[int, int]:
        """``[x0, x1)``: the columns whose centre lies in ``[start_ns, end_ns)``, clipped to the plot."""
        x0 = math.ceil(lay.x_of(start_ns, now_ns) - 0.5)
        x1 = math.ceil(lay.x_of(end_ns, now_ns) - 0.5)
        return max(lay.plot_left, x0), min(lay.plot_right, x1)

    def _draw_segment(self, img: np.ndarray, lay: TimelineLayout, seg: TimedSegment, now_ns: int,
                      rows: tuple[int, int]) -> None:
        x0, x1 = self._columns(lay, seg.start_ns, seg.end_ns, now_ns)
        if x1 <= x0:
            return
        color = self.config.colors[seg.class_id]
        img[rows[0]:rows[1], x0:x1] = color
        label = seg.label or self.config.class_names[seg.class_id]
        scale = lay.font_scale * 0.9
        (tw, th), _ = cv2.getTextSize(label, FONT, scale, 1)
        if tw + 4 <= x1 - x0 and th + 4 <= (rows[1] - rows[0]) // 2:
            y = (rows[0] + rows[1] + th) // 2
            cv2.putText(img, label, (x0 + 2, y), FONT, scale, _text_color(color), 1, cv2.LINE_AA)

    def _draw_alternatives(self, img: np.ndarray, lay: TimelineLayout, alternatives: Sequence[TimedAlternative],
                           now_ns: int) -> None:
        top, bottom = lay.alternatives
        for alt in reversed(alternatives):  # the most probable drawn last (on top)
            color = self.config.colors[alt.class_id] if 0 <= alt.class_id < len(self.config.colors) else TEXT
            x0, x1 = self._columns(lay, alt.low_ns, max(alt.high_ns, alt.low_ns + 1), now_ns)
            if x1 > x0:
                img[top + 1:bottom, x0:x1] = color
            x = int(round(lay.x_of(alt.start_ns, now_ns)))
            if lay.plot_left <= x < lay.plot_right:
                img[top:bottom, max(lay.plot_left, x - 1):x + 2] = TEXT

    def _draw_axis(self, img: np.ndarray, lay: TimelineLayout) -> None:
        top, bottom = lay.axis
        span = lay.past_s + lay.future_s
        px = lay.plot_right - lay.plot_left
        step = next(s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
                    if px / (span / s) >= 60 or s == float("inf"))
        if not math.isfinite(step):
            step = span
        cv2.line(img, (lay.plot_left, top), (lay.plot_right - 1, top), TEXT, 1)
        k0 = math.ceil(-lay.past_s / step)
        for k in range(k0, int(math.floor(lay.future_s / step)) + 1):
            t = k * step
            x = int(round(lay.plot_left + (t + lay.past_s) / lay.seconds_per_px))
            if not lay.plot_left <= x < lay.plot_right:
                continue
            cv2.line(img, (x, top), (x, top + 3), TEXT, 1)
            text = "now" if k == 0 else f"{t:+g}s"
            (tw, th), _ = cv2.getTextSize(text, FONT, lay.font_scale * 0.85, 1)
            tx = int(np.clip(x - tw // 2, 0, img.shape[1] - tw))
            cv2.putText(img, text, (tx, min(bottom - 2, top + 4 + th)), FONT, lay.font_scale * 0.85, TEXT, 1,
                        cv2.LINE_AA)
        # the "now" marker over the strip and the alternatives band
        x_now = int(round(lay.plot_left + lay.past_s / lay.seconds_per_px))
        img[lay.strip[0]:top, max(0, x_now - 1):x_now + 1] = NOW_MARKER

    def _draw_header(self, img: np.ndarray, lay: TimelineLayout, current: TimedSegment | None,
                     alternatives: Sequence[TimedAlternative], now_ns: int) -> None:
        """``now: <current> <conf>%   next: <alt> <p>% @ +<s>s, ...`` with as many alternatives (<= 3) as fit."""
        now = ""
        if current is not None:
            name = current.label or self.config.class_names[current.class_id]
            now = f"now: {name} {100.0 * float(current.confidence):.0f}%"
        texts = [f"{a.label} {100.0 * a.probability:.0f}% @ {(a.start_ns - now_ns) / NS_PER_S:+.1f}s"
                 for a in alternatives[:3]]
        width = lay.plot_right - lay.plot_left
        for k in range(len(texts), -1, -1):
            line = "   ".join(p for p in (now, ("next: " + ", ".join(texts[:k])) if k else "") if p)
            if k == 0 or cv2.getTextSize(line, FONT, lay.font_scale, 1)[0][0] <= width:
                break
        if line:
            cv2.putText(img, line, (lay.plot_left, lay.header[1] - 3), FONT, lay.font_scale, TEXT, 1, cv2.LINE_AA)

    @staticmethod
    def _draw_camera(img: np.ndarray, rgb: np.ndarray, rows: tuple[int, int]) -> None:
        area_h, area_w = rows[1] - rows[0], img.shape[1]
        scale = min(area_h / rgb.shape[0], area_w / rgb.shape[1])
        h, w = max(1, int(rgb.shape[0] * scale)), max(1, int(rgb.shape[1] * scale))
        # INTER_LINEAR: a preview; INTER_AREA costs ~10x more (3 ms for 640x480 on a slow core)
        small = cv2.resize(np.ascontiguousarray(rgb), (w, h), interpolation=cv2.INTER_LINEAR)
        y0, x0 = rows[0] + (area_h - h) // 2, (area_w - w) // 2
        img[y0:y0 + h, x0:x0 + w] = small


class RenderGate:
    """When a timeline image is due: at most ``rate_hz`` per second (of the clock given) and only while
    someone subscribes. ``due(now_ns, subscribers)`` is True at most once per period and then restarts it."""

    def __init__(self, rate_hz: float) -> None:
        if not _is_real(rate_hz) or not math.isfinite(rate_hz) or rate_hz <= 0:
            raise TimelineImageError(f"timeline image rate must be a finite number > 0 Hz, got {rate_hz!r}")
        self.period_ns = int(round(NS_PER_S / float(rate_hz)))
        self._last_ns: int | None = None

    def due(self, now_ns: int, subscribers: int) -> bool:
        if subscribers <= 0:
            return False
        if self._last_ns is not None and 0 <= now_ns - self._last_ns < self.period_ns:
            return False
        self._last_ns = int(now_ns)
        return True
