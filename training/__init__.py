"""Training-side utilities: MS-TCN data reading, targets, metrics, evaluation CLI and synthetic data.

Modules: :mod:`actfusion_training.metrics` (Acc/Edit/F1, MoC), :mod:`actfusion_training.data` (dataset reader, targets),
:mod:`actfusion_training.synthetic` (label-derived features), CLIs ``python -m actfusion_training.evaluate`` and
``python -m actfusion_training.make_dataset``.
"""
