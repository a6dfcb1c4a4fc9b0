"""rosbag2 files (sqlite3 and MCAP) without ROS: read camera frames and action labels, write test bags.

Reading goes through ``rosbags.highlevel.AnyReader`` (message definitions from the bag, falling back
to the ROS 2 Kilted typestore), so it needs neither ``ros2 bag`` nor rclpy:

* :func:`read_images` - ``(stamp_ns, rgb)`` for every message of an image topic, the type
  (``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``) detected from the bag, pixels
  converted by :mod:`actfusion_ros.frames`, stamps from ``header.stamp`` (integer ns);
* :func:`read_image_messages` - the same with each message's bag time, frame id and original CDR bytes and
  definition (to copy the topic into another bag unchanged);
* :func:`read_labels` - a ``std_msgs/msg/String`` topic as label *change* events ``(stamp_ns, label)``
  stamped with the bag's receive time (String has no header); :func:`labels_at` gives the label in
  force at any stamps.

Every failure - a missing path, a missing topic (the message lists the topics present), a topic of
the wrong type, a corrupt or truncated storage file, an undecodable image - raises :class:`BagError`
naming the bag and, where there is one, the topic.

:func:`write_bag` writes rosbag2 version 9 bags (what Kilted writes) with ``rosbags`` for tests and the
demo: raw images (rgb8 / bgr8 / mono8, optionally padded rows) or compressed ones (jpeg / png), plus a
label topic.

:class:`McapFileWriter` writes one ``.mcap`` file (no bag directory) atomically, with the CRCs below
(``actfusion-replay --record``).

**MCAP checksums.** ``rosbags`` writes MCAP chunks with CRC 0 ("no checksum"), so corruption could not be
detected. :func:`write_mcap_crcs` fills in the real CRC-32s after writing (every chunk's
``uncompressed_crc``, the DataEnd ``data_section_crc`` and the footer's ``summary_crc``, as the MCAP
specification defines them); ``write_bag`` calls it for every ``.mcap`` file. On reading, ``rosbags``
checks a chunk's CRC when it is not 0: a mismatch is a :class:`BagError` ("... CRC-32 does not match").
"""
from __future__ import annotations

import bisect
import os
import shutil
import struct
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from actfusion_ros.frames import compressed_to_rgb, image_to_rgb, rgb_to_image_fields, rgb_to_jpeg
from actfusion_ros.time_ns import ns_to_stamp_fields, stamp_to_ns

__all__ = ["BagError", "IMAGE_TYPES", "ImageMessage", "LABEL_TYPE", "LabelEvent", "McapFileWriter", "TopicInfo",
           "bag_topics", "count_messages", "labels_at", "read_image_messages", "read_images", "read_labels",
           "write_bag", "write_mcap_crcs"]

IMAGE_TYPES: dict[str, Callable[[Any], np.ndarray]] = {
    "sensor_msgs/msg/Image": image_to_rgb,
    "sensor_msgs/msg/CompressedImage": compressed_to_rgb,
}
LABEL_TYPE = "std_msgs/msg/String"
STORAGES = ("sqlite3", "mcap")
RAW_ENCODINGS = ("rgb8", "bgr8", "mono8")
COMPRESSED_ENCODINGS = ("jpeg", "png")
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_LABEL_TOPIC = "/action/label"


class BagError(ValueError):
    """A bag cannot be read or written (the message names the bag and, if any, the topic)."""


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: name, message type and number of messages."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class LabelEvent:
    """From ``stamp_ns`` on (until the next event), the action is ``label``."""

    stamp_ns: int
    label: str


# --------------------------------------------------------------------------- reading
def _bag_dir(path: str | Path) -> Path:
    """The rosbag2 directory of ``path`` (a storage file inside one is accepted too)."""
    path = Path(path)
    if path.is_file() and path.suffix in (".db3", ".mcap") and (path.parent / "metadata.yaml").is_file():
        return path.parent
    return path


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_KILTED)


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _storage_files(bag: Path) -> str:
    """`` (file x.mcap)`` for the storage files of a bag directory (for error messages)."""
    files = sorted(p.name for p in bag.iterdir() if p.suffix in (".db3", ".mcap")) if bag.is_dir() else []
    return f" (file{'s' if len(files) > 1 else ''} {', '.join(files)})" if files else ""


def _truncated_sqlite(bag: Path) -> str | None:
    """Why a ``.db3`` file of ``bag`` is shorter than its SQLite header says, or ``None``.

    SQLite reads pages past the end of a cut file as zeros, so without this check a recording cut short
    can decode to images with zeroed rows instead of failing.
    """
    for db in sorted(bag.glob("*.db3")) if bag.is_dir() else []:
        with open(db, "rb") as fh:
            header = fh.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
            continue  # not SQLite at all: AnyReader says so
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        # the in-header page count is valid when its version matches the change counter
        if pages and header[92:96] == header[24:28] and db.stat().st_size < pages * page_size:
            return (f"{db.name} is truncated: {db.stat().st_size} bytes, its header says {pages} pages of "
                    f"{page_size} bytes (a recording cut short?)")
    return None


@contextmanager
def _open(path: str | Path, topic: str | None = None) -> Iterator[Any]:
    """An open ``AnyReader``; any failure while opening or reading becomes a :class:`BagError`."""
    from rosbags.highlevel import AnyReader
    bag = _bag_dir(path)
    where = f"bag {bag}" + (f", topic {topic!r}" if topic else "")
    if not bag.exists():
        raise BagError(f"{where}: no such file or directory")
    if bag.is_dir() and not (bag / "metadata.yaml").is_file():
        raise BagError(f"{where}{_storage_files(bag)}: metadata.yaml is missing; a rosbag2 bag is a "
                       "directory with metadata.yaml and its .db3 / .mcap files")
    truncated = _truncated_sqlite(bag)
    if truncated:
        raise BagError(f"{where}{_storage_files(bag)}: cannot open: {truncated}")
    try:
        reader = AnyReader([bag], default_typestore=_typestore())
        reader.open()
    except Exception as err:  # noqa: BLE001 - rosbags/sqlite/mcap raise many kinds
        hint = (" A recording cut short leaves an MCAP file without its footer; `mcap recover` (MCAP "
                "CLI) can rebuild it." if any(bag.glob("*.mcap")) else "")
        raise BagError(f"{where}{_storage_files(bag)}: cannot open (corrupt, truncated or not a rosbag2 "
                       f"bag?): {_describe(err).rstrip('.')}.{hint}") from err
    try:
        yield reader
    except BagError:
        raise
    except Exception as err:  # noqa: BLE001
        if "checksum mismatch" in str(err).lower():
            raise BagError(f"{where}{_storage_files(bag)}: corrupt: a chunk's CRC-32 does not match its data "
                           f"(the file changed after it was written): {_describe(err)}") from err
        raise BagError(f"{where}{_storage_files(bag)}: read failed (corrupt or truncated bag?): "
                       f"{_describe(err)}") from err
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - closing a broken bag must not hide the first error
            pass


def bag_topics(path: str | Path) -> dict[str, TopicInfo]:
    """Topics of a bag: ``{name: TopicInfo}`` (counts from the bag's metadata)."""
    with _open(path) as reader:
        return _topics(reader)


def _topics(reader: Any) -> dict[str, TopicInfo]:
    out: dict[str, TopicInfo] = {}
    for name, info in reader.topics.items():
        out[name] = TopicInfo(name, str(info.msgtype), int(info.msgcount))
    return out


def _connections(reader: Any, path: str | Path, topic: str, allowed: Sequence[str] | None) -> list[Any]:
    topics = _topics(reader)
    if topic not in topics:
        present = ", ".join(f"{t.name} ({t.msgtype}, {t.count} msgs)" for t in topics.values()) or "none"
        raise BagError(f"bag {_bag_dir(path)}: topic {topic!r} not found; topics present: {present}")
    if allowed is not None and topics[topic].msgtype not in allowed:
        raise BagError(f"bag {_bag_dir(path)}, topic {topic!r}: type {topics[topic].msgtype} is not "
                       f"one of {', '.join(allowed)}")
    return [c for c in reader.connections if c.topic == topic]


def count_messages(path: str | Path, topic: str) -> int:
    """Number of messages on ``topic`` (from the bag's metadata; for progress bars)."""
    with _open(path, topic) as reader:
        return sum(int(c.msgcount) for c in _connections(reader, path, topic, None))


@dataclass(frozen=True)
class ImageMessage:
    """One message of an image topic: its stamp (as asked for), bag time, pixels and the original CDR bytes.

    ``msgtype`` / ``msgdef`` / ``digest``: the topic's type, message definition text and RIHS01 hash as the
    bag records them (empty when the bag has none), so the message can be written to another bag unchanged.
    """

    stamp_ns: int
    bag_ns: int
    rgb: np.ndarray
    raw: bytes
    frame_id: str
    msgtype: str
    msgdef: str
    digest: str


def read_images(path: str | Path, topic: str, *, stamp_source: str = "header") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(stamp_ns, rgb (H, W, 3) uint8)`` for each message of ``topic`` in bag-time order.

    ``stamp_source='header'`` (default) uses ``header.stamp``; ``'bag'`` the bag's receive time.
    Image and CompressedImage topics are told apart from the bag's metadata. Raises
    :class:`BagError` (naming bag, topic and, for a bad image, the message index and stamp).
    """
    for message in read_image_messages(path, topic, stamp_source=stamp_source):
        yield message.stamp_ns, message.rgb


def read_image_messages(path: str | Path, topic: str, *, stamp_source: str = "header") -> Iterator[ImageMessage]:
    """:func:`read_images` with each message's bag time, original bytes and definition (:class:`ImageMessage`)."""
    if stamp_source not in ("header", "bag"):
        raise ValueError(f"stamp_source must be 'header' or 'bag', got {stamp_source!r}")
    with _open(path, topic) as reader:
        connections = _connections(reader, path, topic, list(IMAGE_TYPES))
        for k, (conn, bag_ns, raw) in enumerate(reader.messages(connections=connections)):
            msg = reader.deserialize(raw, conn.msgtype)
            try:
                stamp = stamp_to_ns(msg.header.stamp) if stamp_source == "header" else int(bag_ns)
                rgb = IMAGE_TYPES[conn.msgtype](msg)
            except (TypeError, ValueError) as err:
                raise BagError(f"bag {_bag_dir(path)}, topic {topic!r}, message {k} (bag time {bag_ns} ns): "
                               f"{_describe(err)}") from err
            msgdef = getattr(conn.msgdef, "data", "") or ""
            yield ImageMessage(stamp, int(bag_ns), rgb, bytes(raw), str(msg.header.frame_id), str(conn.msgtype), msgdef,
                               conn.digest or "")


def read_labels(path: str | Path, topic: str) -> list[LabelEvent]:
    """Label change events of a ``std_msgs/msg/String`` topic: ``[(stamp_ns, label), ...]``.

    Stamps are the bag's receive times; consecutive repeats of a label are merged (only changes
    are returned). Labels are stripped of surrounding whitespace; an empty label is an error.
    """
    events: list[LabelEvent] = []
    with _open(path, topic) as reader:
        connections = _connections(reader, path, topic, [LABEL_TYPE])
        for conn, bag_ns, raw in reader.messages(connections=connections):
            label = str(reader.deserialize(raw, conn.msgtype).data).strip()
            if not label:
                raise BagError(f"bag {_bag_dir(path)}, topic {topic!r}: empty label at bag time {bag_ns} ns")
            if not events or events[-1].label != label:
                events.append(LabelEvent(int(bag_ns), label))
    return events


def labels_at(events: Sequence[LabelEvent], stamps_ns: Iterable[int], default: str | None = None) -> list[str]:
    """The label in force at each stamp: that of the last event with ``event.stamp_ns <= stamp``.

    Stamps before the first event get ``default``; with ``default=None`` that is an error.
    """
    times = [e.stamp_ns for e in events]
    out = []
    for s in stamps_ns:
        i = bisect.bisect_right(times, int(s)) - 1
        if i < 0:
            if default is None:
                first = f"the first label event is at {times[0]} ns" if times else "there are no label events"
                raise BagError(f"no label in force at stamp {int(s)} ns ({first}); pass a default label")
            out.append(default)
        else:
            out.append(events[i].label)
    return out


# --------------------------------------------------------------------------- writing
MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_CHUNK, _MCAP_DATA_END, _MCAP_FOOTER = 0x06, 0x0F, 0x02


def _mcap_chunk_data(data: bytes | bytearray, body: int, path: Path) -> tuple[int, bytes]:
    """``(offset of uncompressed_crc, uncompressed records)`` of the Chunk record whose content starts at ``body``."""
    (size,) = struct.unpack_from("<Q", data, body + 16)
    (name_len,) = struct.unpack_from("<I", data, body + 28)
    compression = bytes(data[body + 32:body + 32 + name_len]).decode()
    (records_len,) = struct.unpack_from("<Q", data, body + 32 + name_len)
    start = body + 40 + name_len
    records = bytes(data[start:start + records_len])
    if compression:  # the decompressors rosbags' reader uses (zstd, lz4)
        from rosbags.rosbag2.storage_mcap import DECOMPRESSORS
        if compression not in DECOMPRESSORS:
            raise BagError(f"{path}: cannot checksum a chunk compressed with {compression!r}")
        records = DECOMPRESSORS[compression](records, size)
    return body + 24, records


#: the Footer record: opcode, length, summary_start, summary_offset_start, summary_crc
_MCAP_FOOTER_SIZE = 1 + 8 + 8 + 8 + 4
_COPY_BLOCK = 1 << 20


class _CrcStream:
    """Writes to ``out`` and keeps the two running CRC-32s the MCAP trailer needs: of every byte written
    (the data section's, read at DataEnd) and of every byte from offset ``summary_start`` on (0: none)."""

    def __init__(self, out: Any, summary_start: int) -> None:
        self.out, self.summary_start = out, summary_start
        self.pos = self.data_crc = self.summary_crc = 0

    def write(self, piece: bytes | bytearray) -> None:
        self.out.write(piece)
        self.data_crc = zlib.crc32(piece, self.data_crc)
        end = self.pos + len(piece)
        if self.summary_start and end > self.summary_start:
            self.summary_crc = zlib.crc32(piece[max(0, self.summary_start - self.pos):], self.summary_crc)
        self.pos = end


def _read_exact(src: Any, n: int, path: Path) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise BagError(f"{path}: not a complete MCAP file (a record runs past the end)")
    return data


def write_mcap_crcs(path: str | Path) -> int:
    """Fill in the CRC-32s of an MCAP file that has 0 ("none") in their place; returns the chunks done.

    Per the MCAP specification: a Chunk's ``uncompressed_crc`` covers its uncompressed records; DataEnd's
    ``data_section_crc`` covers every byte from the start of the file up to the DataEnd record; the
    Footer's ``summary_crc`` covers the summary section and the Footer up to that field. The file is
    rewritten atomically (same size), streamed record by record: memory holds one chunk at a time, not
    the file (a replay recorded with its camera images can be many GB).
    """
    from actfusion_model.io import atomic_open

    path = Path(path)
    size = path.stat().st_size
    magic = len(MCAP_MAGIC)
    with open(path, "rb") as src:
        head = src.read(magic)
        src.seek(max(0, size - magic))
        if size < 2 * magic or head != MCAP_MAGIC or src.read() != MCAP_MAGIC:
            raise BagError(f"{path}: not a complete MCAP file (magic bytes missing)")
        footer_at = size - magic - _MCAP_FOOTER_SIZE
        src.seek(max(0, footer_at))
        footer = src.read(_MCAP_FOOTER_SIZE)
        if footer_at < magic or footer[0] != _MCAP_FOOTER:
            raise BagError(f"{path}: no MCAP footer found")
        (summary_start,) = struct.unpack_from("<Q", footer, 9)
        src.seek(magic)
        chunks = 0
        with atomic_open(path) as dst:
            out = _CrcStream(dst, summary_start)
            out.write(MCAP_MAGIC)
            while out.pos < footer_at:
                header = _read_exact(src, 9, path)
                opcode = header[0]
                (length,) = struct.unpack_from("<Q", header, 1)
                before = out.data_crc  # DataEnd's CRC: every byte up to its record
                out.write(header)
                if opcode == _MCAP_CHUNK:
                    body = bytearray(_read_exact(src, length, path))
                    crc_at, records = _mcap_chunk_data(body, 0, path)
                    struct.pack_into("<I", body, crc_at, zlib.crc32(records))
                    out.write(body)
                    chunks += 1
                elif opcode == _MCAP_DATA_END:
                    body = bytearray(_read_exact(src, length, path))
                    struct.pack_into("<I", body, 0, before)
                    out.write(body)
                else:
                    for done in range(0, length, _COPY_BLOCK):
                        out.write(_read_exact(src, min(_COPY_BLOCK, length - done), path))
            if out.pos != footer_at:
                raise BagError(f"{path}: no MCAP footer found (records do not end where the footer begins)")
            body = bytearray(_read_exact(src, _MCAP_FOOTER_SIZE, path))
            crc_at = _MCAP_FOOTER_SIZE - 4
            out.write(body[:crc_at])  # the Footer up to its summary_crc field
            crc = struct.pack("<I", out.summary_crc) if summary_start else bytes(body[crc_at:])
            dst.write(crc + MCAP_MAGIC)
    return chunks


def _storage_plugin(storage: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    return StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP


def _header(ts: Any, stamp_ns: int, frame_id: str) -> Any:
    sec, nanosec = ns_to_stamp_fields(stamp_ns)
    time_t = ts.types["builtin_interfaces/msg/Time"]
    return ts.types["std_msgs/msg/Header"](stamp=time_t(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _image_message(ts: Any, stamp_ns: int, rgb: np.ndarray, encoding: str, pad_rows: int,
                   frame_id: str, jpeg_quality: int) -> Any:
    header = _header(ts, stamp_ns, frame_id)
    if encoding == "jpeg":
        data, fmt = rgb_to_jpeg(rgb, jpeg_quality), "jpeg"
    elif encoding == "png":
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]))
        if not ok:
            raise BagError("cv2.imencode failed to encode PNG")
        data, fmt = buf.tobytes(), "png"
    else:
        f = rgb_to_image_fields(rgb, encoding, pad=pad_rows)
        return ts.types["sensor_msgs/msg/Image"](
            header=header, height=f["height"], width=f["width"], encoding=f["encoding"],
            is_bigendian=f["is_bigendian"], step=f["step"], data=np.frombuffer(f["data"], np.uint8))
    return ts.types["sensor_msgs/msg/CompressedImage"](header=header, format=fmt,
                                                      data=np.frombuffer(data, np.uint8))


def write_bag(path: str | Path, *, storage: str = "sqlite3",
              images: Iterable[tuple[int, np.ndarray]] = (), encoding: str = "rgb8", pad_rows: int = 0,
              labels: Iterable[tuple[int, str]] = (), image_topic: str | None = None,
              label_topic: str = DEFAULT_LABEL_TOPIC, frame_id: str = "camera",
              jpeg_quality: int = 95) -> Path:
    """Write a rosbag2 (version 9) bag at ``path`` (a new directory); return its path.

    images: ``(stamp_ns, rgb (H, W, 3) uint8)``; bag time = header stamp.
    encoding: ``rgb8`` / ``bgr8`` / ``mono8`` (``sensor_msgs/Image``; mono8 stores the luma, exact for
        grey frames) or ``jpeg`` / ``png`` (``sensor_msgs/CompressedImage``).
    pad_rows: extra zero bytes after every image row (``step = width * channels + pad_rows``).
    labels: ``(stamp_ns, name)`` written as ``std_msgs/String`` at bag time ``stamp_ns``.
    image_topic: default ``/camera/image_raw`` (raw) or ``/camera/image_raw/compressed``.

    Messages are written in time order; MCAP files get real CRC-32s (:func:`write_mcap_crcs`). A partially
    written bag is removed on failure.
    """
    plugin = _storage_plugin(storage)
    if encoding not in RAW_ENCODINGS + COMPRESSED_ENCODINGS:
        raise ValueError(f"encoding must be one of {RAW_ENCODINGS + COMPRESSED_ENCODINGS}, got {encoding!r}")
    if isinstance(pad_rows, bool) or not isinstance(pad_rows, int) or pad_rows < 0:
        raise ValueError(f"pad_rows must be an int >= 0, got {pad_rows!r}")
    if image_topic is None:
        image_topic = DEFAULT_IMAGE_TOPIC + ("/compressed" if encoding in COMPRESSED_ENCODINGS else "")
    path = Path(path)
    if path.exists():
        raise BagError(f"bag {path}: already exists; choose a new path")
    from rosbags.rosbag2 import Writer
    ts = _typestore()
    msgtype = "sensor_msgs/msg/CompressedImage" if encoding in COMPRESSED_ENCODINGS else "sensor_msgs/msg/Image"
    items = [(int(s), 0, k, rgb) for k, (s, rgb) in enumerate(images)]
    items += [(int(s), 1, k, str(name)) for k, (s, name) in enumerate(labels)]
    items.sort(key=lambda it: it[:3])
    try:
        with Writer(path, version=9, storage_plugin=plugin) as writer:
            img_conn = writer.add_connection(image_topic, msgtype, typestore=ts) if any(
                it[1] == 0 for it in items) else None
            lab_conn = writer.add_connection(label_topic, LABEL_TYPE, typestore=ts) if any(
                it[1] == 1 for it in items) else None
            for stamp, kind, _, payload in items:
                if kind == 0:
                    msg = _image_message(ts, stamp, payload, encoding, pad_rows, frame_id, jpeg_quality)
                    writer.write(img_conn, stamp, ts.serialize_cdr(msg, msgtype))
                else:
                    msg = ts.types[LABEL_TYPE](data=payload)
                    writer.write(lab_conn, stamp, ts.serialize_cdr(msg, LABEL_TYPE))
        for mcap in sorted(path.glob("*.mcap")):
            write_mcap_crcs(mcap)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


class McapFileWriter:
    """One MCAP file (no bag directory: what Foxglove opens), written atomically and with real CRC-32s.

    A context manager around ``rosbags``' MCAP writer: it writes a rosbag2 bag into a temporary directory
    beside ``path``; on a clean exit it fills in the CRCs (:func:`write_mcap_crcs`) and renames the
    ``.mcap`` file to ``path`` (the same file system: atomic), on an error it removes everything. The
    file reads back with the reference ``mcap`` reader, ``rosbags.rosbag2.storage_mcap.McapReader`` or
    ``ros2 bag play path``. :meth:`add_connection` takes the definition (``msgdef`` + ``digest``) of a
    copied topic, or the ``typestore`` that knows the type.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix != ".mcap":
            raise BagError(f"{self.path}: the file name must end in .mcap")
        if self.path.is_dir():
            raise BagError(f"{self.path}: is a directory")
        if not self.path.parent.is_dir():
            raise BagError(f"{self.path}: the directory {self.path.parent} does not exist")
        self._tmp = self.path.parent / f".{self.path.name}.{os.getpid()}.tmp"
        self._writer: Any = None

    def __enter__(self) -> "McapFileWriter":
        from rosbags.rosbag2 import Writer
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._writer = Writer(self._tmp, version=9, storage_plugin=_storage_plugin("mcap"))
        self._writer.open()
        return self

    def add_connection(self, topic: str, msgtype: str, *, typestore: Any = None, msgdef: str = "",
                       digest: str = "") -> Any:
        """A topic to write to: its definition from ``msgdef`` + ``digest`` when both are given, else ``typestore``."""
        if msgdef and digest:
            return self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest)
        return self._writer.add_connection(topic, msgtype, typestore=typestore or _typestore())

    def write(self, connection: Any, log_ns: int, raw: bytes) -> None:
        """One serialized (CDR) message at log time ``log_ns``."""
        self._writer.write(connection, int(log_ns), raw)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None:
                try:
                    self._writer.close()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
                return
            self._writer.close()
            (mcap,) = sorted(self._tmp.glob("*.mcap"))
            write_mcap_crcs(mcap)
            os.replace(mcap, self.path)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
