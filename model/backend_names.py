"""The names of the inference backends: the one list, torch-free so that parameter validation and CLIs can
import it without loading a runtime (:mod:`actfusion_model.runtime` implements them)."""
from __future__ import annotations

#: Canonical backend names, in the order docs and CLIs list them.
BACKENDS = ("torch", "onnxruntime", "tensorrt")

#: Accepted spellings -> canonical name.
ALIASES = {"torch": "torch", "pytorch": "torch", "onnxruntime": "onnxruntime", "ort": "onnxruntime",
           "onnx": "onnxruntime", "tensorrt": "tensorrt", "trt": "tensorrt"}

#: Backends that run an ``actfusion-export`` directory (the others run a checkpoint).
EXPORT_BACKENDS = ("onnxruntime", "tensorrt")


def canonical_backend(kind: str) -> str | None:
    """The canonical name of ``kind`` (any accepted spelling, any case), or None if unknown."""
    return ALIASES.get(str(kind).lower())
