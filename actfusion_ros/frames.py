"""ROS-free conversion between image messages and numpy arrays (no cv_bridge).

Works on any object with the attributes of ``sensor_msgs/msg/Image``
(``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``) or
``sensor_msgs/msg/CompressedImage`` (``format``, ``data``):

* rclpy messages, whose ``uint8[]`` fields are ``array.array('B')``;
* rosbags messages, whose ``uint8[]`` fields are (often read-only) numpy arrays;
* plain stand-ins such as ``types.SimpleNamespace`` with ``bytes`` data.

Every returned array is a fresh, C-contiguous copy: it never aliases the
message buffer. Every malformed input raises :class:`ImageConversionError`
(a ``ValueError``) with a message naming the problem.

Size limit: both converters refuse an image of more than ``max_pixels``
(default :data:`DEFAULT_MAX_IMAGE_PIXELS`) pixels with
:class:`ImageTooLargeError`, judged from the header *before* any pixel is
copied or decoded: ``width * height`` of a raw image, the JPEG frame header
(SOFn) or PNG ``IHDR`` of a compressed one (:func:`compressed_image_size`, a
small pure-Python parser), so a few hundred bytes claiming 8000x8000 cost
nothing. Every caller (node, bag reading, replay, extraction) goes through
these two functions.

Time is carried as integer nanoseconds end to end; :mod:`actfusion_ros.time_ns` converts from/to
``builtin_interfaces/Time`` fields.

Filling messages from :func:`rgb_to_image_fields`: for rclpy assign the
``bytes`` as they are (``msg.data = fields['data']``; assigning an ndarray is
~1000x slower); for rosbags pass ``np.frombuffer(fields['data'], np.uint8)``.
"""
from __future__ import annotations

import operator
from typing import Any, NamedTuple

import cv2
import numpy as np

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "ERROR_KINDS",
    "ENCODING_ALIASES",
    "ImageConversionError",
    "ImageTooLargeError",
    "SUPPORTED_ENCODINGS",
    "SUPPORTED_COMPRESSED_FORMATS",
    "EncodedImage",
    "image_to_rgb",
    "compressed_to_rgb",
    "inspect_compressed",
    "inspect_image",
    "compressed_image_size",
    "check_image_pixels",
    "rgb_to_image_fields",
    "rgb_to_jpeg",
]

#: Default limit of :func:`image_to_rgb` / :func:`compressed_to_rgb`: 4096 x 4096 pixels (a 16 MP
#: camera; 48 MiB as RGB).
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096


#: The values of :attr:`ImageConversionError.kind` (the node's ``bad_images.<kind>`` counters).
ERROR_KINDS: tuple[str, ...] = ("fields", "encoding", "empty", "step", "truncated", "format", "corrupt",
                                "too_large", "other")


class ImageConversionError(ValueError):
    """Raised when an image message cannot be converted (or built).

    ``kind`` (one of :data:`ERROR_KINDS`) is a short, stable name of the problem for counters: a
    missing or mistyped field (``fields``), an unsupported ``encoding``, an ``empty`` image, a ``step``
    shorter than a row, ``truncated`` data, an unknown compression ``format``, ``corrupt`` compressed
    data, an image ``too_large`` to decode, or ``other`` (building messages).
    """

    kind: str = "other"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            if kind not in ERROR_KINDS:
                raise ValueError(f"unknown image error kind {kind!r}; known: {ERROR_KINDS}")
            self.kind = kind


class ImageTooLargeError(ImageConversionError):
    """The image header claims more pixels than allowed (refused before decoding)."""

    kind = "too_large"


class _Encoding(NamedTuple):
    channels: int
    bytes_per_channel: int


_ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(3, 1),
    "bgr8": _Encoding(3, 1),
    "rgba8": _Encoding(4, 1),
    "bgra8": _Encoding(4, 1),
    "mono8": _Encoding(1, 1),
    "mono16": _Encoding(1, 2),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)
#: Other accepted names: ``{ROS name: the SUPPORTED_ENCODINGS entry it means}``. The OpenCV-style
#: encodings of sensor_msgs/image_encodings.hpp: 8-bit, 3 channels is BGR by OpenCV convention;
#: 8-bit, 1 channel is grey.
ENCODING_ALIASES: dict[str, str] = {"8UC3": "bgr8", "8UC1": "mono8"}
_LOWER_ALIASES = {a.lower(): e for a, e in ENCODING_ALIASES.items()}
_SUPPORTED_TEXT = ", ".join((*SUPPORTED_ENCODINGS, *(f"{a} (= {e})" for a, e in ENCODING_ALIASES.items())))

# Codec token -> (file extension for cv2.imencode, magic-byte prefix).
_CODECS: dict[str, tuple[str, bytes]] = {
    "jpeg": (".jpg", b"\xff\xd8\xff"),
    "jpg": (".jpg", b"\xff\xd8\xff"),
    "png": (".png", b"\x89PNG\r\n\x1a\n"),
}
SUPPORTED_COMPRESSED_FORMATS: tuple[str, ...] = tuple(_CODECS)

_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"IEND\xaeB`\x82"
_TAIL_WINDOW = 64  # trailing bytes searched for the end marker


# --------------------------------------------------------------------------- helpers
def _field(msg: Any, name: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError:
        raise ImageConversionError(
            f"message of type {type(msg).__name__} has no '{name}' field", kind="fields"
        ) from None


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ImageConversionError(f"{name} must be an integer, got bool", kind="fields")
    try:
        return operator.index(value)
    except TypeError:
        raise ImageConversionError(
            f"{name} must be an integer, got {type(value).__name__}", kind="fields"
        ) from None


def _as_bytes_view(data: Any, what: str = "data") -> np.ndarray:
    """Return a flat uint8 view (no copy when possible) of a ``uint8[]`` field."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageConversionError(f"{what} must have dtype uint8, got {data.dtype}", kind="fields")
        return data.reshape(-1)
    if isinstance(data, (list, tuple)):
        arr = np.asarray(data)
        if arr.size == 0:
            return np.zeros(0, np.uint8)
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255:
            raise ImageConversionError(f"{what} must be a sequence of integers in 0..255", kind="fields")
        return arr.astype(np.uint8)
    try:
        # bytes, bytearray, memoryview, array.array('B') (rclpy): zero-copy view.
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        raise ImageConversionError(
            f"{what} must be bytes-like or a uint8 array, got {type(data).__name__}", kind="fields"
        ) from None


def _canonical_encoding(encoding: Any) -> str | None:
    """The :data:`_ENCODINGS` key an encoding string means (aliases resolved), or ``None``."""
    if not isinstance(encoding, str):
        return None
    name = encoding.strip().lower()
    name = _LOWER_ALIASES.get(name, name)
    return name if name in _ENCODINGS else None


def check_image_pixels(width: int, height: int, max_pixels: int | None, what: str = "image") -> None:
    """Raise :class:`ImageTooLargeError` if ``width * height`` exceeds ``max_pixels`` (``None``: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{what} of {width}x{height} (WxH) = {width * height} pixels exceeds the limit of "
            f"{max_pixels} pixels (parameter max_image_pixels); refused without decoding"
        )


class EncodedImage:
    """An image message whose header was checked, decoded only on demand (:meth:`decode`).

    ``shape``: ``(H, W, 3)`` of the RGB frame :meth:`decode` gives (from the header). Built by
    :func:`inspect_image` / :func:`inspect_compressed`: every problem the header and the data's length
    and markers show is raised there (cheap); :meth:`decode` can still raise
    :class:`ImageConversionError` (kind ``corrupt``) for compressed data that does not decode.
    """

    __slots__ = ("shape", "_decode")

    def __init__(self, shape: tuple[int, int, int], decode: Any) -> None:
        self.shape = shape
        self._decode = decode

    def decode(self) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 RGB frame (a fresh array)."""
        return self._decode()


# --------------------------------------------------------------------------- raw images
def image_to_rgb(msg: Any, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Convert a ``sensor_msgs/Image``-like message to an ``(H, W, 3)`` uint8 RGB array.

    Supported encodings: rgb8, bgr8 (and its OpenCV name 8UC3), rgba8, bgra8
    (alpha dropped), mono8 (and 8UC1; grey replicated to 3 channels) and mono16
    (byte order from ``is_bigendian``, scaled to 8 bit as ``value >> 8`` and
    replicated). Rows are sliced by ``step``, so padded rows are handled; bytes
    beyond ``step * height`` are ignored. The result is always a fresh copy.
    ``max_pixels``: refuse images with more pixels (``None``: no limit), before
    touching the data.

    Raises:
        ImageTooLargeError: ``width * height > max_pixels``.
        ImageConversionError: unsupported encoding, zero/negative size,
            ``step`` shorter than a row, or ``data`` shorter than ``step * height``.
    """
    return inspect_image(msg, max_pixels=max_pixels).decode()


def inspect_image(msg: Any, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> EncodedImage:
    """Every check of :func:`image_to_rgb`, without converting: the conversion is ``.decode()``."""
    encoding = _field(msg, "encoding")
    if not isinstance(encoding, str):
        raise ImageConversionError(
            f"encoding must be a string, got {type(encoding).__name__}", kind="encoding"
        )
    name = _canonical_encoding(encoding)
    if name is None:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {_SUPPORTED_TEXT}", kind="encoding"
        )
    enc = _ENCODINGS[name]
    height = _as_int(_field(msg, "height"), "height")
    width = _as_int(_field(msg, "width"), "width")
    step = _as_int(_field(msg, "step"), "step")
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image must be non-empty, got {width}x{height} (WxH)", kind="empty")
    check_image_pixels(width, height, max_pixels)
    row_bytes = width * enc.channels * enc.bytes_per_channel
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*bytes_per_pixel = {width}*"
            f"{enc.channels * enc.bytes_per_channel} = {row_bytes} for {encoding!r}", kind="step"
        )
    buf = _as_bytes_view(_field(msg, "data"))
    needed = step * height
    if buf.size < needed:
        raise ImageConversionError(
            f"image data too short: {buf.size} bytes, need step*height = {step}*{height} = {needed}",
            kind="truncated",
        )
    big = bool(_field(msg, "is_bigendian")) if name == "mono16" else False
    return EncodedImage((height, width, 3), lambda: _raw_to_rgb(buf, name, height, width, step, big))


def _raw_to_rgb(buf: np.ndarray, name: str, height: int, width: int, step: int, big: bool) -> np.ndarray:
    enc = _ENCODINGS[name]
    row_bytes = width * enc.channels * enc.bytes_per_channel
    rows = buf[:step * height].reshape(height, step)[:, :row_bytes]
    if name == "mono16":
        grey16 = np.ascontiguousarray(rows).view(">u2" if big else "<u2")
        grey = (grey16 >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if name == "mono8":
        return np.repeat(rows[:, :, None], 3, axis=2)
    pix = rows.reshape(height, width, enc.channels)
    if name in ("rgb8", "rgba8"):
        out = pix[:, :, :3]
    else:  # bgr8, bgra8
        out = pix[:, :, 2::-1]
    return np.array(out, dtype=np.uint8, order="C", copy=True)


# --------------------------------------------------------------------------- compressed
def _parse_format(fmt: str, data: np.ndarray) -> tuple[str, bool]:
    """Return (codec, swap_to_rgb) for a CompressedImage ``format`` string."""
    text = fmt.strip().lower()
    if "compresseddepth" in text:
        raise ImageConversionError(
            f"compressedDepth images are not supported (format {fmt!r})", kind="format"
        )
    if ";" in text:
        # image_transport style: "<orig enc>; <codec> compressed <target enc>"
        text = text.split(";", 1)[1].strip()
    codec_part, _, target = text.partition("compressed")
    text, target = codec_part.strip(), target.strip()
    token = text.split()[0] if text.split() else ""
    if not token:
        # No format given: sniff the magic bytes.
        head = data[:8].tobytes()
        for name, (_, magic) in _CODECS.items():
            if head.startswith(magic):
                return name, True
        raise ImageConversionError(
            "empty compressed image format and data is neither JPEG nor PNG", kind="format"
        )
    if token not in _CODECS:
        raise ImageConversionError(
            f"unknown compression format {fmt!r}; supported: "
            f"{', '.join(SUPPORTED_COMPRESSED_FORMATS)} (optionally image_transport style "
            f"'rgb8; jpeg compressed bgr8')", kind="format"
        )
    # The encoder stored the bytes it was given as BGR; if the publisher says it
    # compressed rgb(a)8 directly, the decoded "BGR" already is RGB.
    swap = target not in ("rgb8", "rgba8", "rgb16", "rgba16")
    return token, swap


# JPEG markers: SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD9)))  # TEM, RST0-7, SOI: no length field
_JPEG_MAX_SEGMENTS = 1024  # a real JPEG has a few dozen segments before its frame header


def _jpeg_size(data: bytes | np.ndarray) -> tuple[int, int]:
    """``(width, height)`` from the first SOFn segment of a JPEG stream (walks the segment lengths)."""
    view = memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    pos, n = 2, len(view)  # after SOI
    for _ in range(_JPEG_MAX_SEGMENTS):
        if pos >= n or view[pos] != 0xFF:
            break
        while pos < n and view[pos] == 0xFF:  # the marker's 0xFF and any fill bytes
            pos += 1
        if pos >= n:
            break
        marker = view[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            break
        if pos + 2 > n:
            break
        length = (view[pos] << 8) | view[pos + 1]
        if length < 2:
            break
        if marker in _JPEG_SOF:
            if length < 8 or pos + 7 > n:
                break
            height = (view[pos + 3] << 8) | view[pos + 4]
            width = (view[pos + 5] << 8) | view[pos + 6]
            if width == 0 or height == 0:
                raise ImageConversionError(
                    f"cannot decode jpeg data ({n} bytes): frame header gives {width}x{height} (WxH)",
                    kind="corrupt")
            return width, height
        pos += length
    raise ImageConversionError(
        f"cannot decode jpeg data ({n} bytes): no readable frame header (SOFn)", kind="corrupt"
    )


def _png_size(data: bytes | np.ndarray) -> tuple[int, int]:
    """``(width, height)`` from the ``IHDR`` chunk, which must follow the PNG signature."""
    head = bytes(np.ascontiguousarray(data[:24], dtype=np.uint8))
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise ImageConversionError(
            f"cannot decode png data ({len(data)} bytes): no IHDR chunk after the signature", kind="corrupt"
        )
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if width == 0 or height == 0:
        raise ImageConversionError(
            f"cannot decode png data: IHDR gives {width}x{height} (WxH)", kind="corrupt"
        )
    return width, height


def compressed_image_size(data: Any) -> tuple[int, int]:
    """``(width, height)`` a JPEG or PNG stream declares in its header, without decoding it.

    Reads the JPEG frame header (the first SOFn segment, found by walking the segment lengths) or the
    PNG ``IHDR`` chunk.

    Raises:
        ImageConversionError: neither JPEG nor PNG, or no readable size in the header.
    """
    buf = _as_bytes_view(data)
    head = buf[:8].tobytes()
    if head.startswith(_CODECS["jpeg"][1]):
        return _jpeg_size(buf)
    if head.startswith(_CODECS["png"][1]):
        return _png_size(buf)
    raise ImageConversionError(f"data is not a jpeg or png stream (bad header {head!r})", kind="corrupt")


def compressed_to_rgb(msg: Any, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage``-like message to ``(H, W, 3)`` uint8 RGB.

    ``format`` may be a plain codec (``'jpeg'``, ``'jpg'``, ``'png'``), the
    image_transport form ``'rgb8; jpeg compressed bgr8'``, or empty (codec then
    sniffed from the magic bytes). Grey images are replicated to 3 channels,
    alpha is dropped, 16-bit PNGs are reduced to 8 bit by OpenCV. The size the
    header declares is checked against ``max_pixels`` (``None``: no limit)
    before decoding (:func:`compressed_image_size`).

    Raises:
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels.
        ImageConversionError: unknown format, empty/corrupt/truncated data.
    """
    return inspect_compressed(msg, max_pixels=max_pixels).decode()


def inspect_compressed(msg: Any, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> EncodedImage:
    """Every check of :func:`compressed_to_rgb` that needs no decoding (format, markers, header size,
    ``max_pixels``); the decoding is ``.decode()``."""
    fmt = _field(msg, "format")
    if not isinstance(fmt, str):
        raise ImageConversionError(f"format must be a string, got {type(fmt).__name__}", kind="fields")
    buf = _as_bytes_view(_field(msg, "data"))
    codec, swap = _parse_format(fmt, buf)
    if buf.size == 0:
        raise ImageConversionError(f"compressed image ({codec}) has no data", kind="empty")
    magic = _CODECS[codec][1]
    if buf[: len(magic)].tobytes() != magic:
        raise ImageConversionError(
            f"data is not a {codec} stream (bad header {buf[:8].tobytes()!r})", kind="corrupt"
        )
    tail = buf[-_TAIL_WINDOW:].tobytes()
    end_marker = _JPEG_EOI if codec in ("jpeg", "jpg") else _PNG_IEND
    if end_marker not in tail:
        raise ImageConversionError(
            f"truncated {codec} data ({buf.size} bytes): no end-of-image marker", kind="truncated"
        )
    width, height = compressed_image_size(buf)
    check_image_pixels(width, height, max_pixels, what=f"{codec} image")
    return EncodedImage((height, width, 3), lambda: _decode_compressed(buf, codec, swap))


def _decode_compressed(buf: np.ndarray, codec: str, swap: bool) -> np.ndarray:
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageConversionError(
            f"cannot decode {codec} data ({buf.size} bytes): {exc}", kind="corrupt"
        ) from None
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
        raise ImageConversionError(
            f"cannot decode {codec} data ({buf.size} bytes): corrupt stream", kind="corrupt"
        )
    out = bgr[:, :, ::-1] if swap else bgr
    return np.ascontiguousarray(out, dtype=np.uint8)


# --------------------------------------------------------------------------- building
def _check_rgb(rgb: Any) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise ImageConversionError(f"expected a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected dtype uint8, got {rgb.dtype}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected shape (H, W, 3) or (H, W), got {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageConversionError(f"image must be non-empty, got shape {rgb.shape}")
    return rgb


def _grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (BT.601) of an RGB image; exact for images whose channels are equal."""
    if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2]):
        return np.ascontiguousarray(rgb[:, :, 0])
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def rgb_to_image_fields(
    rgb: np.ndarray, encoding: str = "rgb8", pad: int = 0, *, bigendian: bool = False
) -> dict[str, Any]:
    """Build ``sensor_msgs/Image`` fields from an ``(H, W, 3)`` uint8 RGB array.

    ``rgb`` may also be ``(H, W)`` grey. ``encoding`` is one of
    :data:`SUPPORTED_ENCODINGS` or :data:`ENCODING_ALIASES` (8UC3 is laid out as
    bgr8, 8UC1 as mono8, under the name asked for); mono encodings take the luma
    (exact for grey input), mono16 stores ``grey * 257`` (so ``>> 8`` gives ``grey`` back) in
    the byte order chosen by ``bigendian``, alpha is 255. Each row is followed
    by ``pad`` zero bytes (``step = width * bytes_per_pixel + pad``).

    Returns:
        dict with keys height, width, encoding, is_bigendian, step, data (bytes).
    """
    rgb = _check_rgb(rgb)
    name = _canonical_encoding(encoding)
    if name is None:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {_SUPPORTED_TEXT}", kind="encoding"
        )
    # the message keeps the spelling asked for: lower case, except the OpenCV names (8UC3, 8UC1)
    stored = encoding.strip().upper() if encoding.strip().lower() in _LOWER_ALIASES else name
    pad = _as_int(pad, "pad")
    if pad < 0:
        raise ImageConversionError(f"pad must be >= 0, got {pad}")
    height, width = rgb.shape[:2]
    if name == "rgb8":
        pix = rgb
    elif name == "bgr8":
        pix = rgb[:, :, ::-1]
    elif name in ("rgba8", "bgra8"):
        pix = np.empty((height, width, 4), np.uint8)
        pix[:, :, :3] = rgb if name == "rgba8" else rgb[:, :, ::-1]
        pix[:, :, 3] = 255
    elif name == "mono8":
        pix = _grey(rgb)
    else:  # mono16
        grey16 = _grey(rgb).astype(np.uint16) * np.uint16(257)
        pix = grey16.astype(">u2" if bigendian else "<u2").view(np.uint8)
    rows = np.ascontiguousarray(pix).reshape(height, -1)
    if pad:
        rows = np.concatenate([rows, np.zeros((height, pad), np.uint8)], axis=1)
    return {
        "height": int(height),
        "width": int(width),
        "encoding": stored,
        "is_bigendian": int(bool(bigendian) and name == "mono16"),
        "step": int(rows.shape[1]),
        "data": rows.tobytes(),
    }


def rgb_to_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB array (or ``(H, W)`` grey) as JPEG bytes.

    The result suits ``sensor_msgs/CompressedImage`` with ``format='jpeg'``
    (or ``'rgb8; jpeg compressed bgr8'``).
    """
    rgb = _check_rgb(rgb)
    quality = _as_int(quality, "quality")
    if not 0 <= quality <= 100:
        raise ImageConversionError(f"JPEG quality must be in 0..100, got {quality}")
    ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]),
                           [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise ImageConversionError("cv2.imencode failed to encode JPEG")
    return enc.tobytes()
