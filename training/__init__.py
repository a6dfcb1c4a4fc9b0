"""Training-side utilities: MS-TCN data reading, targets, metrics, evaluation CLI and synthetic data.

Modules: :mod:`training.metrics` (Acc/Edit/F1, MoC), :mod:`training.data` (dataset reader, targets),
:mod:`training.synthetic` (label-derived features), CLIs ``python -m training.evaluate`` and
``python -m training.make_dataset``.
"""
