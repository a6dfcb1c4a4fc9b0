"""Feature provenance: dataset record, copied into checkpoints, compared by consumers."""
from __future__ import annotations

import pytest

from actfusion_model.features.pipeline import (
    FeaturePipeline,
    PipelineMismatch,
    check_pipeline,
    checkpoint_pipeline,
    read_dataset_pipeline,
    write_dataset_pipeline,
)


def test_runtime_only_options_do_not_change_the_identity() -> None:
    a = FeaturePipeline.of("i3d_rgb", 2.0, {"clip_frames": 16, "device": "cuda", "weights": "/x.pt"})
    b = FeaturePipeline.of("i3d_rgb", 2.0, {"clip_frames": 16, "device": "cpu", "batch_size": 8})
    assert a == b and a.differences(b) == []
    c = FeaturePipeline.of("i3d_rgb", 2.5, {"clip_frames": 8})
    assert a.differences(c) == ["feature_rate_hz: 2 != 2.5",
                                "extractor_kwargs: {'clip_frames': 16} != {'clip_frames': 8}"]


def test_dataset_refuses_features_from_two_pipelines(tmp_path) -> None:
    p = FeaturePipeline.of("color_layout", 4.0, {"grid": 4})
    write_dataset_pipeline(tmp_path, p)
    write_dataset_pipeline(tmp_path, p)  # the same again is fine
    assert read_dataset_pipeline(tmp_path) == p
    with pytest.raises(PipelineMismatch, match="extractor: 'color_layout' != 'resnet18'"):
        write_dataset_pipeline(tmp_path, FeaturePipeline.of("resnet18", 4.0))
    assert read_dataset_pipeline(tmp_path / "nowhere") is None


def test_checkpoint_record_round_trip_and_check() -> None:
    p = FeaturePipeline.of("color_layout", 4.0, {"grid": 4, "bins": 8})
    assert checkpoint_pipeline({"pipeline": p.to_dict()}) == p
    assert checkpoint_pipeline({}) is None
    check_pipeline(None, p, what="x")  # nothing recorded: nothing to check
    check_pipeline(p, p, what="x")
    with pytest.raises(PipelineMismatch, match="model.pt was trained on features from another pipeline"):
        check_pipeline(p, FeaturePipeline.of("color_layout", 2.0, {"grid": 4, "bins": 8}), what="model.pt")
