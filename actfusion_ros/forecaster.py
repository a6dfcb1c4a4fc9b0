"""The former name of :mod:`actfusion_ros.stream_model` (the model behind the stream), kept as a re-export only
for ``tests/test_runtime.py`` (issue 20 edits it) until it imports :mod:`actfusion_ros.stream_model`; then delete it."""
from actfusion_ros.stream_model import ForecasterError, ModelForecaster

__all__ = ["ForecasterError", "ModelForecaster"]
