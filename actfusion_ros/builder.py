"""One builder for the deployed pipeline: typed node settings -> a ready :class:`StreamingAnticipator`.

:func:`build_anticipator` assembles extractor + forecaster + stream from :class:`NodeSettings` and
checks that they fit together (feature pipeline, feature size, class count). ``actfusion_node`` and
``actfusion-replay --params`` both call it, so a replay of a params file runs exactly the deployment
the node runs. ROS-free.
"""
from __future__ import annotations

from typing import Callable, Sequence

from actfusion_model.labels import load_class_names
from actfusion_ros.node_params import NodeSettings
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import Forecaster

__all__ = ["StartupError", "build_anticipator", "build_forecaster"]


class StartupError(RuntimeError):
    """The pipeline cannot be built (invalid parameters, model or files); the message says why."""


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
    backend whose registry entry runs a checkpoint loads ``checkpoint``, one that runs an export ``onnx_dir``."""
    from actfusion_model.checkpoint import CheckpointError
    from actfusion_model.runtime.registry import CHECKPOINT, backend_entry
    from actfusion_ros.stream_model import DEFAULT_RANDOM_CLASSES, ForecasterError, ModelForecaster

    s = settings
    try:
        if s.random_weights:
            return ModelForecaster.random_weights(
                input_dim=input_dim, class_names=class_names or DEFAULT_RANDOM_CLASSES, steps=s.ddim_steps,
                seed=s.seed, device=s.device, num_samples=s.num_samples)
        entry = backend_entry(s.backend)
        if entry.runs == CHECKPOINT:
            return ModelForecaster.from_checkpoint(s.checkpoint, backend=entry.name, device=s.device,
                                                   steps=s.ddim_steps, seed=s.seed, class_names=class_names,
                                                   num_samples=s.num_samples)
        return ModelForecaster.from_export(s.onnx_dir, backend=entry.name, device=s.device,
                                           steps=s.ddim_steps, seed=s.seed, class_names=class_names,
                                           engine_dir=s.engine_dir or None, threads=s.num_threads or None,
                                           num_samples=s.num_samples, sample_workers=s.sample_workers)
    except (CheckpointError, ForecasterError, ValueError, RuntimeError) as err:
        raise StartupError(f"cannot load the model: {err}") from None
