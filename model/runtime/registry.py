"""The inference backends, one entry each: the module that implements it, what it runs, the device kinds it
runs on, the options it accepts (with their defaults) and the deployment settings it takes.

Everything that must know the backends reads this table: :func:`load_backend`, the node's parameter
validation (:mod:`actfusion_ros.node_params`), the forecaster's option mapping
(:mod:`actfusion_ros.forecaster`) and the builder (:mod:`actfusion_ros.builder`). **A new backend is one
module** (a loader that returns a :class:`~actfusion_model.forecast.Backend`) **plus one** :class:`BackendEntry`
in :data:`_BUILT_IN` (or, from outside the package, one :func:`register` call).

Torch-free: a backend's module is imported only when that backend is loaded, so optional packages
(onnxruntime, tensorrt) are needed only by the backend that uses them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import import_module
from types import MappingProxyType
from typing import Any, Mapping, Sequence

__all__ = ["AUTO", "BACKENDS", "CHECKPOINT", "EXPORT", "SETTINGS", "BackendEntry", "BackendError", "backend_entry",
           "backend_names", "canonical_backend", "load_backend", "register", "unregister"]

#: What a backend runs: an actfusion checkpoint (or an ActFusion model), or an ``actfusion-export`` directory.
CHECKPOINT, EXPORT = "checkpoint", "export"

#: The deployment settings a backend may take (node parameters / forecaster arguments), each under an option
#: name of its own: CPU inference threads, the TensorRT engine cache, concurrent sample chunks.
SETTINGS = ("threads", "engine_dir", "sample_workers")


class BackendError(RuntimeError):
    """A backend cannot be created or run (unknown name or option, missing package or device, bad files,
    wrong shapes)."""


@dataclass(frozen=True)
class BackendEntry:
    """One backend.

    ``name``: canonical name (``aliases``: other accepted spellings; any case). ``loader``:
    ``"module:callable"``, called as ``loader(source, device=..., **options)`` (``class_names=`` too for a
    :data:`CHECKPOINT` backend) and returning a :class:`~actfusion_model.forecast.Backend`. ``runs``:
    :data:`CHECKPOINT` or :data:`EXPORT`. ``devices``: the device kinds it runs on, the first its default.
    ``options``: every option the loader accepts besides ``device`` / ``class_names``, with its default.
    ``settings``: deployment setting (one of :data:`SETTINGS`) -> the option it sets on this backend.
    """

    name: str
    loader: str
    runs: str
    devices: tuple[str, ...]
    options: Mapping[str, Any]
    settings: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if self.runs not in (CHECKPOINT, EXPORT):
            problems.append(f"runs must be {CHECKPOINT!r} or {EXPORT!r}, got {self.runs!r}")
        if not self.devices:
            problems.append("devices must name at least one device kind")
        if ":" not in self.loader:
            problems.append(f"loader must be 'module:callable', got {self.loader!r}")
        for setting, option in self.settings.items():
            if setting not in SETTINGS:
                problems.append(f"setting {setting!r} is not one of {', '.join(SETTINGS)}")
            if option not in self.options:
                problems.append(f"setting {setting!r} names option {option!r}, which is not among its options")
        if problems:
            raise ValueError(f"backend entry {self.name!r}: " + "; ".join(problems))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    @property
    def default_device(self) -> str:
        return self.devices[0]

    def device_problem(self, device: Any) -> str | None:
        """Why this backend cannot run on ``device`` (a string such as ``cuda:1`` or a ``torch.device``); None
        when it can."""
        kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
        if kind in self.devices:
            return None
        return f"backend {self.name} runs on {' or '.join(self.devices)}, got {str(device)!r}"

    def options_from(self, **settings: Any) -> dict[str, Any]:
        """The options that the deployment ``settings`` (names of :data:`SETTINGS`) give this backend: those
        it takes, under its own option names; a setting left unset (None, 0 or empty) gives none, so the
        backend's default applies."""
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown deployment setting(s) {unknown}; known: {', '.join(SETTINGS)}")
        return {self.settings[name]: value for name, value in settings.items()
                if name in self.settings and value not in (None, 0, "")}

    def load(self, source: Any, *, device: Any = None, class_names: Sequence[str] | None = None,
             **options: Any) -> Any:
        """The backend over ``source`` (see :func:`load_backend`); :class:`BackendError` says what is wrong."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise BackendError(f"backend {self.name} does not take option(s) {', '.join(unknown)}; it takes: "
                               f"{', '.join(self.options) or 'none'}")
        if device is None or (isinstance(device, str) and not device):
            device = self.default_device
        problem = self.device_problem(device)
        if problem is not None:
            raise BackendError(problem)
        if self.runs == CHECKPOINT:
            options["class_names"] = class_names
        elif class_names is not None:
            raise BackendError(f"the {self.name} backend takes class names from the export's manifest")
        module, _, attribute = self.loader.partition(":")
        return getattr(import_module(module), attribute)(source, device=device, **options)


#: ``auto``: the fastest path the machine has for a checkpoint (:mod:`actfusion_model.runtime.auto`: it exports
#: the graphs once, cached, and starts TensorRT, ONNX Runtime or torch; device ``auto`` considers a CUDA GPU).
#: The node's default backend.
AUTO = BackendEntry("auto", "actfusion_model.runtime.auto:load_auto_backend", CHECKPOINT, ("auto", "cpu", "cuda"),
                    options={"cache_dir": None, "precision": "fp32", "threads": None, "sample_workers": 1,
                             "engine_dir": None},
                    settings={"threads": "threads", "engine_dir": "engine_dir", "sample_workers": "sample_workers"})

#: The backends of this package, in the order docs and CLIs list them.
_BUILT_IN = (
    BackendEntry("torch", "actfusion_model.runtime.torch_backend:load_torch_backend", CHECKPOINT, ("cpu", "cuda"),
                 options={"precision": "fp32", "compile": False, "cuda_graphs": False, "graph_cache": 2,
                          "threads": None},
                 aliases=("pytorch",)),
    BackendEntry("onnxruntime", "actfusion_model.runtime.onnx_backend:OnnxRuntimeBackend", EXPORT, ("cpu", "cuda"),
                 options={"providers": "auto", "intra_op_threads": "auto", "inter_op_threads": 1, "spinning": False,
                          "loop_threads": 1, "verify_hashes": True, "sample_chunk": "auto", "sample_workers": 1},
                 settings={"threads": "intra_op_threads", "sample_workers": "sample_workers"},
                 aliases=("ort", "onnx")),
    BackendEntry("tensorrt", "actfusion_model.runtime.tensorrt_backend:TensorRTBackend", EXPORT, ("cuda",),
                 options={"engine_dir": None, "profile": None, "build": True,
                          "allow_gpu_change": False, "workspace_bytes": None},
                 settings={"engine_dir": "engine_dir"},
                 aliases=("trt",)),
    AUTO,
)

_lock = threading.Lock()
_entries: dict[str, BackendEntry] = {entry.name: entry for entry in _BUILT_IN}


def register(entry: BackendEntry) -> BackendEntry:
    """Add ``entry`` to the registry; its name and aliases must be new (:func:`unregister` first to replace)."""
    with _lock:
        taken = {spelling for e in _entries.values() for spelling in (e.name, *e.aliases)}
        clash = sorted({entry.name.lower(), *(a.lower() for a in entry.aliases)} & taken)
        if clash:
            raise ValueError(f"backend name(s) {clash} are registered already")
        _entries[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove the backend ``name`` (any accepted spelling); nothing if it is not registered."""
    with _lock:
        canonical = _canonical(name)
        if canonical is not None:
            del _entries[canonical]


def backend_names() -> tuple[str, ...]:
    """The canonical names of the registered backends, in registration order."""
    with _lock:
        return tuple(_entries)


def canonical_backend(kind: str) -> str | None:
    """The canonical name of ``kind`` (any accepted spelling, any case), or None if no backend has it."""
    with _lock:
        return _canonical(kind)


def backend_entry(kind: str) -> BackendEntry:
    """The entry of ``kind`` (any accepted spelling); :class:`BackendError` naming the registered ones."""
    with _lock:
        canonical = _canonical(kind)
        if canonical is not None:
            return _entries[canonical]
        names = ", ".join(_entries)
    raise BackendError(f"unknown backend {kind!r}; choose from {names}")


def load_backend(kind: str, source: Any, *, device: Any = None, class_names: Sequence[str] | None = None,
                 **options: Any) -> Any:
    """Create a backend.

    ``kind``: a registered backend: ``torch`` (``source``: checkpoint path or ActFusion model),
    ``onnxruntime`` or ``tensorrt`` (``source``: an ``actfusion-export`` directory), ``auto`` (checkpoint or
    model: the fastest of them, :mod:`actfusion_model.runtime.auto`). ``device``: default the entry's first
    device kind (cpu; cuda for tensorrt; auto for auto). ``class_names``: a checkpoint backend's class names
    (export backends read the manifest's). ``options`` go to the backend's loader and must be among the
    entry's, e.g. ``precision``/``compile``/``cuda_graphs`` (torch), ``intra_op_threads``/``sample_chunk``/
    ``sample_workers`` (onnxruntime), ``engine_dir``/``profile`` (tensorrt; its precision is the export's).
    """
    return backend_entry(kind).load(source, device=device, class_names=class_names, **options)


def _canonical(kind: str) -> str | None:
    """:func:`canonical_backend` with the lock held."""
    spelling = str(kind).lower()
    for entry in _entries.values():
        if spelling == entry.name.lower() or spelling in (a.lower() for a in entry.aliases):
            return entry.name
    return None


#: The built-in backends' names (a constant, e.g. for a CLI's choices); :func:`backend_names` is the live list.
BACKENDS = backend_names()
