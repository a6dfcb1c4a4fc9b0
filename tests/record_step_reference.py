"""Record the reference training step that tests/test_batching.py compares batch size 1 against.

    PYTHONPATH=$PWD python -m tests.record_step_reference   # writes tests/data/batch1_step_reference.pt

Recorded once from the trainer as it was before batched training existed (commit e2b46e0): the tiny
preset on a self-contained synthetic dataset (:func:`write_toy_dataset`, no shared data), unweighted CE (so the
later weighted-CE fix does not move it), one intra-op thread. Stored: the loss terms of iterations 1 and 2, every
parameter's gradient after iteration 1 (accumulate 2: no optimizer step yet) and the weights after the first step.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from actfusion_training.make_dataset import make_dataset
from actfusion_training.trainer import LOSS_TERMS, Trainer, TrainOptions
from tests.test_train import loss_rows, write_config
from tests.torch_threads import one_torch_thread

OUT = Path(__file__).resolve().parent / "data" / "batch1_step_reference.pt"


TOY_CLASSES = ("background", "take", "open", "pour", "close")


def write_toy_dataset(root: Path, lengths: tuple[int, ...] = (150, 210, 96, 180, 120)) -> Path:
    """A 16-d synthetic MS-TCN dataset under ``root/data`` from seeded random segment labels (split 1)."""
    rng = np.random.default_rng(7)
    src = root / "source"
    (src / "groundTruth").mkdir(parents=True)
    (src / "splits").mkdir()
    (src / "mapping.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(TOY_CLASSES)))
    names = [f"video{i}" for i in range(len(lengths))]
    for name, length in zip(names, lengths):
        cuts = np.sort(rng.choice(np.arange(5, length - 5), size=4, replace=False))
        labels = np.repeat(rng.integers(0, len(TOY_CLASSES), size=5), np.diff([0, *cuts, length]))
        (src / "groundTruth" / f"{name}.txt").write_text("".join(TOY_CLASSES[c] + "\n" for c in labels))
    (src / "splits" / "train.split1.bundle").write_text("".join(f"{n}.txt\n" for n in names[:-1]))
    (src / "splits" / "test.split1.bundle").write_text(f"{names[-1]}.txt\n")
    make_dataset(src, root / "data", "synthetic", dim=16, seed=0, noise=0.5)
    return root / "data"


def record_reference_step(root: Path, **training: object) -> dict:
    """Run 2 iterations of the reference setup under ``root``; return what the reference file holds."""
    data = write_toy_dataset(root)
    config = write_config(root / "cfg.yaml", loss={"class_weighting": False}, epochs=1, accumulate=2,
                          validation_fraction=0.0, **training)
    grads: dict[str, torch.Tensor] = {}

    def capture(trainer: Trainer, iteration: int) -> None:
        if iteration == 1:
            grads.update({k: p.grad.detach().clone() for k, p in trainer.model.named_parameters()
                          if p.grad is not None})
        if iteration == 2:
            trainer.stop.requested = True

    with one_torch_thread():
        trainer = Trainer(TrainOptions(config=config, data_root=data, split=1, out=root / "run", progress=False,
                                       on_iteration=capture))
        trainer.run()
    rows = loss_rows(root / "run")[:2]
    return {"losses": [{k: float(r[k]) for k in LOSS_TERMS if r[k] != ""} for r in rows],
            "grads": grads,
            "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        ref = record_reference_step(Path(tmp))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ref, OUT)
    print(f"wrote {OUT}: losses {ref['losses']}")
