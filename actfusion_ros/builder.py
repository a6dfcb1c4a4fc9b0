"""One builder for the deployed pipeline: typed node settings -> a ready :class:`StreamingAnticipator`.

:func:`build_anticipator` assembles extractor + forecaster + stream from :class:`NodeSettings` and
checks that they fit together (feature pipeline, feature size, class count). ``actfusion_node`` and
``actfusion-replay --params`` both call it, so a replay of a params file runs exactly the deployment
the node runs. ROS-free.

Thread counts (``num_threads`` 0, the default): the node's inference gets the cores the machine can give
without oversubscription, :func:`default_threads` = ``max(1, usable CPUs - 2)``: one core stays with the
feature worker (decoding, the extractor) and one with the ROS executor (image callback, publishing,
/diagnostics). Eager torch runs on that many intra-op threads (process-wide); ONNX Runtime (by name or chosen
by backend ``auto``) on :func:`onnxruntime_threads`: that budget shared by the ``sample_workers`` concurrent
calls, and 1 for narrow decoders as its own ``auto`` picks. ``num_threads`` > 0 sets both, as before.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from actfusion_model.labels import load_class_names
from actfusion_ros.node_params import NodeSettings
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import Forecaster

__all__ = ["ORT_NARROW_DEC_DIM", "RESERVED_CORES", "StartupError", "build_anticipator", "build_forecaster",
           "default_threads", "onnxruntime_threads", "usable_cpus"]

#: Cores left to the node's other threads when ``num_threads`` is 0: the feature worker's and the executor's.
RESERVED_CORES = 2
#: Decoders narrower than this run on one ONNX Runtime thread (its ``intra_op_threads="auto"``: handing each of
#: their many small ops to a second thread cost more than it saved; OnnxRuntimeBackend).
ORT_NARROW_DEC_DIM = 64


class StartupError(RuntimeError):
    """The pipeline cannot be built (invalid parameters, model or files); the message says why."""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads(cpu_count: int | None = None) -> int:
    """The inference threads when ``num_threads`` is 0: ``max(1, cpus - RESERVED_CORES)`` (``cpu_count``:
    default :func:`usable_cpus`), so the inference, the feature worker and the executor each have a core."""
    cpus = usable_cpus() if cpu_count is None else int(cpu_count)
    return max(1, cpus - RESERVED_CORES)


def onnxruntime_threads(num_threads: int, *, sample_workers: int = 1, dec_dim: int | None = None,
                        cpu_count: int | None = None) -> int:
    """ONNX Runtime's intra-op threads per call: ``num_threads`` when set (> 0); else 1 for a decoder narrower
    than :data:`ORT_NARROW_DEC_DIM` (``dec_dim``; None: not known), else :func:`default_threads` shared by the
    ``sample_workers`` calls that run at once: ``max(1, default_threads // sample_workers)``."""
    if num_threads:
        return int(num_threads)
    if dec_dim is not None and dec_dim < ORT_NARROW_DEC_DIM:
        return 1
    return max(1, default_threads(cpu_count) // max(1, int(sample_workers)))


def build_anticipator(settings: NodeSettings, *, forecaster: Forecaster | None = None,
                      class_names: Sequence[str] | None = None,
                      log: Callable[[str], object] | None = None) -> StreamingAnticipator:
    """The stream the settings describe; raises :class:`StartupError` with a readable message.

    ``forecaster``: use this one instead of loading the model (tests, benchmarks); ``class_names`` then
    default to ``forecaster.class_names``. ``log`` receives progress lines ("loading the model").
    torch's CPU threads are set here, once per process (``num_threads``; :mod:`actfusion_model.torch_threads`).
    """
    from actfusion_model.features import build_extractor
    from actfusion_model.features.pipeline import FeaturePipeline, PipelineMismatch, check_pipeline
    from actfusion_model.torch_threads import set_process_threads

    s = settings
    set_process_threads(s.num_threads or None)
    try:
        extractor = build_extractor(s.extractor, **s.extractor_kwargs)
    except (TypeError, ValueError) as err:
        raise StartupError(f"extractor {s.extractor!r} with {s.extractor_kwargs}: {err}") from None
    names = class_names
    if names is None and s.class_names_file:
        try:
            names = load_class_names(s.class_names_file)
        except (OSError, ValueError) as err:
            raise StartupError(f"class_names_file: {err}") from None
    if forecaster is None:
        if log is not None:
            log("loading the model")
        forecaster = build_forecaster(s, extractor.dim, names)
    reason = getattr(getattr(forecaster, "auto_choice", None), "reason", None)
    if isinstance(reason, str) and log is not None:
        log(f"backend auto: {reason}")  # what backend auto chose and why (also in /diagnostics: backend_auto)
    if names is None:
        names = list(forecaster.class_names)
    try:
        check_pipeline(forecaster.pipeline,
                       FeaturePipeline.of(s.extractor, s.stream.feature_rate_hz, s.extractor_kwargs),
                       what=f"checkpoint {s.checkpoint!r}")
    except PipelineMismatch as err:
        raise StartupError(str(err)) from None
    if forecaster.input_dim is not None and forecaster.input_dim != extractor.dim:
        raise StartupError(f"the model expects {forecaster.input_dim}-dimensional features but extractor "
                           f"{extractor!r} gives {extractor.dim}; choose the extractor (and "
                           f"extractor_kwargs) the checkpoint was trained with")
    if len(names) != forecaster.num_classes:
        raise StartupError(f"{len(names)} class names (class_names_file={s.class_names_file!r}) for "
                           f"a model with {forecaster.num_classes} classes")
    try:
        return StreamingAnticipator(s.stream, extractor, forecaster, names)
    except (TypeError, ValueError) as err:
        raise StartupError(str(err)) from None


def build_forecaster(settings: NodeSettings, input_dim: int, class_names: Sequence[str] | None) -> Forecaster:
    """The :class:`~actfusion_ros.stream_model.ModelForecaster` the settings name (backend, files, seed): a
    backend whose registry entry runs a checkpoint loads ``checkpoint``, one that runs an export ``onnx_dir``.

    Backend ``auto`` (:mod:`actfusion_model.runtime.auto`) exports the checkpoint's graphs once (cached by
    content and export options, ``$ACTFUSION_CACHE_DIR`` or ``~/.cache/actfusion_ros``) and starts the fastest
    backend the device allows; the forecaster keeps the choice as ``auto_choice`` (:func:`build_anticipator`
    logs it in one line, ``backend auto: <chosen> on <device>: <reason>``). With ``random_weights`` it runs
    eager torch (a tiny untrained test model: nothing worth exporting), on the CPU unless ``device`` names a
    GPU. Thread counts: the module docstring."""
    from actfusion_model.checkpoint import CheckpointError, load_checkpoint
    from actfusion_model.runtime.registry import CHECKPOINT, backend_entry
    from actfusion_model.torch_threads import set_process_threads
    from actfusion_ros.stream_model import DEFAULT_RANDOM_CLASSES, ForecasterError, ModelForecaster

    s = settings
    try:
        entry = backend_entry(s.backend)
        if s.random_weights:
            forecaster = ModelForecaster.random_weights(
                input_dim=input_dim, class_names=class_names or DEFAULT_RANDOM_CLASSES, steps=s.ddim_steps,
                seed=s.seed, device="cpu" if s.device == "auto" else s.device, num_samples=s.num_samples)
            if entry.name == "auto":
                forecaster.auto_choice = _random_weights_choice(forecaster)
        elif entry.runs == CHECKPOINT:
            ckpt = load_checkpoint(s.checkpoint)
            threads = onnxruntime_threads(s.num_threads, sample_workers=s.sample_workers,
                                          dec_dim=ckpt.config.dec_dim)
            options = entry.options_from(threads=threads, engine_dir=s.engine_dir or None,
                                         sample_workers=s.sample_workers)
            forecaster = ModelForecaster.from_checkpoint(ckpt, backend=entry.name, device=s.device,
                                                         steps=s.ddim_steps, seed=s.seed, class_names=class_names,
                                                         num_samples=s.num_samples, backend_options=options)
        else:
            threads = onnxruntime_threads(s.num_threads, sample_workers=s.sample_workers,
                                          dec_dim=_export_dec_dim(s.onnx_dir))
            forecaster = ModelForecaster.from_export(s.onnx_dir, backend=entry.name, device=s.device,
                                                     steps=s.ddim_steps, seed=s.seed, class_names=class_names,
                                                     engine_dir=s.engine_dir or None, threads=threads,
                                                     num_samples=s.num_samples, sample_workers=s.sample_workers)
    except (CheckpointError, ForecasterError, ValueError, RuntimeError) as err:
        raise StartupError(f"cannot load the model: {err}") from None
    if forecaster.backend == "torch" and not s.num_threads:
        set_process_threads(default_threads())  # eager torch: the cores the feature worker and executor leave
    return forecaster


def _random_weights_choice(forecaster: Any) -> Any:
    """The :class:`~actfusion_model.runtime.auto.AutoChoice` of backend auto with ``random_weights``."""
    from actfusion_model.runtime.auto import AutoChoice

    device = str(forecaster.device)
    return AutoChoice(forecaster.runtime, "torch", device, f"torch on {device}: random_weights (a tiny untrained "
                      f"test model; nothing exported)", None, False)


def _export_dec_dim(onnx_dir: str) -> int | None:
    """The decoder width an ``actfusion-export`` directory's manifest records (None when it cannot be read:
    the backend then says why)."""
    from actfusion_model.export_manifest import read_manifest

    try:
        return int(read_manifest(onnx_dir, verify_hashes=False)["config"]["dec_dim"])
    except Exception:  # noqa: BLE001 - the backend reports an unreadable export
        return None
