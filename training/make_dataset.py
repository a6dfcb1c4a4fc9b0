"""Write an MS-TCN layout dataset whose features are derived from the ground-truth labels.

    python -m actfusion_training.make_dataset --source DATA/gtea --out /tmp/gtea_synth --kind synthetic \
        [--dim 64] [--seed 0]

``--source`` needs ``groundTruth/``, ``splits/`` and ``mapping.txt``; they are copied to ``--out`` and
``features/<video>.npy`` (float32, (D, T)) is written for every ground-truth file, each file atomically.
``--kind onehot`` writes one-hot labels (D = number of classes). A ``synthetic.json`` records the
parameters. The features of a video depend only on the seed and the video's name.
"""
from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from actfusion_model.io import atomic_open, atomic_write_bytes, atomic_write_text
from actfusion_model.labels import ClassMapping, LabelError, read_label_file
from actfusion_training.synthetic import class_prototypes, onehot_features, synthetic_features


def video_rng(seed: int, name: str) -> np.random.Generator:
    """Generator for one video: depends only on ``seed`` and the video name (not on file order)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def make_dataset(source: str | Path, out: str | Path, kind: str, dim: int = 64, seed: int = 0, *,
                 noise: float = 1.0, jitter: int = 4, ambiguity: float = 0.3) -> list[str]:
    """Build the dataset (see module docstring); returns the video names written."""
    source, out = Path(source), Path(out)
    if kind not in ("synthetic", "onehot"):
        raise ValueError(f"kind must be 'synthetic' or 'onehot', got {kind!r}")
    gt_dir, split_dir = source / "groundTruth", source / "splits"
    for need in (gt_dir, split_dir):
        if not need.is_dir():
            raise FileNotFoundError(f"{source} is not an MS-TCN root: missing {need}")
    if out.resolve() == source.resolve():
        raise ValueError("--out must differ from --source")
    mapping = ClassMapping.from_file(source / "mapping.txt")
    label_files = sorted(gt_dir.glob("*.txt"))
    if not label_files:
        raise FileNotFoundError(f"no ground-truth files in {gt_dir}")

    prototypes = None
    if kind == "synthetic":
        prototypes = class_prototypes(mapping.num_classes, dim, np.random.default_rng([int(seed), 0]))
    names = []
    for path in label_files:
        name = path.stem
        labels = read_label_file(path, mapping)
        if kind == "onehot":
            feats = onehot_features(labels, mapping.num_classes)
        else:
            feats = synthetic_features(labels, mapping.num_classes, dim, video_rng(seed, name),
                                       noise=noise, jitter=jitter, ambiguity=ambiguity,
                                       prototypes=prototypes)
        save_npy(out / "features" / f"{name}.npy", feats)
        atomic_write_bytes(out / "groundTruth" / path.name, path.read_bytes())
        names.append(name)
    for bundle in sorted(split_dir.glob("*.bundle")):
        atomic_write_bytes(out / "splits" / bundle.name, bundle.read_bytes())
    atomic_write_bytes(out / "mapping.txt", (source / "mapping.txt").read_bytes())
    params = {"kind": kind, "source": str(source), "videos": len(names),
              "dim": mapping.num_classes if kind == "onehot" else dim}
    if kind == "synthetic":
        params.update(seed=seed, noise=noise, jitter=jitter, ambiguity=ambiguity)
    atomic_write_text(out / "synthetic.json", json.dumps(params, indent=2) + "\n")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m actfusion_training.make_dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, type=Path, help="MS-TCN root with groundTruth/, splits/, mapping.txt")
    p.add_argument("--out", required=True, type=Path, help="output MS-TCN root")
    p.add_argument("--kind", required=True, choices=("synthetic", "onehot"))
    p.add_argument("--dim", type=int, default=64, help="feature dimension (synthetic only; default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=1.0, help="noise norm relative to the unit prototypes")
    p.add_argument("--jitter", type=int, default=4, help="max boundary shift in frames")
    p.add_argument("--ambiguity", type=float, default=0.3, help="probability of an ambiguous stretch per segment")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.dim < 1:
        print("error: --dim must be >= 1", file=sys.stderr)
        return 2
    try:
        names = make_dataset(args.source, args.out, args.kind, args.dim, args.seed,
                             noise=args.noise, jitter=args.jitter, ambiguity=args.ambiguity)
    except (OSError, ValueError, LabelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(args.out), "kind": args.kind, "videos": len(names)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
