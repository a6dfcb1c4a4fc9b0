"""Tests of rosbag2 reading and writing (sqlite3 and MCAP) with rosbags: round trips and clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from actfusion_ros.tools.bags import (  # noqa: E402
    BagError,
    LabelEvent,
    bag_topics,
    count_messages,
    labels_at,
    read_images,
    read_labels,
    write_bag,
)

S = 1_000_000_000
T0 = 1_700_000_000 * S
STORAGES = ("sqlite3", "mcap")


def _frames(n: int = 6, h: int = 18, w: int = 26, grey: bool = False) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(n + h + w)
    out = []
    for k in range(n):
        img = rng.integers(0, 256, size=(h, w, 1 if grey else 3), dtype=np.uint8)
        out.append((T0 + k * S // 15 + (k % 2), np.repeat(img, 3, axis=2) if grey else img))
    return out


LABELS = [(T0, "reach"), (T0 + S // 10, "reach"), (T0 + S // 5, "grasp"), (T0 + S // 3, "lift")]


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("encoding, pad", [("rgb8", 5), ("bgr8", 3), ("mono8", 2), ("png", 0)])
def test_lossless_round_trip(tmp_path: Path, storage: str, encoding: str, pad: int) -> None:
    frames = _frames(grey=encoding == "mono8")
    bag = write_bag(tmp_path / "bag", storage=storage, images=frames, encoding=encoding, pad_rows=pad,
                    labels=LABELS)
    image_topic = "/camera/image_raw" + ("/compressed" if encoding == "png" else "")
    msgtype = "sensor_msgs/msg/" + ("CompressedImage" if encoding == "png" else "Image")
    topics = bag_topics(bag)
    assert topics[image_topic].msgtype == msgtype and topics[image_topic].count == len(frames)
    assert topics["/action/label"].msgtype == "std_msgs/msg/String" and count_messages(bag, "/action/label") == 4
    back = list(read_images(bag, image_topic))
    assert [s for s, _ in back] == [s for s, _ in frames]                     # header stamps, exact ns
    for (_, want), (_, got) in zip(frames, back):
        assert got.dtype == np.uint8 and got.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(got, want)
    assert read_labels(bag, "/action/label") == [LabelEvent(T0, "reach"), LabelEvent(T0 + S // 5, "grasp"),
                                                 LabelEvent(T0 + S // 3, "lift")]


@pytest.mark.parametrize("storage", STORAGES)
def test_jpeg_round_trip_is_close_and_storage_file_path_is_accepted(tmp_path: Path, storage: str) -> None:
    smooth = np.zeros((24, 32, 3), np.uint8)
    smooth[..., 0] = 40 + np.arange(32) * 4
    smooth[..., 1] = (np.arange(24) * 5)[:, None]
    smooth[..., 2] = 90
    frames = [(T0 + k * S // 30, smooth + np.uint8(k)) for k in range(5)]
    bag = write_bag(tmp_path / "bag", storage=storage, images=frames, encoding="jpeg", jpeg_quality=95,
                    image_topic="/cam/compressed")
    storage_file = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    back = list(read_images(storage_file, "/cam/compressed"))
    assert [s for s, _ in back] == [s for s, _ in frames]
    for (_, want), (_, got) in zip(frames, back):
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 3.0      # lossy, but close
        assert np.abs(got[..., ::-1].astype(int) - want.astype(int)).mean() > 20.0   # and RGB, not BGR


def test_bag_time_stamps_and_write_order(tmp_path: Path) -> None:
    frames = _frames(4)[::-1]                                                # given out of time order
    bag = write_bag(tmp_path / "bag", storage="mcap", images=frames)
    assert [s for s, _ in read_images(bag, "/camera/image_raw", stamp_source="bag")] == sorted(
        s for s, _ in frames)
    with pytest.raises(ValueError, match="stamp_source"):
        list(read_images(bag, "/camera/image_raw", stamp_source="wall"))


def test_labels_at() -> None:
    events = [LabelEvent(100, "a"), LabelEvent(200, "b")]
    assert labels_at(events, [100, 150, 199, 200, 10**12]) == ["a", "a", "a", "b", "b"]
    assert labels_at(events, [50], default="background") == ["background"]
    with pytest.raises(BagError, match="no label in force at stamp 50 ns .*first label event is at 100"):
        labels_at(events, [50])


def test_missing_topic_lists_the_topics_present(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bag", storage="sqlite3", images=_frames(2), labels=LABELS[:1])
    with pytest.raises(BagError, match=r"bag .*bag: topic '/camera/rgb' not found; topics present: "
                                       r"/action/label \(std_msgs/msg/String, 1 msgs\), "
                                       r"/camera/image_raw \(sensor_msgs/msg/Image, 2 msgs\)"):
        list(read_images(bag, "/camera/rgb"))
    with pytest.raises(BagError, match=r"topic '/action/label': type std_msgs/msg/String is not one of "
                                       r"sensor_msgs/msg/Image"):
        list(read_images(bag, "/action/label"))
    with pytest.raises(BagError, match="topic '/camera/image_raw': type sensor_msgs/msg/Image"):
        read_labels(bag, "/camera/image_raw")


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))


@pytest.mark.parametrize("storage", STORAGES)
def test_truncated_and_corrupt_bags_name_file_and_topic(tmp_path: Path, storage: str) -> None:
    bag = write_bag(tmp_path / "rec", storage=storage, images=_frames(8, 40, 60))
    f = _storage_file(bag)
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * 0.6)])                              # recording cut short
    with pytest.raises(BagError) as info:
        list(read_images(bag, "/camera/image_raw"))
    msg = str(info.value)
    assert f"bag {bag}" in msg and "topic '/camera/image_raw'" in msg and f.name in msg
    assert "corrupt or truncated" in msg or "cannot open" in msg
    f.write_bytes(b"\x00garbage" * 64)                                       # not a storage file at all
    with pytest.raises(BagError, match=rf"topic '/camera/image_raw' \(file {f.name}\): cannot open"):
        list(read_images(bag, "/camera/image_raw"))
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagError, match="metadata.yaml is missing"):
        bag_topics(bag)
    with pytest.raises(BagError, match=r"bag .*nowhere, topic '/x': no such file or directory"):
        list(read_images(tmp_path / "nowhere", "/x"))


def test_undecodable_image_names_message(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    ts = get_typestore(Stores.ROS2_KILTED)
    good = write_bag(tmp_path / "good", storage="mcap", images=_frames(1), encoding="jpeg")
    jpeg = list(read_images(good, "/camera/image_raw/compressed"))   # sanity: the good one reads
    assert len(jpeg) == 1
    path = tmp_path / "bad"
    ctype = "sensor_msgs/msg/CompressedImage"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/compressed", ctype, typestore=ts)
        header = ts.types["std_msgs/msg/Header"](
            stamp=ts.types["builtin_interfaces/msg/Time"](sec=5, nanosec=0), frame_id="c")
        msg = ts.types[ctype](header=header, format="jpeg", data=np.frombuffer(b"\xff\xd8\xff\x00\x01", np.uint8))
        writer.write(conn, 5 * S, ts.serialize_cdr(msg, ctype))
    with pytest.raises(BagError, match=r"topic '/cam/compressed', message 0 \(bag time 5000000000 ns\): "
                                       r"ImageConversionError: truncated jpeg"):
        list(read_images(path, "/cam/compressed"))


def test_write_bag_argument_errors(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bag", images=_frames(1))
    with pytest.raises(BagError, match="already exists"):
        write_bag(bag, images=_frames(1))
    with pytest.raises(ValueError, match="storage"):
        write_bag(tmp_path / "x", storage="rosbag1")
    with pytest.raises(ValueError, match="encoding"):
        write_bag(tmp_path / "y", encoding="h264")
    with pytest.raises(ValueError, match="pad_rows"):
        write_bag(tmp_path / "z", pad_rows=-1)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_mcap_files_carry_real_crcs_checked_by_the_reference_reader(tmp_path: Path) -> None:
    mcap = pytest.importorskip("mcap", reason="mcap (the reference MCAP library) not installed")
    del mcap
    from mcap.records import Chunk, DataEnd, Footer
    from mcap.stream_reader import StreamReader

    bag = write_bag(tmp_path / "bag", storage="mcap", images=_frames(), labels=LABELS)
    with open(_storage_file(bag), "rb") as fh:
        records = list(StreamReader(fh, validate_crcs=True, emit_chunks=True).records)  # raises on a bad CRC
    chunks = [r for r in records if isinstance(r, Chunk)]
    assert chunks and all(c.uncompressed_crc != 0 for c in chunks)
    assert [r.data_section_crc != 0 for r in records if isinstance(r, DataEnd)] == [True]
    assert [r.summary_crc != 0 for r in records if isinstance(r, Footer)] == [True]


def test_a_byte_changed_inside_an_mcap_chunk_is_refused(tmp_path: Path) -> None:
    pixels = np.full((18, 26, 3), 0x5A, np.uint8)
    pixels[3, 4] = (0x11, 0x22, 0x33)
    bag = write_bag(tmp_path / "bag", storage="mcap", images=[(T0, pixels)])
    f = _storage_file(bag)
    data = bytearray(f.read_bytes())
    at = data.find(bytes((0x11, 0x22, 0x33)))
    assert at > 0 and data.find(bytes((0x11, 0x22, 0x33)), at + 1) == -1   # one place: inside the chunk
    np.testing.assert_array_equal(list(read_images(bag, "/camera/image_raw"))[0][1], pixels)  # intact: reads
    data[at + 1] ^= 0x01                                                      # one bit of one pixel
    f.write_bytes(bytes(data))
    with pytest.raises(BagError, match=rf"bag .*bag, topic '/camera/image_raw' \(file {f.name}\): corrupt: "
                                       r"a chunk's CRC-32 does not match its data"):
        list(read_images(bag, "/camera/image_raw"))


def test_write_mcap_crcs_streams_a_large_file_one_chunk_at_a_time(tmp_path: Path) -> None:
    """A replay recorded with its camera images can be many GB: filling in the CRCs must not hold the file.
    A 24 MB MCAP of 1 MB chunks is checksummed with a traced peak of a few MB (reading it whole took twice
    its size), and the reference reader accepts every CRC."""
    import tracemalloc

    from actfusion_ros.tools.bags import McapFileWriter, _typestore

    ts = _typestore()
    string = ts.types["std_msgs/msg/String"]
    path = tmp_path / "big.mcap"
    rng = np.random.default_rng(0)
    with McapFileWriter(path) as writer:       # writes with the CRCs zeroed, then fills them in
        conn = writer.add_connection("/t", "std_msgs/msg/String", typestore=ts)
        for i in range(240):
            text = rng.integers(97, 123, size=100_000, dtype=np.uint8).tobytes().decode()
            writer.write(conn, T0 + i, ts.serialize_cdr(string(data=text), "std_msgs/msg/String"))
    size = path.stat().st_size
    assert size > 24_000_000
    _zero_mcap_crcs(path)
    tracemalloc.start()
    try:
        from actfusion_ros.tools.bags import write_mcap_crcs
        chunks = write_mcap_crcs(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunks >= 20 and path.stat().st_size == size
    assert peak < 8_000_000, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
    mcap = pytest.importorskip("mcap", reason="mcap (the reference MCAP library) not installed")
    del mcap
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader
    with open(path, "rb") as fh:
        records = list(StreamReader(fh, validate_crcs=True, emit_chunks=True).records)  # raises on a bad CRC
    assert sum(isinstance(r, Chunk) for r in records) == chunks


def _zero_mcap_crcs(path: Path) -> None:
    """Set every chunk, data-section and summary CRC of ``path`` back to 0 (as rosbags writes them)."""
    import struct

    from actfusion_ros.tools.bags import _MCAP_CHUNK, _MCAP_DATA_END, _MCAP_FOOTER, MCAP_MAGIC

    data = bytearray(path.read_bytes())
    pos = len(MCAP_MAGIC)
    while True:
        opcode, (length,) = data[pos], struct.unpack_from("<Q", data, pos + 1)
        body = pos + 9
        if opcode == _MCAP_CHUNK:
            struct.pack_into("<I", data, body + 24, 0)
        elif opcode == _MCAP_DATA_END:
            struct.pack_into("<I", data, body, 0)
        elif opcode == _MCAP_FOOTER:
            struct.pack_into("<I", data, body + 16, 0)
            break
        pos = body + length
    path.write_bytes(bytes(data))


def test_write_mcap_crcs_refuses_a_file_that_is_not_mcap(tmp_path: Path) -> None:
    from actfusion_ros.tools.bags import write_mcap_crcs

    path = tmp_path / "x.mcap"
    path.write_bytes(b"not an mcap file")
    with pytest.raises(BagError, match="not a complete MCAP file"):
        write_mcap_crcs(path)
