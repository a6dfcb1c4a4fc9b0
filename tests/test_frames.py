"""Tests for actfusion_ros.frames (message <-> numpy conversion without cv_bridge)."""
from __future__ import annotations

import array
import types
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from actfusion_ros.frames import (
    DEFAULT_MAX_IMAGE_PIXELS,
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    ImageTooLargeError,
    compressed_image_size,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_image_fields,
    rgb_to_jpeg,
)
from actfusion_ros.time_ns import ns_to_stamp_fields, stamp_to_ns

try:  # real rclpy messages (PyPI ROS 2 wheels); optional
    from builtin_interfaces.msg import Time as RclpyTime
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage as RclpyCompressedImage, Image as RclpyImage
except ImportError:  # pragma: no cover - depends on the environment
    RclpyImage = RclpyCompressedImage = RclpyTime = None  # type: ignore[assignment,misc]
    serialize_message = deserialize_message = None  # type: ignore[assignment]

try:  # rosbags messages (numpy uint8 arrays as data); optional
    from rosbags.typesys import Stores, get_typestore

    ROSBAGS_TS: Any = get_typestore(Stores.ROS2_KILTED)
except ImportError:  # pragma: no cover
    ROSBAGS_TS = None

needs_rclpy = pytest.mark.skipif(
    RclpyImage is None,
    reason="rclpy / sensor_msgs not importable (ROS 2 PyPI wheels not installed in this interpreter)",
)
needs_rclpy_and_rosbags = pytest.mark.skipif(
    RclpyImage is None or ROSBAGS_TS is None,
    reason="needs both rclpy (sensor_msgs) and rosbags to compare CDR round trips",
)

LOSSLESS_COLOUR = ("rgb8", "bgr8", "rgba8", "bgra8")
MSG_KINDS = ["ns", pytest.param("rclpy", marks=needs_rclpy)]
# cv2 logs libjpeg warnings on the corrupt inputs below; keep test output readable.
try:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
except AttributeError:  # pragma: no cover
    pass

SETTINGS = settings(deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- helpers
def make_image(kind: str, fields: dict[str, Any]) -> Any:
    """Build an Image stand-in (SimpleNamespace) or a real rclpy Image from fields."""
    if kind == "ns":
        return types.SimpleNamespace(**fields)
    msg = RclpyImage()
    for key, value in fields.items():
        setattr(msg, key, value)  # bytes -> array.array('B'), the fast path
    return msg


def make_compressed(kind: str, fmt: str, data: bytes) -> Any:
    if kind == "ns":
        return types.SimpleNamespace(format=fmt, data=data)
    return RclpyCompressedImage(format=fmt, data=data)


def grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


rgb_images = hnp.arrays(
    np.uint8,
    st.tuples(st.integers(1, 64), st.integers(1, 64), st.just(3)),
)
grey_images = hnp.arrays(np.uint8, st.tuples(st.integers(1, 64), st.integers(1, 64)))


# --------------------------------------------------------------------------- properties
@pytest.mark.parametrize("kind", MSG_KINDS)
@SETTINGS
@given(rgb=rgb_images, encoding=st.sampled_from(LOSSLESS_COLOUR), pad=st.integers(0, 17))
def test_roundtrip_colour_exact(kind: str, rgb: np.ndarray, encoding: str, pad: int) -> None:
    fields = rgb_to_image_fields(rgb, encoding, pad=pad)
    h, w = rgb.shape[:2]
    assert (fields["height"], fields["width"], fields["encoding"]) == (h, w, encoding)
    assert fields["step"] == w * (4 if "a" in encoding else 3) + pad
    assert isinstance(fields["data"], bytes) and len(fields["data"]) == fields["step"] * h
    out = image_to_rgb(make_image(kind, fields))
    assert out.dtype == np.uint8 and out.shape == (h, w, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("kind", MSG_KINDS)
@SETTINGS
@given(grey=grey_images, encoding=st.sampled_from(["mono8", "mono16"]),
       pad=st.integers(0, 17), big=st.booleans())
def test_roundtrip_mono_exact(kind: str, grey: np.ndarray, encoding: str, pad: int,
                              big: bool) -> None:
    fields = rgb_to_image_fields(grey_rgb(grey), encoding, pad=pad, bigendian=big)
    assert fields["is_bigendian"] == int(big and encoding == "mono16")
    out = image_to_rgb(make_image(kind, fields))
    np.testing.assert_array_equal(out, grey_rgb(grey))


@needs_rclpy_and_rosbags
@SETTINGS
@given(rgb=rgb_images, encoding=st.sampled_from(SUPPORTED_ENCODINGS), pad=st.integers(0, 17),
       big=st.booleans())
def test_rclpy_and_rosbags_messages_agree(rgb: np.ndarray, encoding: str, pad: int,
                                          big: bool) -> None:
    """Same CDR bytes through rclpy (array.array data) and rosbags (read-only ndarray)."""
    if encoding.startswith("mono"):
        rgb = grey_rgb(rgb[:, :, 0])
    msg = make_image("rclpy", rgb_to_image_fields(rgb, encoding, pad=pad, bigendian=big))
    assert isinstance(msg.data, array.array)
    rb = ROSBAGS_TS.deserialize_cdr(serialize_message(msg), "sensor_msgs/msg/Image")
    assert isinstance(rb.data, np.ndarray)
    a, b = image_to_rgb(msg), image_to_rgb(rb)
    np.testing.assert_array_equal(a, rgb)
    np.testing.assert_array_equal(b, rgb)


_ENC_OR_JUNK = st.one_of(st.sampled_from(SUPPORTED_ENCODINGS + ("RGB8", "yuv422", "16UC1", "")),
                         st.text(max_size=8))


@pytest.mark.parametrize("kind", MSG_KINDS)
@SETTINGS
@given(height=st.integers(-2, 70), width=st.integers(-2, 70), step=st.integers(-2, 300),
       encoding=_ENC_OR_JUNK, big=st.booleans(), data=st.binary(max_size=4096))
def test_arbitrary_raw_input_is_image_or_clean_error(kind: str, height: int, width: int,
                                                     step: int, encoding: str, big: bool,
                                                     data: bytes) -> None:
    fields = dict(height=height, width=width, step=step, encoding=encoding,
                  is_bigendian=int(big), data=data)
    if kind == "rclpy":  # uint32 fields: rclpy itself rejects negatives on assignment
        assume(min(height, width, step) >= 0)
    msg = make_image(kind, fields)
    try:
        out = image_to_rgb(msg)
    except ImageConversionError as exc:
        assert str(exc)
        return
    assert out.shape == (height, width, 3) and out.dtype == np.uint8


_FORMATS = st.sampled_from(["jpeg", "jpg", "png", "rgb8; jpeg compressed bgr8",
                            "bgr8; png compressed bgr8", "", "tiff", "JPEG",
                            "16UC1; compressedDepth png"])


def _valid_jpeg() -> bytes:
    rng = np.random.default_rng(1)
    return rgb_to_jpeg(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))


def _valid_png() -> bytes:
    ok, enc = cv2.imencode(".png", np.full((8, 8, 3), 77, np.uint8))
    assert ok
    return enc.tobytes()


@st.composite
def compressed_payloads(draw: st.DrawFn) -> bytes:
    """Random bytes, or a valid JPEG/PNG that is truncated and/or has bytes flipped."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    data = bytearray(_valid_jpeg() if draw(st.booleans()) else _valid_png())
    for pos in draw(st.lists(st.integers(0, len(data) - 1), max_size=4)):
        data[pos] ^= draw(st.integers(1, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut])


@pytest.mark.parametrize("kind", MSG_KINDS)
@SETTINGS
@given(fmt=_FORMATS, data=compressed_payloads())
def test_arbitrary_compressed_input_is_image_or_clean_error(kind: str, fmt: str,
                                                            data: bytes) -> None:
    try:
        out = compressed_to_rgb(make_compressed(kind, fmt, data))
    except ImageConversionError as exc:
        assert str(exc)
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8 and out.size > 0


@SETTINGS
@given(ns=st.integers(0, (2**31 - 1) * 10**9 + 999_999_999))
def test_stamp_roundtrip(ns: int) -> None:
    sec, nanosec = ns_to_stamp_fields(ns)
    assert 0 <= nanosec < 10**9
    assert stamp_to_ns(types.SimpleNamespace(sec=sec, nanosec=nanosec)) == ns


# --------------------------------------------------------------------------- explicit cases
@pytest.mark.parametrize("kind", MSG_KINDS)
def test_padded_640x480_rows_sliced_by_step(kind: str) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    step = 640 * 3 + 64
    rows = np.full((480, step), 0xAB, np.uint8)  # junk in the padding
    rows[:, : 640 * 3] = rgb.reshape(480, -1)
    fields = dict(height=480, width=640, encoding="rgb8", is_bigendian=0, step=step,
                  data=rows.tobytes())
    out = image_to_rgb(make_image(kind, fields))
    np.testing.assert_array_equal(out, rgb)
    # the naive reshape fails on exactly this input
    with pytest.raises(ValueError):
        np.frombuffer(fields["data"], np.uint8).reshape(480, 640, 3)


@pytest.mark.parametrize("kind", MSG_KINDS)
def test_bgr_rgb_exact(kind: str) -> None:
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30  # B, G, R
    fields = dict(height=2, width=3, encoding="bgr8", is_bigendian=0, step=9, data=bgr.tobytes())
    out = image_to_rgb(make_image(kind, fields))
    assert out[0, 0].tolist() == [30, 20, 10]
    assert rgb_to_image_fields(out, "bgr8")["data"] == bgr.tobytes()
    bgra = np.dstack([bgr, np.full((2, 3), 99, np.uint8)])
    fields.update(encoding="bgra8", step=12, data=bgra.tobytes())
    assert image_to_rgb(make_image(kind, fields))[1, 2].tolist() == [30, 20, 10]


def test_mono16_respects_endianness() -> None:
    value = np.array([[0x1234, 0xFF00]], dtype=np.uint16)
    for big, dt in ((0, "<u2"), (1, ">u2")):
        msg = types.SimpleNamespace(height=1, width=2, encoding="mono16", is_bigendian=big,
                                    step=4, data=value.astype(dt).tobytes())
        out = image_to_rgb(msg)
        assert out[0, :, 0].tolist() == [0x12, 0xFF]
        assert (out[..., 0] == out[..., 2]).all()


def test_output_is_detached_from_message_buffer() -> None:
    data = bytearray(rgb_to_image_fields(np.full((4, 4, 3), 5, np.uint8))["data"])
    msg = types.SimpleNamespace(height=4, width=4, encoding="rgb8", is_bigendian=0, step=12,
                                data=data)
    out = image_to_rgb(msg)
    data[:] = b"\x00" * len(data)
    assert (out == 5).all()
    out[:] = 9
    assert set(data) == {0}


def test_rosbags_readonly_data_gives_writable_copy() -> None:
    data = np.frombuffer(bytes(range(12)), np.uint8)
    assert not data.flags.writeable
    msg = types.SimpleNamespace(height=2, width=2, encoding="rgb8", is_bigendian=0, step=6,
                                data=data)
    out = image_to_rgb(msg)
    assert out.flags.writeable and out.flags.owndata
    assert out[1, 1].tolist() == [9, 10, 11]


def _raw(**kw: Any) -> types.SimpleNamespace:
    base = dict(height=2, width=2, encoding="rgb8", is_bigendian=0, step=6, data=bytes(12))
    base.update(kw)
    return types.SimpleNamespace(**base)


@pytest.mark.parametrize(
    "msg, pattern",
    [
        (_raw(encoding="yuv422"), r"unsupported image encoding 'yuv422'; supported: rgb8, bgr8"),
        (_raw(width=0), r"non-empty"),
        (_raw(height=0, data=b""), r"non-empty"),
        (_raw(step=5), r"step 5 is smaller than .* = 6"),
        (_raw(data=bytes(11)), r"too short: 11 bytes, need .* = 12"),
        (_raw(data="not bytes"), r"bytes-like"),
        (_raw(data=np.zeros(12, np.float32)), r"dtype uint8"),
        (_raw(height=2.0), r"height must be an integer"),
        (types.SimpleNamespace(encoding="rgb8"), r"no 'height' field"),
    ],
)
def test_raw_errors_are_clear(msg: Any, pattern: str) -> None:
    with pytest.raises(ImageConversionError, match=pattern):
        image_to_rgb(msg)


def test_truncated_raw_data_names_both_sizes() -> None:
    fields = rgb_to_image_fields(np.zeros((480, 640, 3), np.uint8))
    fields["data"] = fields["data"][:-1]
    with pytest.raises(ImageConversionError, match=r"921599 bytes.*921600"):
        image_to_rgb(types.SimpleNamespace(**fields))


@pytest.mark.parametrize("kind", MSG_KINDS)
@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "rgb8; jpeg compressed bgr8", ""])
def test_jpeg_decodes_to_rgb(kind: str, fmt: str) -> None:
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 60, 20  # clearly red
    out = compressed_to_rgb(make_compressed(kind, fmt, rgb_to_jpeg(rgb, quality=95)))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).max() <= 4


@pytest.mark.parametrize("kind", MSG_KINDS)
def test_png_is_exact_and_rgb_target_not_swapped(kind: str) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    ok, png_bgr = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    for fmt in ("png", "bgr8; png compressed bgr8"):
        out = compressed_to_rgb(make_compressed(kind, fmt, png_bgr.tobytes()))
        np.testing.assert_array_equal(out, rgb)
    # encoder fed RGB directly and says so: decoded "BGR" already is RGB
    ok, png_rgb = cv2.imencode(".png", rgb)
    out = compressed_to_rgb(make_compressed(kind, "rgb8; png compressed rgb8", png_rgb.tobytes()))
    np.testing.assert_array_equal(out, rgb)


def test_grey_png_replicated() -> None:
    ok, png = cv2.imencode(".png", np.full((5, 6), 42, np.uint8))
    out = compressed_to_rgb(types.SimpleNamespace(format="mono8; png compressed mono8",
                                                  data=png.tobytes()))
    assert out.shape == (5, 6, 3) and (out == 42).all()


def test_corrupt_jpeg_raises() -> None:
    good = bytearray(_valid_jpeg())
    corrupt = bytes(good[:4]) + b"\x00" * (len(good) - 6) + b"\xff\xd9"
    with pytest.raises(ImageConversionError, match="cannot decode jpeg"):
        compressed_to_rgb(types.SimpleNamespace(format="jpeg", data=corrupt))
    with pytest.raises(ImageConversionError, match="not a jpeg stream"):
        compressed_to_rgb(types.SimpleNamespace(format="jpeg", data=b"hello world"))


def test_truncated_jpeg_raises() -> None:
    good = _valid_jpeg()
    with pytest.raises(ImageConversionError, match="truncated jpeg"):
        compressed_to_rgb(types.SimpleNamespace(format="jpeg", data=good[: len(good) // 2]))


@pytest.mark.parametrize(
    "fmt, data, pattern",
    [
        ("tiff", b"II*\x00", r"unknown compression format 'tiff'; supported: jpeg, jpg, png"),
        ("jpeg", b"", r"has no data"),
        ("", b"garbage!", r"neither JPEG nor PNG"),
        ("16UC1; compressedDepth png", b"\x00" * 20, r"compressedDepth"),
        ("png", _valid_png()[:-12], r"truncated png"),
    ],
)
def test_compressed_errors_are_clear(fmt: str, data: bytes, pattern: str) -> None:
    with pytest.raises(ImageConversionError, match=pattern):
        compressed_to_rgb(types.SimpleNamespace(format=fmt, data=data))


def test_build_helpers_reject_bad_input() -> None:
    with pytest.raises(ImageConversionError, match="dtype uint8"):
        rgb_to_image_fields(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ImageConversionError, match="shape"):
        rgb_to_image_fields(np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(ImageConversionError, match="unsupported image encoding 'yuv422'"):
        rgb_to_image_fields(np.zeros((2, 2, 3), np.uint8), "yuv422")
    with pytest.raises(ImageConversionError, match="pad"):
        rgb_to_image_fields(np.zeros((2, 2, 3), np.uint8), pad=-1)
    with pytest.raises(ImageConversionError, match="quality"):
        rgb_to_jpeg(np.zeros((2, 2, 3), np.uint8), quality=101)


def test_stamp_helpers_reject_bad_values() -> None:
    assert ns_to_stamp_fields(1_700_000_000_123_456_789) == (1_700_000_000, 123_456_789)
    assert ns_to_stamp_fields(np.int64(5)) == (0, 5)
    with pytest.raises(ValueError, match="negative"):
        ns_to_stamp_fields(-1)
    with pytest.raises(TypeError):
        ns_to_stamp_fields(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int32"):
        ns_to_stamp_fields(2**31 * 10**9)
    with pytest.raises(ValueError, match="negative"):
        stamp_to_ns(types.SimpleNamespace(sec=-1, nanosec=0))
    with pytest.raises(ValueError, match="nanosec"):
        stamp_to_ns(types.SimpleNamespace(sec=1, nanosec=10**9))
    with pytest.raises(TypeError):
        stamp_to_ns(object())


@needs_rclpy
def test_stamp_helpers_with_rclpy_time() -> None:
    sec, nanosec = ns_to_stamp_fields(1_700_000_000_000_000_001)
    stamp = RclpyTime(sec=sec, nanosec=nanosec)
    assert stamp_to_ns(stamp) == 1_700_000_000_000_000_001
    msg = RclpyImage()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    back = deserialize_message(serialize_message(msg), RclpyImage)
    assert stamp_to_ns(back.header.stamp) == 1_700_000_000_000_000_001


# --------------------------------------------------------------------------- size limit (header only)
def _claiming(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a small JPEG or PNG) with its header patched to claim ``width x height``."""
    out = bytearray(data)
    if out.startswith(b"\x89PNG"):
        out[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")  # IHDR (its CRC goes stale)
    else:
        sof = out.index(b"\xff\xc0")  # baseline frame header: FFC0, length, precision, height, width
        out[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(out)


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("cv2.imdecode was called")
    monkeypatch.setattr(cv2, "imdecode", refuse)


@pytest.mark.parametrize("codec", ["jpeg", "png"])
def test_a_tiny_file_claiming_8000x8000_is_refused_without_decoding(codec: str, monkeypatch) -> None:
    small = _valid_jpeg() if codec == "jpeg" else _valid_png()
    bomb = _claiming(small, 8000, 8000)
    assert len(bomb) < 2000 and compressed_image_size(bomb) == (8000, 8000)
    _no_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError, match=r"8000x8000 .* = 64000000 pixels exceeds .* 16777216") as info:
        compressed_to_rgb(types.SimpleNamespace(format=codec, data=bomb))
    assert info.value.kind == "too_large" and isinstance(info.value, ImageConversionError)


def test_the_limit_is_a_parameter_and_inclusive(monkeypatch) -> None:
    jpeg = _valid_jpeg()  # 32x24 = 768 pixels
    msg = types.SimpleNamespace(format="jpeg", data=jpeg)
    assert compressed_to_rgb(msg, max_pixels=768).shape == (24, 32, 3)
    assert compressed_to_rgb(msg, max_pixels=None).shape == (24, 32, 3)  # None: no limit
    _no_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError, match="32x24"):
        compressed_to_rgb(msg, max_pixels=767)


def test_oversized_raw_images_are_refused_before_the_data_is_read() -> None:
    # 8000x8000 claimed with 12 bytes of data: too large, not "too short" (the size is checked first)
    with pytest.raises(ImageTooLargeError, match="8000x8000"):
        image_to_rgb(_raw(width=8000, height=8000, step=24000))
    fields = rgb_to_image_fields(np.zeros((4, 5, 3), np.uint8))
    assert image_to_rgb(types.SimpleNamespace(**fields), max_pixels=20).shape == (4, 5, 3)
    with pytest.raises(ImageTooLargeError, match="5x4"):
        image_to_rgb(types.SimpleNamespace(**fields), max_pixels=19)
    assert DEFAULT_MAX_IMAGE_PIXELS == 4096 * 4096


@pytest.mark.parametrize("data, pattern", [
    (b"\xff\xd8\xff\xd9", "no readable frame header"),                     # SOI, EOI: no SOFn
    (b"\xff\xd8\xff\xe0\x00\x10" + bytes(14) + b"\xff\xda\x00\x02", "no readable frame header"),
    (b"\xff\xd8\xff\xe0\x00\x00", "no readable frame header"),             # bad segment length
    (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10" + bytes(12), "0x0|16x0"),  # height 0 (DNL)
    (b"\x89PNG\r\n\x1a\n" + bytes(8), "no IHDR"),
    (b"GIF89a", "not a jpeg or png"),
])
def test_unreadable_headers_are_conversion_errors(data: bytes, pattern: str) -> None:
    with pytest.raises(ImageConversionError, match=pattern):
        compressed_image_size(data)


def test_the_header_size_matches_what_opencv_decodes() -> None:
    rng = np.random.default_rng(5)
    for h, w in ((1, 1), (17, 3), (48, 64), (5, 700)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for ext, params in ((".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", [])):
            ok, enc = cv2.imencode(ext, rgb, params)
            assert ok and compressed_image_size(enc.tobytes()) == (w, h)


# --------------------------------------------------------------------------- OpenCV encodings
@pytest.mark.parametrize("kind", MSG_KINDS)
def test_8uc3_is_bgr8_and_8uc1_is_mono8(kind: str) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    bgr = rgb_to_image_fields(rgb, "bgr8", pad=3)
    as_8uc3 = {**bgr, "encoding": "8UC3"}
    np.testing.assert_array_equal(image_to_rgb(make_image(kind, as_8uc3)), rgb)
    built = rgb_to_image_fields(rgb, "8UC3", pad=3)
    assert built["encoding"] == "8UC3" and built["data"] == bgr["data"]
    np.testing.assert_array_equal(image_to_rgb(make_image(kind, built)), rgb)

    grey = rgb[:, :, 0]
    mono = rgb_to_image_fields(grey_rgb(grey), "8UC1")
    assert mono["encoding"] == "8UC1" and mono["data"] == rgb_to_image_fields(grey_rgb(grey), "mono8")["data"]
    np.testing.assert_array_equal(image_to_rgb(make_image(kind, mono)), grey_rgb(grey))
    with pytest.raises(ImageConversionError, match="unsupported image encoding '8UC4'"):
        image_to_rgb(make_image(kind, {**as_8uc3, "encoding": "8UC4"}))
