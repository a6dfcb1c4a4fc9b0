"""The built-in backends' names, for the callers that still import them from here (the replay CLI's
``--backend`` choices). The one list is the registry's: :mod:`actfusion_model.runtime.registry`."""
from __future__ import annotations

from actfusion_model.runtime.registry import BACKENDS, canonical_backend

__all__ = ["BACKENDS", "canonical_backend"]
