"""Bad input, each met with a clear message and no crash: images, parameter files, checkpoints, engine
caches, class-name files, bags.

Already covered elsewhere and not repeated: conversion of arbitrary raw / compressed payloads
(tests/test_frames.py, hypothesis), each node parameter's type and range (tests/test_node_params.py),
unknown or wrongly typed keys of a training config (tests/test_diffusion_config.py), a config that
disagrees with the data (tests/test_train.py), a checkpoint of another config / shape / truncated /
pickled (tests/test_checkpoint.py), an engine of another GPU or TensorRT version (tests/test_runtime.py),
a missing bag topic and a bag cut at 60 % (tests/test_bags.py).
"""
from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actfusion_ros.stream_types import ForecastOutput
from actfusion_ros.testing.ros_harness import (
    REPO,
    loopback_env,
    make_image,
    ros_skip_reason,
    synthetic_frame,
    unique_domain_id,
    wait_for,
    write_params,
)

S = 1_000_000_000
ROS = ros_skip_reason()
needs_ros = pytest.mark.skipif(ROS is not None, reason=str(ROS))


# ============================================================================ images at the node
class Fixed:
    """Fake model: always class 1 observed, class 2 ahead."""

    num_classes = 3
    class_names = ("idle", "reach", "pour")
    input_dim = None  # any feature size
    pipeline = None

    def __call__(self, observed: np.ndarray, horizon: int) -> ForecastOutput:
        obs = np.full((3, observed.shape[1]), 0.1, np.float32)
        obs[1] = 0.8
        fut = np.full((3, horizon), 0.1, np.float32)
        fut[2] = 0.8
        return ForecastOutput(obs, fut)


def _node(ctx: Any, name: str, **params: Any) -> Any:
    from rclpy.parameter import Parameter

    from actfusion_ros.node.actfusion_node import ActFusionNode

    values = {"random_weights": True, "tick_rate_hz": 50.0, "feature_rate_hz": 10.0, "min_observed_frames": 1,
              "stale_after_s": 100.0, **params}
    return ActFusionNode(context=ctx, node_name=name, forecaster=Fixed(),
                         parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


@needs_ros
def test_malformed_raw_images_are_counted_per_kind_and_skipped(ros_context, capfd) -> None:
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import Image

    node = _node(ros_context, "rawbad")
    executor = MultiThreadedExecutor(num_threads=3, context=ros_context)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    t0 = time.time_ns()
    k = [0]

    def image(size: tuple[int, int] = (48, 64), **change: Any) -> Any:
        msg = make_image(Image, synthetic_frame(k[0], *size), t0 + k[0] * S // 30)
        k[0] += 1
        for name, value in change.items():
            setattr(msg, name, value)
        return msg

    try:
        for _ in range(10):
            node.image_callback(image())
        wait_for(lambda: node.pipeline.stream.stats.published >= 1, 60.0, "a forecast from good images")
        bad = [
            image(encoding="yuv422"), image(encoding="32FC1"), image(encoding=""),          # encodings
            image(height=0), image(width=0),                                               # zero sizes
            image(step=10),                                                                # row shorter than width
            image(data=bytes(64 * 3 * 47)),                                                # one row short
        ]
        stamp_bad = image()
        stamp_bad.header.stamp.nanosec = 1_500_000_000                                     # not a valid stamp
        bad.append(stamp_bad)
        for msg in bad:
            node.image_callback(msg)
        longer = image()
        longer.data = bytes(longer.data) + b"\x00" * 100           # extra bytes beyond step*height: fine
        node.image_callback(longer)
        for _ in range(10):                                        # the camera switches to 32x24 mid-stream
            node.image_callback(image(size=(24, 32)))
        wait_for(lambda: node.pipeline.stream.stats.reset_reasons.get("frame_shape") == 1, 60.0, "the size change")
        published = node.pipeline.stream.stats.published
        wait_for(lambda: node.pipeline.stream.stats.published > published, 60.0, "forecasts after the size change")
        level, _, v = node.diagnostics_values()
        assert v["bad_images"] == len(bad) == 8
        assert {key: n for key, n in v.items() if key.startswith("bad_images.")} == {
            "bad_images.encoding": 3, "bad_images.empty": 2, "bad_images.step": 1, "bad_images.truncated": 1,
            "bad_images.ValueError": 1}
        assert v["images_received"] == k[0] and v["frames_rejected"] == 0 and level == "ok"
        assert node.last_result.observed_stamps_ns.size <= 10   # the new episode holds only 32x24 frames
    finally:
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        spin.join(5.0)
    err = capfd.readouterr().err
    assert err.count("bad image skipped (encoding): unsupported image encoding 'yuv422'") == 1, err[-2000:]
    assert "bad image skipped (ValueError): nanosec must be in 0..999999999" in err


@needs_ros
def test_broken_compressed_images_are_counted_and_skipped(ros_context) -> None:
    from sensor_msgs.msg import CompressedImage

    from actfusion_ros.frames import rgb_to_jpeg

    node = _node(ros_context, "jpegbad", compressed=True)
    try:
        node.close()  # stop the worker: inspect what the callback enqueues
        jpeg = rgb_to_jpeg(synthetic_frame(5), 90)
        zeroed = jpeg[:4] + bytes(len(jpeg) - 6) + b"\xff\xd9"       # header and end marker, garbage inside
        cases = {
            "corrupt": [zeroed, b"\x89PNG\r\n\x1a\n" + bytes(40)],          # undecodable / not a jpeg
            "truncated": [jpeg[: len(jpeg) // 2]],
            "empty": [b""],
        }
        for data in [d for ds in cases.values() for d in ds]:
            node.image_callback(CompressedImage(format="jpeg", data=data))
        node.image_callback(CompressedImage(format="webp", data=jpeg))
        node.image_callback(CompressedImage(format="jpeg", data=jpeg))
        assert node.pipeline.queue.put_count == 1
        assert node.pipeline.bad_images.counts == {"corrupt": 2, "truncated": 1, "empty": 1, "format": 1}
    finally:
        node.destroy_node()


# ============================================================================ parameter files
BAD_TYPES = {"random_weights": True, "ratio": 3, "queue_size": "eight", "tick_rte_hz": 2.0,
             "window_policy": "fifo"}


@needs_ros
def test_bad_parameter_files_stop_the_node_with_exit_2_naming_the_problem(tmp_path: Path) -> None:
    write_params(tmp_path / "types.yaml", BAD_TYPES)
    (tmp_path / "broken.yaml").write_text("/**:\n  ros__parameters:\n    ratio: [1.0, 2.0\n")
    cases = {"types": tmp_path / "types.yaml", "broken": tmp_path / "broken.yaml",
             "missing": tmp_path / "nope.yaml"}
    env = loopback_env(unique_domain_id())
    procs = {name: subprocess.Popen([sys.executable, "-m", "actfusion_ros.node", "--ros-args", "--params-file",
                                     str(path)], cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
             for name, path in cases.items()}
    out = {}
    try:
        for name, proc in procs.items():
            text, _ = proc.communicate(timeout=60)
            out[name] = (proc.returncode, text.decode(errors="replace"))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    rc, text = out["types"]
    assert rc == 2, text
    for expected in ("cannot start: 3 invalid parameter(s)", "ratio: expected double, got int 3 (write e.g. 2.0",
                     "queue_size: expected int, got str 'eight'", "window_policy: 'fifo' is not one of drop_oldest, "
                     "downsample", "ignoring unknown parameter(s) ['tick_rte_hz'] (typo?)"):
        assert expected in text, text
    for name in ("broken", "missing"):
        rc, text = out[name]
        assert rc == 2, text
        assert "Traceback" not in text, text
        assert f"cannot start: failed to initialize rcl: Couldn't parse params file: '--params-file " \
               f"{cases[name]}'" in text, text
    assert "Error parsing" in out["broken"][1] and "Error opening YAML file" in out["missing"][1]


# ============================================================================ model files
@pytest.fixture()
def checkpoint_3_classes(tmp_path: Path) -> Path:
    from actfusion_model.checkpoint import save_checkpoint
    from actfusion_model.config import model_config
    from actfusion_model.features import build_extractor
    from actfusion_model.network import ActFusion

    path = tmp_path / "m3.pt"
    cfg = model_config("tiny", num_classes=3, input_dim=build_extractor("color_layout").dim)
    save_checkpoint(path, ActFusion(cfg), ["idle", "reach", "pour"])
    return path


def test_a_checkpoint_for_another_class_count_is_refused_naming_both(checkpoint_3_classes: Path) -> None:
    from actfusion_model.checkpoint import CheckpointError
    from actfusion_model.config import model_config
    from actfusion_ros.stream_model import ForecasterError, ModelForecaster

    with pytest.raises(ForecasterError, match="5 class names for a model with 3 classes"):
        ModelForecaster.from_checkpoint(checkpoint_3_classes, class_names=list("abcde"))
    with pytest.raises(CheckpointError, match=r"num_classes: 3 != 5"):
        ModelForecaster.from_checkpoint(checkpoint_3_classes,
                                        expected_config=model_config("tiny", num_classes=5, input_dim=120))


@needs_ros
def test_the_node_refuses_class_names_that_do_not_fit_the_checkpoint(ros_context, checkpoint_3_classes: Path,
                                                                     tmp_path: Path) -> None:
    from rclpy.parameter import Parameter

    from actfusion_ros.builder import StartupError
    from actfusion_ros.node.actfusion_node import ActFusionNode

    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\ne\n")

    def start(**params: Any) -> str:
        with pytest.raises(StartupError) as info:
            ActFusionNode(context=ros_context, node_name="ckpt", parameter_overrides=[
                Parameter(k, value=v) for k, v in params.items()])
        return str(info.value)

    assert "cannot load the model: 5 class names for a model with 3 classes" in start(
        checkpoint=str(checkpoint_3_classes), class_names_file=str(names))
    assert f"class_names_file: file not found: {tmp_path / 'missing.txt'}" in start(
        checkpoint=str(checkpoint_3_classes), class_names_file=str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    assert "no class names" in start(checkpoint=str(checkpoint_3_classes),
                                     class_names_file=str(tmp_path / "empty.txt"))
    (tmp_path / "gaps.txt").write_text("0 idle\n2 reach\n3 pour\n")
    assert "class ids must be 0..2" in start(checkpoint=str(checkpoint_3_classes),
                                             class_names_file=str(tmp_path / "gaps.txt"))


def test_class_name_files_errors_name_the_file(tmp_path: Path) -> None:
    from actfusion_model.labels import ClassMapping, LabelError
    from actfusion_ros.node_params import ParameterError, validate_values

    with pytest.raises(ParameterError, match=r"class_names_file: file not found: /no/such/names\.txt"):
        validate_values({"random_weights": True, "class_names_file": "/no/such/names.txt"})
    with pytest.raises(LabelError, match=r"class mapping file not found: .*mapping\.txt"):
        ClassMapping.from_file(tmp_path / "mapping.txt")
    (tmp_path / "mapping.txt").write_text("0 idle\nreach\n")
    with pytest.raises(LabelError, match=r"mapping\.txt:2: expected '<id> <name>', got 'reach'"):
        ClassMapping.from_file(tmp_path / "mapping.txt")


# ============================================================================ engine cache
def _key(**changes: Any) -> Any:
    from actfusion_model.runtime.engine_cache import EngineKey

    base = dict(onnx_sha256="a" * 64, tensorrt_version="10.15.1", gpu_name="NVIDIA Jetson AGX Orin",
                compute_capability="8.7", min_length=16, opt_length=1024, max_length=8192, fp16=False)
    return EngineKey(**{**base, **changes})


def _build(path: Path) -> None:
    path.write_bytes(b"serialized engine " + str(time.perf_counter_ns()).encode())


@pytest.mark.parametrize("sidecar", ["[]", "null", '"engine"', "42", "{not json", "", '{"format": 1}',
                                     '{"format": "actfusion_ros/trt-engine/1", "key": {"gpu_name": "x"}}'])
def test_an_unreadable_engine_sidecar_means_rebuild_not_crash(tmp_path: Path, sidecar: str) -> None:
    from actfusion_model.runtime.engine_cache import ensure_engine, inspect_engine, sidecar_path

    path = tmp_path / "step.engine"
    ensure_engine(path, _key(), _build)
    sidecar_path(path).write_text(sidecar)
    status = inspect_engine(path, _key())
    assert status.state == "corrupt" and f"unreadable sidecar {sidecar_path(path)}" in status.reason
    assert ensure_engine(path, _key(), _build)[1] == "built"
    assert inspect_engine(path, _key()).state == "hit"


def test_an_engine_of_another_tensorrt_version_is_rebuilt_saying_why(tmp_path: Path, caplog) -> None:
    from actfusion_model.runtime.engine_cache import ensure_engine

    path = tmp_path / "step.engine"
    ensure_engine(path, _key(), _build)
    with caplog.at_level(logging.WARNING, logger="actfusion_model.runtime.engine_cache"):
        assert ensure_engine(path, _key(tensorrt_version="10.16.0"), _build)[1] == "built"
    assert "tensorrt_version: '10.15.1' != '10.16.0'" in caplog.text and str(path) in caplog.text


# ============================================================================ bags
needs_rosbags = pytest.mark.skipif(importlib.util.find_spec("rosbags") is None, reason="rosbags not installed")


@pytest.fixture(scope="module")
def bag_frames() -> list[tuple[int, np.ndarray]]:
    from actfusion_ros.tools.world import ActivityWorld

    world = ActivityWorld(width=32, height=24, fps=30.0)
    return [(1_700_000_000 * S + s, rgb) for (s, rgb), _ in zip(world.frames(world.episode(0)), range(20))]


def _read(bag: Path, topic: str) -> list[tuple[int, np.ndarray]]:
    from actfusion_ros.tools.bags import read_images
    return list(read_images(bag, topic))


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))


@needs_rosbags
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_bag_cut_anywhere_is_a_bag_error_or_reads_complete(tmp_path: Path, bag_frames, storage: str) -> None:
    """A recording cut short at 24 points: either BagError naming bag, topic and file, or every frame
    exactly as written (sqlite3 may end in unused pages); never another exception, never altered frames."""
    from actfusion_ros.tools.bags import BagError, write_bag

    bag = write_bag(tmp_path / "bag", storage=storage, images=bag_frames)
    f = _storage_file(bag)
    data = f.read_bytes()
    errors = 0
    for frac in np.linspace(0.02, 0.98, 24):
        f.write_bytes(data[: int(len(data) * frac)])
        try:
            got = _read(bag, "/camera/image_raw")
        except BagError as err:
            errors += 1
            assert f"bag {bag}, topic '/camera/image_raw'" in str(err) and f.name in str(err), str(err)
            continue
        assert len(got) == len(bag_frames)
        for (s1, a), (s2, b) in zip(got, bag_frames):
            assert s1 == s2 and np.array_equal(a, b)
    assert errors >= 22


@needs_rosbags
@pytest.mark.parametrize("storage, encoding", [("sqlite3", "rgb8"), ("sqlite3", "jpeg"), ("mcap", "rgb8"),
                                               ("mcap", "jpeg")])
def test_a_corrupted_bag_never_crashes_the_reader(tmp_path: Path, bag_frames, storage: str, encoding: str) -> None:
    """16 random bytes overwritten at 30 places. Structural damage is a BagError; in sqlite3 damage inside a
    payload may decode to altered pixels (no checksums), in MCAP the chunk CRC-32s catch it, so what reads
    is exactly what was written - see docs/reliability.md. What must never happen: another exception
    type, a wrong frame shape."""
    from actfusion_ros.tools.bags import BagError, write_bag

    bag = write_bag(tmp_path / "bag", storage=storage, images=bag_frames, encoding=encoding)
    topic = "/camera/image_raw" + ("/compressed" if encoding == "jpeg" else "")
    f = _storage_file(bag)
    data = f.read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"error": 0, "read": 0}
    intact = _read(bag, topic)
    for _ in range(30):
        damaged = bytearray(data)
        at = int(rng.integers(0, len(data) - 16))
        damaged[at:at + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        f.write_bytes(bytes(damaged))
        try:
            got = _read(bag, topic)
        except BagError as err:
            outcomes["error"] += 1
            assert f"bag {bag}" in str(err), str(err)
            continue
        outcomes["read"] += 1
        assert len(got) <= len(bag_frames)
        assert all(rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 for _, rgb in got)
        if storage == "mcap":  # checksummed: never altered frames
            assert len(got) == len(intact) and all(
                s == s0 and np.array_equal(rgb, rgb0) for (s, rgb), (s0, rgb0) in zip(got, intact))
    assert outcomes["error"] + outcomes["read"] == 30


def _claiming_8000x8000(jpeg: bytes) -> bytes:
    """A small baseline JPEG whose frame header (SOF0) claims 8000x8000."""
    out = bytearray(jpeg)
    sof = out.index(b"\xff\xc0")
    out[sof + 5:sof + 9] = (8000).to_bytes(2, "big") * 2
    return bytes(out)


@needs_ros
def test_decompression_bombs_and_oversized_frames_are_refused_from_their_header(ros_context,
                                                                                monkeypatch) -> None:
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    from actfusion_ros.frames import rgb_to_jpeg

    decoded = []
    real_decode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    jpeg = rgb_to_jpeg(synthetic_frame(5), 90)
    bomb = _claiming_8000x8000(jpeg)
    # small against what it claims (not a fixed byte count: the size is the JPEG codec's, which varies by release)
    assert len(bomb) == len(jpeg) and 1000 * len(bomb) < 8000 * 8000 * 3
    node = _node(ros_context, "bomb", compressed=True)
    try:
        node.close()  # stop the worker: inspect what the callback enqueues
        for _ in range(3):
            node.image_callback(CompressedImage(format="jpeg", data=bomb))
        assert decoded == [] and node.pipeline.bad_images.counts == {"too_large": 3}
        node.image_callback(CompressedImage(format="jpeg", data=jpeg))
        assert decoded == [] and node.pipeline.queue.put_count == 1   # enqueued encoded: the worker decodes it if used
        stamp_ns, image, _ = node.pipeline.queue._items[0]
        assert image.decode().shape == image.shape and decoded == [1]
        assert node.diagnostics_values()[2]["bad_images.too_large"] == 3
    finally:
        node.destroy_node()
    small = _node(ros_context, "small", max_image_pixels=48 * 64 - 1)  # the parameter reaches the check
    try:
        small.close()
        small.image_callback(make_image(Image, synthetic_frame(0), time.time_ns()))
        huge = make_image(Image, synthetic_frame(0), time.time_ns())
        huge.width, huge.height, huge.step = 8000, 8000, 24000       # 9 KB of data claiming 192 MB
        small.image_callback(huge)
        assert small.pipeline.bad_images.counts == {"too_large": 2} and small.pipeline.queue.put_count == 0
    finally:
        small.destroy_node()


@needs_ros
def test_frames_stamped_far_ahead_of_the_clock_are_rejected_and_reported(ros_context) -> None:
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import Image

    node = _node(ros_context, "ahead", max_future_s=3.0, diagnostics_period_s=3600.0)
    executor = MultiThreadedExecutor(num_threads=3, context=ros_context)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        day = 86_400 * S
        for k in range(5):
            node.image_callback(make_image(Image, synthetic_frame(k), time.time_ns() + day + k * S // 30))
        wait_for(lambda: node.pipeline.stream.stats.future_frames == 5, 60.0, "the five frames a day ahead")
        level, message, v = node.diagnostics_values()
        assert level == "warn" and "5 frame(s) stamped more than max_future_s = 3 s ahead" in message, message
        assert v["future_frames"] == 5 and v["frames_accepted"] == 0 and node.last_result is None
        for k in range(5):
            node.image_callback(make_image(Image, synthetic_frame(k), time.time_ns()))
            time.sleep(1 / 30)
        wait_for(lambda: node.last_result is not None, 60.0, "a forecast from frames stamped now")
        assert node.last_result.stamp_ns < time.time_ns() + 3 * S       # never a forecast from the future
        level, message, v = node.diagnostics_values()
        assert level == "ok" and v["future_frames"] == 5, (level, message)
    finally:
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        spin.join(5.0)


@needs_rosbags
def test_a_bag_holding_a_decompression_bomb_is_refused_without_decoding(tmp_path: Path, monkeypatch) -> None:
    """Bag reading (and so actfusion-replay and actfusion-extract) applies the same header check."""
    import cv2

    from actfusion_ros.frames import rgb_to_jpeg
    from actfusion_ros.tools import bags

    bomb = _claiming_8000x8000(rgb_to_jpeg(synthetic_frame(1), 90))
    monkeypatch.setattr(bags, "rgb_to_jpeg", lambda rgb, quality=95: bomb)
    bag = bags.write_bag(tmp_path / "bomb", encoding="jpeg", images=[(S, synthetic_frame(0))])
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("cv2.imdecode was called"))
    with pytest.raises(bags.BagError, match=r"message 0 .*8000x8000 .* exceeds the limit of 16777216 pixels"):
        list(bags.read_images(bag, "/camera/image_raw/compressed"))
