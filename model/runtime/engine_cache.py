"""Cache of serialized TensorRT engines, keyed so that a stale engine is never silently reused.

An engine is only valid for the ONNX graph, TensorRT version, GPU model (name and compute capability),
optimization profile and precision it was built with. Beside ``X.engine`` a JSON sidecar
``X.engine.json`` records that key plus the engine file's sha256. :func:`ensure_engine`:

- no engine (or no sidecar): build;
- key equal and the engine file matches its recorded sha256: reuse;
- engine file changed behind the sidecar's back (truncated copy, manual edit): rebuild;
- key differs only in build inputs (ONNX hash, TensorRT version, profile, precision): rebuild, logging what
  changed;
- key differs in the GPU: refuse with :class:`EngineMismatchError` naming both GPUs (an engine directory
  copied from another machine is a deployment mistake; rebuilding can take minutes on a small board),
  unless ``allow_gpu_change=True``.

Pure Python: nothing here imports TensorRT, so the policy is tested on any machine.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Callable

from actfusion_model.io import atomic_write_text

_LOG = logging.getLogger(__name__)
SIDECAR_FORMAT = "actfusion_ros/trt-engine/1"
GPU_FIELDS = ("gpu_name", "compute_capability")


class EngineMismatchError(RuntimeError):
    """A cached engine was built for another GPU (or is otherwise unusable and may not be rebuilt)."""


@dataclass(frozen=True, kw_only=True)
class EngineKey:
    """Everything a serialized engine depends on."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "8.7" (Orin), "9.0" (H100/H200)
    min_length: int
    opt_length: int
    max_length: int
    fp16: bool  # the precision: the graphs of an fp16 export (strongly typed networks keep the graph's types)
    opt_samples: int = 1  # the sample axis (batched denoise step only)
    max_samples: int = 1

    def differences(self, other: "EngineKey") -> list[str]:
        """``field: cached != current`` for every field that differs."""
        return [f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def gpu_differs(self, other: "EngineKey") -> bool:
        return any(getattr(self, f) != getattr(other, f) for f in GPU_FIELDS)

    @property
    def gpu(self) -> str:
        return f"{self.gpu_name} (sm {self.compute_capability})"

    @classmethod
    def from_dict(cls, data: dict) -> "EngineKey":
        """From a sidecar's key; fields added later with defaults (the sample axis) may be absent."""
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"engine key lacks {missing}")
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class CacheStatus:
    """Result of :func:`inspect_engine`: ``state`` is 'hit', 'missing', 'corrupt' or 'stale'."""

    state: str
    reason: str
    cached_key: EngineKey | None = None


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inspect_engine(engine_path: str | Path, key: EngineKey) -> CacheStatus:
    """Compare the engine at ``engine_path`` and its sidecar with ``key`` (reads files, builds nothing)."""
    engine_path = Path(engine_path)
    side = sidecar_path(engine_path)
    if not engine_path.is_file():
        return CacheStatus("missing", f"no engine at {engine_path}")
    if not side.is_file():
        return CacheStatus("missing", f"engine {engine_path} has no sidecar {side.name}; provenance unknown")
    try:
        data = json.loads(side.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        cached = EngineKey.from_dict(data["key"])
        recorded = data["engine_sha256"]
    except (ValueError, KeyError, TypeError) as err:  # json.JSONDecodeError is a ValueError
        return CacheStatus("corrupt", f"unreadable sidecar {side}: {err}")
    if _sha256(engine_path) != recorded:
        return CacheStatus("corrupt", f"{engine_path} does not match the sha256 in {side.name}", cached)
    diffs = cached.differences(key)
    if diffs:
        return CacheStatus("stale", "; ".join(diffs), cached)
    return CacheStatus("hit", "key and engine hash match", cached)


def write_sidecar(engine_path: str | Path, key: EngineKey, *, build_seconds: float | None = None) -> None:
    """Record ``key`` and the engine file's sha256 beside it (call after the engine is written)."""
    engine_path = Path(engine_path)
    payload = {"format": SIDECAR_FORMAT, "key": asdict(key), "engine_sha256": _sha256(engine_path),
               "engine_bytes": engine_path.stat().st_size, "built_unix": time.time(),
               "build_seconds": build_seconds}
    atomic_write_text(sidecar_path(engine_path), json.dumps(payload, indent=2) + "\n")


def ensure_engine(engine_path: str | Path, key: EngineKey, build: Callable[[Path], None], *,
                  force: bool = False, allow_gpu_change: bool = False, may_build: bool = True) -> tuple[Path, str]:
    """Return ``(engine_path, action)`` with a valid engine for ``key`` on disk; action is 'reused' or 'built'.

    ``build(path)`` must write the serialized engine to ``path`` (atomically). See the module docstring
    for the policy; ``force`` rebuilds unconditionally; ``may_build=False`` turns every would-be build
    into an :class:`EngineMismatchError` that says why.
    """
    engine_path = Path(engine_path)
    status = inspect_engine(engine_path, key)
    if status.state == "hit" and not force:
        return engine_path, "reused"
    if not may_build:
        raise EngineMismatchError(f"no usable TensorRT engine at {engine_path} ({status.state}: {status.reason}) "
                                  f"and building is disabled; run actfusion-build-engine first")
    if status.state == "stale" and status.cached_key is not None and status.cached_key.gpu_differs(key) \
            and not (allow_gpu_change or force):
        raise EngineMismatchError(
            f"{engine_path} was built for {status.cached_key.gpu}, this GPU is {key.gpu}; refusing to use it "
            f"(differences: {status.reason}). Rebuild it here with actfusion-build-engine --force, or pass "
            f"allow_gpu_change=True.")
    if status.state != "missing" or force:
        _LOG.warning("rebuilding TensorRT engine %s: %s", engine_path,
                     "forced" if force and status.state == "hit" else f"{status.state}: {status.reason}")
    sidecar_path(engine_path).unlink(missing_ok=True)  # a crash mid-build must not leave a valid-looking pair
    start = time.perf_counter()
    build(engine_path)
    if not engine_path.is_file():
        raise RuntimeError(f"engine build reported success but wrote nothing at {engine_path}")
    write_sidecar(engine_path, key, build_seconds=time.perf_counter() - start)
    return engine_path, "built"
