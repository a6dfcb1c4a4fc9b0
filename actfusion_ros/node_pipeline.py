"""What ``actfusion_node`` holds between ``configure`` and ``cleanup``, and its feature worker (ROS-free).

:class:`NodePipeline` is everything the lifecycle transition ``configure`` builds from the validated
settings: the :class:`~actfusion_ros.stream.StreamingAnticipator` (model loaded), the frame queue, the
counters and the /diagnostics builder; ``cleanup`` drops every reference to it, then
:func:`release_device_memory` collects it and empties the CUDA cache. :class:`FeatureWorker` is the thread that feeds queued frames to the stream,
started by ``activate`` and stopped by ``deactivate``. :func:`lifecycle_status` is the /diagnostics
status of a node in any lifecycle state. The rules (what each state does) are in docs/node.md, "Lifecycle".
"""
from __future__ import annotations

import gc
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from actfusion_ros.builder import build_anticipator
from actfusion_ros.frame_gaps import MissedFrameEstimator
from actfusion_ros.frame_queue import FrameQueue
from actfusion_ros.node_diagnostics import NodeDiagnostics, TickStats
from actfusion_ros.node_params import NodeSettings
from actfusion_ros.reporting import KindCounter
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import Forecaster
from actfusion_ros.tick_overruns import TickOverrunCounter
from actfusion_ros.time_ns import NS_PER_S, seconds_to_ns

__all__ = ["FeatureWorker", "LIFECYCLE_STATES", "NodePipeline", "lifecycle_status", "release_device_memory"]

#: the primary states of a ROS 2 managed node, as ``ros2 lifecycle get`` names them
LIFECYCLE_STATES = ("unconfigured", "inactive", "active", "finalized")


@dataclass
class NodePipeline:
    """The configured node's parts: stream (model), queue, counters, tick statistics, diagnostics."""

    settings: NodeSettings
    stream: StreamingAnticipator
    queue: FrameQueue
    bad_images: KindCounter
    frame_errors: KindCounter
    tick_errors: KindCounter
    missed_frames: MissedFrameEstimator
    overruns: TickOverrunCounter
    ticks: TickStats
    diagnostics: NodeDiagnostics
    tick_period_ns: int
    images_received: int = 0
    frame_id: str = ""  # frame id of the last frame handed to the stream

    @classmethod
    def build(cls, settings: NodeSettings, *, forecaster: Forecaster | None = None,
              class_names: Sequence[str] | None = None, info: Callable[[str], object],
              warning: Callable[[str], object], error: Callable[[str], object]) -> "NodePipeline":
        """Load the model and assemble the parts; :class:`~actfusion_ros.builder.StartupError` says why not.

        ``info`` / ``warning`` / ``error``: the node's log (progress lines, bad images and rejected frames
        once per kind, failed ticks once per kind)."""
        stream = build_anticipator(settings, forecaster=forecaster, class_names=class_names, log=info)
        queue = FrameQueue(settings.queue_size)
        bad_images = KindCounter("bad image skipped", warning)
        frame_errors = KindCounter("frame rejected by the stream", warning)
        tick_errors = KindCounter("tick failed", error)
        missed_frames = MissedFrameEstimator(seconds_to_ns(settings.stream.episode_gap_s))
        period_ns = int(round(NS_PER_S / settings.tick_rate_hz))
        overruns = TickOverrunCounter(period_ns)
        ticks = TickStats()
        pipeline: NodePipeline | None = None
        diagnostics = NodeDiagnostics(
            stream, queue=queue, missed_frames=missed_frames, bad_images=bad_images, frame_errors=frame_errors,
            tick_errors=tick_errors, ticks=ticks, overruns=overruns,
            images_received=lambda: pipeline.images_received if pipeline is not None else 0)
        pipeline = cls(settings, stream, queue, bad_images, frame_errors, tick_errors, missed_frames, overruns,
                       ticks, diagnostics, period_ns)
        return pipeline

def release_device_memory() -> None:
    """Collect garbage and, when torch is loaded and CUDA available, empty its cache (never imports torch)."""
    gc.collect()
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - freeing memory is best effort, never a failed transition
        pass


class FeatureWorker:
    """A thread feeding the queue's frames to the stream (decoding and the extractor run here).

    Each worker has its own stop flag, so one still busy with a slow frame after :meth:`stop` gave up on
    it never takes frames queued after a later activation. ``on_error(kind, err)`` counts a frame the
    stream refused (never called once stopping began: the node may be gone by then).
    """

    def __init__(self, pipeline: NodePipeline, on_error: Callable[[str, BaseException], object]) -> None:
        self._pipeline = pipeline
        self._on_error = on_error
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="actfusion_features", daemon=True)

    def start(self) -> "FeatureWorker":
        self._pipeline.queue.reopen()
        self.thread.start()
        return self

    def _run(self) -> None:
        p = self._pipeline
        while not self._stop.is_set():
            item = p.queue.get()
            if item is None or self._stop.is_set():
                continue
            stamp_ns, image, frame_id = item
            try:
                p.stream.push_encoded(stamp_ns, image)
            except Exception as err:  # noqa: BLE001 - counted and logged once per kind, never fatal
                if not self._stop.is_set():
                    self._on_error(type(err).__name__, err)
                continue
            p.frame_id = frame_id

    def signal_stop(self) -> None:
        """Take no more frames (the queue is closed, which wakes a waiting worker)."""
        self._stop.set()
        self._pipeline.queue.close()

    def stop(self, timeout_s: float) -> bool:
        """:meth:`signal_stop`, then wait at most ``timeout_s`` for the frame in progress; True when ended."""
        self.signal_stop()
        if self.thread is threading.current_thread() or not self.thread.is_alive():
            return True
        self.thread.join(timeout_s)
        return not self.thread.is_alive()


def lifecycle_status(state: str, values: tuple[str, str, dict[str, Any]] | None,
                     configure_error: str | None) -> tuple[str, str, dict[str, Any]]:
    """The node's /diagnostics ``(level, message, values)`` in lifecycle ``state``.

    ``values``: the configured pipeline's status (None when unconfigured); ``configure_error``: why the
    last configure failed (None if it did not). Unconfigured: ERROR after a failed configure, else WARN;
    inactive: OK (model loaded, not processing); active: the pipeline's own status. Every status has the
    key ``lifecycle_state``."""
    if values is None:
        if configure_error:
            why = " ".join(configure_error.split())
            return "error", f"unconfigured: configure failed: {why}", {"lifecycle_state": state}
        return "warn", f"{state}: no model loaded", {"lifecycle_state": state}
    level, message, pipeline_values = values
    pipeline_values = {"lifecycle_state": state, **pipeline_values}
    if state != "active":
        return "ok", f"{state}: model loaded, not processing images", pipeline_values
    return level, message, pipeline_values
