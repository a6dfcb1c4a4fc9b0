"""``actfusion-extract``: MS-TCN-layout feature files from videos or rosbags, with the node's own code.

Output under ``--out DIR`` (the layout ``actfusion_training.data.MsTcnDataset`` reads)::

    features/<name>.npy      float32 (D, T): one column per feature frame (at --feature-rate)
    groundTruth/<name>.txt   one label per feature frame (only when labels are given)
    mapping.txt              "<id> <name>" per class; an existing file is kept and extended
    stamps/<name>.npy        int64 (T,): the camera stamp (ns) of each feature frame

Features are computed exactly as the live node computes them: by the same sampling engine
(:class:`~actfusion_ros.sampling.FeatureSampling`: the sampler picks the frames by timestamp, every
frame it accepts as new enters the extractor's context), with
:meth:`~actfusion_model.features.base.FeatureExtractor.extract_windows` on the same windows, only batched (see
:func:`extract_sampled`). Timestamps: a video's frame ``i`` is stamped
``round(i * 1e9 / fps)`` ns; a bag's frames carry their ``header.stamp``.

Labels (optional): ``--label-topic`` (a ``std_msgs/String`` topic in the bag: the label in force at
each feature frame's stamp), or ``--labels FILE`` with one label per input frame (per video frame /
per image message, in order; a directory holds ``<name>.txt`` per input).

Example::

    actfusion-extract episode.mcap_dir --out data/mine --extractor i3d_rgb --weights rgb_imagenet.pt \\
        --feature-rate 2 --image-topic /camera/image_raw/compressed --label-topic /action/label
"""
from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from actfusion_model.features import FeatureExtractor, FrameShapeChanged, available_extractors, build_extractor
from actfusion_model.features.base import check_frame
from actfusion_model.features.pipeline import FeaturePipeline, PipelineMismatch, write_dataset_pipeline
from actfusion_model.io import atomic_open
from actfusion_model.labels import ClassMapping, LabelError
from actfusion_ros.sampling import FRAME_SHAPE, FeatureSampling
from actfusion_ros.time_ns import NS_PER_S, period_ns_from_rate
from actfusion_ros.tools.bags import BagError, count_messages, labels_at, read_images, read_labels


class ExtractError(ValueError):
    """An input cannot be turned into features (names the input and what is wrong)."""


@dataclass(frozen=True)
class SampledFeatures:
    """Features of one input at the feature rate.

    features: ``(T, D)`` float32; stamps_ns: ``(T,)`` int64 camera stamps; frame_indices: ``(T,)``
    positions of the sampled frames in the input sequence; frames_read: input frames seen.
    """

    features: np.ndarray
    stamps_ns: np.ndarray
    frame_indices: np.ndarray
    frames_read: int


def extract_sampled(frames: Iterable[tuple[int, np.ndarray]], extractor: FeatureExtractor,
                    feature_rate_hz: float, *, batch_size: int | None = None,
                    on_frame: Callable[[], None] | None = None) -> SampledFeatures:
    """Features at the feature rate from ``(stamp_ns, rgb)`` frames, as the live stream computes them.

    The offline counterpart of ``StreamingAnticipator.push_frame`` over one episode (no gap or
    backward-jump resets, like ``sample_frame_indices``), on the same engine
    (:class:`~actfusion_ros.sampling.FeatureSampling`): frames the sampler accepts (taken or not due)
    enter the context ring; at taken frames the ring is a window whose feature is computed,
    ``batch_size`` windows per forward pass (default: the extractor's ``batch_size`` attribute, else 8).
    Duplicate and out-of-order stamps are skipped. Memory stays bounded: only the ring and one batch
    of windows are held.

    Raises :class:`~actfusion_model.features.FrameShapeChanged` if the frame size changes within the input.
    """
    sampling = FeatureSampling(extractor, period_ns_from_rate(feature_rate_hz))  # one episode: no resets
    batch = int(batch_size or getattr(extractor, "batch_size", 8) or 8)
    pending: list[np.ndarray] = []
    chunks: list[np.ndarray] = [np.zeros((0, extractor.dim), np.float32)]
    stamps: list[int] = []
    indices: list[int] = []
    n = 0
    for n, (stamp, rgb) in enumerate(frames, start=1):
        if on_frame is not None:
            on_frame()
        shape = sampling.frame_shape
        decision = sampling.decide(int(stamp), check_frame(rgb).shape)
        if decision.reset_reason == FRAME_SHAPE:
            raise FrameShapeChanged(f"frame {n - 1} (stamp {stamp} ns) has shape {rgb.shape}, earlier "
                                    f"frames {shape}; split the input where the image size changes")
        if decision.kind == "not_due":
            sampling.observe(rgb)          # context only (a per-frame extractor keeps nothing)
        elif decision.take:
            pending.append(sampling.window(rgb))
            stamps.append(int(stamp))
            indices.append(n - 1)
            if len(pending) >= batch:
                chunks.append(extractor.extract_windows(pending))
                pending = []
    if pending:
        chunks.append(extractor.extract_windows(pending))
    return SampledFeatures(np.concatenate(chunks, axis=0), np.array(stamps, np.int64),
                           np.array(indices, np.int64), n)


# --------------------------------------------------------------------------- inputs
def is_bag(path: Path) -> bool:
    """True for a rosbag2 directory (or a .db3 / .mcap file inside one)."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.suffix in (".db3", ".mcap") and (path.parent / "metadata.yaml").is_file()


def input_name(path: Path) -> str:
    """Dataset name of an input: the video's stem or the bag directory's name."""
    if path.is_file() and path.suffix in (".db3", ".mcap") and is_bag(path):
        return path.parent.name
    return path.name if path.is_dir() else path.stem


def video_frames(path: Path, fps: float | None = None) -> tuple[Iterator[tuple[int, np.ndarray]], int]:
    """``((stamp_ns, rgb) iterator, frame count)`` of a video read with OpenCV.

    Frame ``i`` is stamped ``round(i * 1e9 / fps)``; ``fps`` defaults to the container's frame rate.
    """
    import cv2
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ExtractError(f"video {path}: OpenCV cannot open it (missing file or unsupported codec)")
    rate = float(fps) if fps else float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not rate > 0:
        cap.release()
        raise ExtractError(f"video {path}: the container gives no frame rate; pass --fps")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        try:
            i = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield int(round(i * NS_PER_S / rate)), np.ascontiguousarray(bgr[:, :, ::-1])
                i += 1
        finally:
            cap.release()

    return frames(), count


def read_label_lines(path: Path) -> list[str]:
    """Per-frame labels: one per non-empty line."""
    if not path.is_file():
        raise ExtractError(f"label file not found: {path}")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


# --------------------------------------------------------------------------- outputs
def save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` atomically."""
    buf = io.BytesIO()
    np.save(buf, array)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getvalue())


def write_outputs(out: Path, name: str, result: SampledFeatures, labels: Sequence[str] | None) -> None:
    """Write features, stamps and (with labels) groundTruth + the extended mapping.txt."""
    if labels is not None:
        mapping_path = out / "mapping.txt"
        names = list(ClassMapping.from_file(mapping_path).names) if mapping_path.is_file() else []
        for label in labels:
            if label not in names:
                names.append(label)
        ClassMapping(tuple(names)).to_file(mapping_path)
        with atomic_open(out / "groundTruth" / f"{name}.txt", "w") as fh:
            fh.write("".join(f"{label}\n" for label in labels))
    save_npy(out / "features" / f"{name}.npy", np.ascontiguousarray(result.features.T, dtype=np.float32))
    save_npy(out / "stamps" / f"{name}.npy", result.stamps_ns.astype(np.int64))


# --------------------------------------------------------------------------- CLI
def _parse_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actfusion-extract",
        description="Write MS-TCN-layout features (features/, groundTruth/, mapping.txt) from videos or "
                    "rosbag2 bags, with the same extractor and sampling as the live node.")
    parser.add_argument("inputs", nargs="+", type=Path, help="video files and/or rosbag2 directories")
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write into")
    parser.add_argument("--extractor", default="i3d_rgb", choices=available_extractors())
    parser.add_argument("--weights", type=Path, help="weights file of the extractor (see docs/features.md)")
    parser.add_argument("--allow-random-weights", action="store_true",
                        help="run a CNN extractor with random weights (tests and demos only)")
    parser.add_argument("--feature-rate", type=float, required=True, metavar="HZ",
                        help="feature rate of the model, e.g. 2")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (CNN extractors; default cpu)")
    parser.add_argument("--batch-size", type=int, help="windows per forward pass")
    parser.add_argument("--clip-frames", type=int, help="I3D clip length in camera frames (default 16)")
    parser.add_argument("--extractor-option", type=_parse_option, action="append", default=[],
                        metavar="KEY=VALUE", help="extra extractor argument, e.g. crop=112 (repeatable)")
    parser.add_argument("--image-topic", default="/camera/image_raw",
                        help="image topic of bag inputs (Image or CompressedImage)")
    parser.add_argument("--label-topic", help="std_msgs/String label topic of bag inputs")
    parser.add_argument("--labels", type=Path,
                        help="per-frame label file (one input) or a directory of <name>.txt")
    parser.add_argument("--default-label",
                        help="label before the first label-topic message (default: that is an error)")
    parser.add_argument("--fps", type=float, help="override the frame rate of video inputs")
    parser.add_argument("--name", help="output name (one input only; default: file stem / bag name)")
    return parser


def _extractor_kwargs(args: argparse.Namespace) -> dict[str, object]:
    kwargs: dict[str, object] = dict(args.extractor_option)
    for key, value in (("weights", args.weights), ("device", args.device), ("batch_size", args.batch_size),
                       ("clip_frames", args.clip_frames)):
        if value is not None:
            kwargs[key] = value
    if args.allow_random_weights:
        kwargs["allow_random_weights"] = True
    return kwargs


def _labels_file(args: argparse.Namespace, name: str) -> Path | None:
    if args.labels is None:
        return None
    return args.labels / f"{name}.txt" if args.labels.is_dir() else args.labels


def process_input(path: Path, name: str, extractor: FeatureExtractor, args: argparse.Namespace,
                  progress_factory: Callable[..., object]) -> SampledFeatures:
    """Extract one input and write its files; return the features."""
    if is_bag(path):
        frames: Iterable[tuple[int, np.ndarray]] = read_images(path, args.image_topic)
        total = count_messages(path, args.image_topic)
    elif path.is_dir():
        raise ExtractError(f"{path}: a directory without metadata.yaml is neither a video nor a rosbag2 bag")
    else:
        if args.label_topic:
            raise ExtractError(f"{path}: --label-topic needs a bag input; use --labels for videos")
        frames, total = video_frames(path, args.fps)
    bar = progress_factory(total=total or None, desc=name, unit="frame", disable=not sys.stderr.isatty())
    try:
        result = extract_sampled(frames, extractor, args.feature_rate, on_frame=lambda: bar.update(1))
    finally:
        bar.close()
    if result.frames_read == 0:
        raise ExtractError(f"{path}: no frames read")
    labels: list[str] | None = None
    label_file = _labels_file(args, name)
    if args.label_topic:
        events = read_labels(path, args.label_topic)
        labels = labels_at(events, result.stamps_ns.tolist(), default=args.default_label)
    elif label_file is not None:
        per_frame = read_label_lines(label_file)
        if len(per_frame) != result.frames_read:
            raise ExtractError(f"{label_file}: {len(per_frame)} labels but {path} has {result.frames_read} "
                               "frames; the file needs one label per input frame")
        labels = [per_frame[i] for i in result.frame_indices.tolist()]
    write_outputs(args.out, name, result, labels)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``actfusion-extract``; returns the exit status (0 ok, 1 error)."""
    from tqdm import tqdm
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.name and len(args.inputs) != 1:
        parser.error("--name needs exactly one input")
    if args.labels is not None and len(args.inputs) > 1 and not args.labels.is_dir():
        parser.error("with several inputs, --labels must be a directory of <name>.txt files")
    if args.labels is not None and args.label_topic:
        parser.error("give either --labels or --label-topic, not both")
    if not args.feature_rate > 0:
        parser.error(f"--feature-rate must be > 0, got {args.feature_rate}")
    try:
        extractor = build_extractor(args.extractor, **_extractor_kwargs(args))
    except TypeError as err:
        parser.error(f"extractor {args.extractor!r} does not take one of the options given: {err}")
    except ValueError as err:
        print(f"actfusion-extract: error: {err}", file=sys.stderr)
        return 1
    try:
        write_dataset_pipeline(args.out, FeaturePipeline.of(args.extractor, args.feature_rate,
                                                            _extractor_kwargs(args)))
    except PipelineMismatch as err:
        print(f"actfusion-extract: error: {err}", file=sys.stderr)
        return 1
    names = [args.name] if args.name else [input_name(p) for p in args.inputs]
    if len(set(names)) != len(names):
        parser.error(f"inputs give duplicate output names: {sorted(n for n in names if names.count(n) > 1)}")
    for path, name in zip(args.inputs, names):
        try:
            result = process_input(path, name, extractor, args, tqdm)
        except (BagError, ExtractError, LabelError, FrameShapeChanged, ValueError) as err:
            print(f"actfusion-extract: error: {err}", file=sys.stderr)
            return 1
        print(f"{name}: {result.frames_read} frames -> {result.features.shape[0]} features "
              f"({extractor.dim}-d) at {args.feature_rate:g} Hz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
