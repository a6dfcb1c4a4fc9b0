"""Frame-feature extractors: one interface for offline feature files and the online node.

``build_extractor(name, **kwargs)`` constructs an extractor by name; heavy backbones are imported
lazily so that the cheap ones never pull in torch. The CNN extractors (``i3d_rgb``, ``resnet18``,
``resnet50``) take ``weights=PATH`` and refuse to start without it unless
``allow_random_weights=True``; see ``docs/features.md``.
"""
from __future__ import annotations

from importlib import import_module

from actfusion_model.features.base import (
    CausalFeatureStream,
    FeatureError,
    FeatureExtractor,
    FrameError,
    FrameShapeChanged,
    check_frame,
    check_frames,
)

__all__ = ["CausalFeatureStream", "FeatureError", "FeatureExtractor", "FrameError", "FrameShapeChanged",
           "available_extractors", "build_extractor", "check_frame", "check_frames"]


def _registry() -> dict[str, str]:
    """Extractor name -> ``"module:ClassName"`` (imported only when built)."""
    return {
        "color_layout": "actfusion_model.features.simple:ColorLayoutExtractor",
        "i3d_rgb": "actfusion_model.features.i3d:I3DRGBExtractor",
        "resnet18": "actfusion_model.features.resnet:ResNet18Extractor",
        "resnet50": "actfusion_model.features.resnet:ResNet50Extractor",
    }


def available_extractors() -> list[str]:
    """Names accepted by :func:`build_extractor`, sorted."""
    return sorted(_registry())


def build_extractor(name: str, **kwargs: object) -> FeatureExtractor:
    """Build the extractor registered as ``name`` with constructor ``kwargs``.

    Raises ``ValueError`` naming the unknown name and the available ones.
    """
    target = _registry().get(name)
    if target is None:
        raise ValueError(f"unknown feature extractor {name!r}; "
                         f"available: {', '.join(available_extractors())}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(import_module(module_name), class_name)
    extractor = cls(**kwargs)
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(f"{target} did not build a FeatureExtractor (got {type(extractor).__name__})")
    return extractor
