"""Training: loss goes down, exact resume, Ctrl-C/SIGTERM leave loadable checkpoints, config/data checks.

Data: a synthetic MS-TCN dataset written to a temporary directory from 6 real GTEA label files
(``../shared/data/gtea``); the tiny preset at sample rate 3, one intra-op thread.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from actfusion_model.checkpoint import load_checkpoint
from actfusion_model.config import ConfigError, experiment_config
from actfusion_model.masking import IGNORE_INDEX
from actfusion_training.batches import CachedVideo, draw_sample, soft_targets
from actfusion_training.data import MsTcnDataset, VideoRecord, boundary_targets
from actfusion_training.distributed import init_distributed, shard
from actfusion_training.make_dataset import make_dataset
from actfusion_training.rng import RngBundle
from actfusion_training.run_config import data_facts, resolve_config
from actfusion_training.train import main as train_main
from actfusion_training.trainer import Trainer, TrainingError, TrainOptions, train
from tests.torch_threads import one_torch_thread

REPO = Path(__file__).resolve().parents[1]
TRAIN_VIDEOS = ("S1_Cheese_C1", "S1_Tea_C1", "S2_Coffee_C1", "S2_Peanut_C1")
TEST_VIDEOS = ("S3_Hotdog_C1", "S4_Tea_C1")


# ---------------------------------------------------------------------------------------------- helpers
# (also imported by tests/test_eval_model.py)


def build_dataset(shared_data: Path, root: Path) -> Path:
    """5 + 1 real GTEA label files -> synthetic 16-d MS-TCN dataset under ``root/data`` (train 4, test 2)."""
    src = root / "source"
    (src / "groundTruth").mkdir(parents=True)
    (src / "splits").mkdir()
    shutil.copy(shared_data / "gtea" / "mapping.txt", src / "mapping.txt")
    for name in TRAIN_VIDEOS + TEST_VIDEOS:
        shutil.copy(shared_data / "gtea" / "groundTruth" / f"{name}.txt", src / "groundTruth" / f"{name}.txt")
    (src / "splits" / "train.split1.bundle").write_text("".join(f"{n}.txt\n" for n in TRAIN_VIDEOS))
    (src / "splits" / "test.split1.bundle").write_text("".join(f"{n}.txt\n" for n in TEST_VIDEOS))
    out = root / "data"
    make_dataset(src, out, "synthetic", dim=16, seed=0, noise=0.5)
    return out


def write_config(path: Path, model: dict | None = None, loss: dict | None = None, **training: object) -> Path:
    """A tiny-preset YAML (sample rate 3, 3 DDIM steps) with overrides."""
    values = {"epochs": 2, "lr": 0.003, "accumulate": 2, "eval_every": 1, "checkpoint_every": 1,
              "validation_fraction": 0.25, "seed": 0}
    values.update(training)
    doc = {"preset": "tiny", "model": {"sample_rate": 3, "ddim_steps": 3, **(model or {})}, "training": values}
    if loss:
        doc["loss"] = loss
    path.write_text(yaml.safe_dump(doc))
    return path



def run(config: Path, data: Path, out: Path, **kw) -> str:
    status, _ = train(TrainOptions(config=config, data_root=data, split=1, out=out, progress=False, **kw))
    return status


def state_of(run_dir: Path) -> dict:
    return torch.load(run_dir / "trainer_state.pt", map_location="cpu", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = state_of(a), state_of(b)
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    pa, pb = sa["optimizer"]["state"], sb["optimizer"]["state"]
    for i in pa:
        assert torch.equal(pa[i]["exp_avg"], pb[i]["exp_avg"]) and torch.equal(pa[i]["exp_avg_sq"], pb[i]["exp_avg_sq"])
    la = load_checkpoint(a / "last.pt").model.state_dict()
    lb = load_checkpoint(b / "last.pt").model.state_dict()
    assert all(torch.equal(la[k], lb[k]) for k in la)
    assert sa["progress"]["step"] == sb["progress"]["step"]


def loss_rows(run_dir: Path) -> list[dict[str, str]]:
    return _read_csv(run_dir / "loss.csv")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(shared_data, tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("cfg") / "tiny_test.yaml")


@pytest.fixture(scope="module")
def straight(data: Path, config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 epochs without interruption (3 training videos, accumulate 2: steps after iterations 2, 3, 5, 6)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    with one_torch_thread():
        assert run(config, data, out) == "finished"
    return out


# ---------------------------------------------------------------------------------------------- learning


def test_loss_decreases(data: Path, tmp_path: Path):
    cfg = write_config(tmp_path / "c.yaml", epochs=10, accumulate=1, lr=0.005, eval_every=100,
                       checkpoint_every=100, validation_fraction=0.0)
    assert run(cfg, data, tmp_path / "run", max_videos=3) == "finished"
    rows = loss_rows(tmp_path / "run")
    assert len(rows) == 30 and [int(r["iteration"]) for r in rows] == list(range(1, 31))
    ce = np.array([float(r["enc_ce"]) + float(r["dec_ce"]) for r in rows])
    first, last = ce[:6].mean(), ce[-6:].mean()
    assert last < 0.75 * first, (first, last)
    epochs = _read_csv(tmp_path / "run" / "epochs.csv")
    assert [int(r["epoch"]) for r in epochs] == list(range(1, 11))
    assert float(epochs[-1]["loss"]) < float(epochs[0]["loss"])
    # Every masking type of the config was drawn, offsets in [0, 3).
    assert {r["mask"] for r in rows} <= set(experiment_config("tiny").masking.types)
    assert len({r["mask"] for r in rows}) >= 4 and {int(r["offset"]) for r in rows} <= {0, 1, 2}


# ---------------------------------------------------------------------------------------------- resume


def test_run_directory_contents(straight: Path):
    names = {p.name for p in straight.iterdir()}
    assert {"last.pt", "best.pt", "trainer_state.pt", "config.yaml", "loss.csv", "epochs.csv", "tensorboard"} <= names
    assert any(p.name.startswith("events.out.tfevents") for p in (straight / "tensorboard").iterdir())
    best = load_checkpoint(straight / "best.pt")
    assert best.config.num_classes == 11 and best.config.input_dim == 16 and len(best.class_names) == 11
    val = best.metadata["validation_videos"]
    assert len(val) == 1 and val[0] in TRAIN_VIDEOS and not set(val) & set(TEST_VIDEOS)
    assert set(best.metadata["validation"]) >= {"tas", "lta", "combined"}
    epochs = _read_csv(straight / "epochs.csv")
    assert len(epochs) == 2 and all(r["val_combined"] != "" for r in epochs)
    state = state_of(straight)
    assert state["progress"]["epoch"] == 2 and state["progress"]["step"] == 4


def test_resume_reproduces_straight_run(straight: Path, data: Path, config: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert run(config, data, out, epochs=1) == "finished"
    assert state_of(out)["progress"]["step"] == 2
    assert run(config, data, out, resume=True) == "finished"
    assert_same_weights(straight, out)
    assert loss_rows(out) == loss_rows(straight)


@pytest.mark.parametrize("stop_at", [2, 4])
def test_keyboard_interrupt_leaves_resumable_checkpoint(stop_at: int, straight: Path, data: Path, config: Path,
                                                        tmp_path: Path):
    """Interrupt right after a step (2) and in the middle of an accumulation (4): the checkpoint is the
    last completed step, loadable, and resuming it ends bit-identical to the straight run."""
    out = tmp_path / "run"

    def hook(_trainer: Trainer, iteration: int) -> None:
        if iteration == stop_at:
            raise KeyboardInterrupt

    assert run(config, data, out, on_iteration=hook) == "interrupted"
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.metadata["step"] == {2: 1, 4: 2}[stop_at]
    assert state_of(out)["progress"]["iteration"] == {2: 2, 4: 3}[stop_at]
    assert run(config, data, out, resume=True) == "finished"
    assert_same_weights(straight, out)
    assert loss_rows(out) == loss_rows(straight)  # rows past the checkpoint were dropped and redone


def test_sigterm_stops_after_the_current_step(straight: Path, data: Path, config: Path, tmp_path: Path):
    out = tmp_path / "run"

    def hook(_trainer: Trainer, iteration: int) -> None:
        if iteration == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled as a flag: finish step 1 (iteration 2), then stop

    assert run(config, data, out, on_iteration=hook) == "interrupted"
    assert state_of(out)["progress"]["step"] == 1 and len(loss_rows(out)) == 2
    assert load_checkpoint(out / "last.pt").metadata["iteration"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    assert run(config, data, out, resume=True) == "finished"
    assert_same_weights(straight, out)


def test_second_ctrl_c_interrupts_at_once(straight: Path, data: Path, config: Path, tmp_path: Path):
    out = tmp_path / "run"

    def hook(_trainer: Trainer, iteration: int) -> None:
        if iteration == 1:
            os.kill(os.getpid(), signal.SIGINT)  # first: finish the step ...
            os.kill(os.getpid(), signal.SIGINT)  # ... second: KeyboardInterrupt now, before any step

    assert run(config, data, out, on_iteration=hook) == "interrupted"
    assert state_of(out)["progress"]["step"] == 0 and load_checkpoint(out / "last.pt").metadata["step"] == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert run(config, data, out, resume=True) == "finished"
    assert_same_weights(straight, out)


def test_existing_run_needs_resume_and_same_config(straight: Path, data: Path, tmp_path: Path):
    with pytest.raises(TrainingError, match="--resume"):
        Trainer(TrainOptions(config=straight / "config.yaml", data_root=data, split=1, out=straight))
    other = write_config(tmp_path / "other.yaml", lr=0.01)
    with pytest.raises(TrainingError, match="training.lr"):
        Trainer(TrainOptions(config=other, data_root=data, split=1, out=straight, resume=True))
    with pytest.raises(TrainingError, match="no .*trainer_state.pt"):
        Trainer(TrainOptions(config=other, data_root=data, split=1, out=tmp_path / "empty", resume=True))


# ---------------------------------------------------------------------------------------------- config vs data


def test_yaml_inconsistent_with_data_is_a_clear_error(data: Path, tmp_path: Path, capsys):
    facts = data_facts(MsTcnDataset(data, 1, "train"))
    bad_classes = write_config(tmp_path / "c19.yaml", model={"num_classes": 19})
    with pytest.raises(ConfigError, match=r"num_classes = 19.*mapping\.txt.*gives 11"):
        resolve_config(bad_classes, facts)
    bad_dim = write_config(tmp_path / "d2048.yaml", model={"input_dim": 2048})
    with pytest.raises(ConfigError, match=r"input_dim = 2048.*features.*gives 16"):
        resolve_config(bad_dim, facts)
    ok = resolve_config(write_config(tmp_path / "ok.yaml", model={"num_classes": 11, "input_dim": 16}), facts)
    assert (ok.model.num_classes, ok.model.input_dim) == (11, 16)
    taken = resolve_config(write_config(tmp_path / "plain.yaml"), facts)  # the preset says 19 / 32
    assert (taken.model.num_classes, taken.model.input_dim) == (11, 16)
    rc = train_main(["--config", str(bad_classes), "--data-root", str(data), "--split", "1", "--out",
                     str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert rc == 1 and "num_classes = 19" in err and "gives 11" in err
    assert not (tmp_path / "never").exists()


def test_shipped_configs_load(data: Path):
    facts = data_facts(MsTcnDataset(data, 1, "train"))
    configs = Path(__file__).resolve().parents[1] / "training" / "configs"
    got = {p.stem: resolve_config(p, facts) for p in sorted(configs.glob("*.yaml"))}
    assert set(got) == {"50salads", "breakfast", "gtea", "tiny", "50salads_onehot", "cpu_hour", "demo",
                        "cpu_hour_no_stretch", "cpu_hour_long_videos"}
    salads, breakfast = got["50salads"], got["breakfast"]
    assert (salads.training.lr, salads.training.accumulate, salads.model.sample_rate) == (5e-4, 4, 8)
    assert (breakfast.training.lr, breakfast.loss.soft_label_sigma, breakfast.model.enc_dim) == (1e-4, 4.0, 256)
    assert (got["gtea"].training.weight_decay, got["gtea"].model.cond_layers) == (1e-6, (7, 9))
    assert all("ant_ratio" in c.masking.types for c in got.values())
    for name in ("cpu_hour", "cpu_hour_long_videos", "demo"):  # CPU-budget recipes: batched, EMA, cosine LR
        c = got[name]
        assert (c.training.batch_size, c.training.lr_schedule, c.loss.class_weighting) == (4, "cosine", False)
        assert c.model.dec_input_condition and c.loss.dec_timesteps_per_video == 4 and c.training.ema_decay > 0
    # the long-video variant: carry, windows, sample rate from the data (2 for these GTEA-length videos),
    # validation by the clock; the recipe differs from it in exactly those keys
    from actfusion_training.run_config import auto_windows
    recipe, long_videos = got["cpu_hour"], got["cpu_hour_long_videos"]
    windows = auto_windows(facts.median_frames, 2)  # masking.window_*: auto, from the data
    assert (long_videos.model.masked_input, long_videos.model.sample_rate) == ("carry", 2)
    assert (long_videos.masking.window_observed, long_videos.masking.window_future) == windows
    assert (long_videos.training.eval_every_minutes, long_videos.training.validation_max_videos) == (10, 24)
    assert dataclasses.replace(
        recipe, model=dataclasses.replace(recipe.model, masked_input="carry", sample_rate=2),
        masking=dataclasses.replace(recipe.masking, window_observed=windows[0], window_future=windows[1]),
        training=dataclasses.replace(recipe.training, eval_every_minutes=10, validation_max_videos=24)) == long_videos
    # speed augmentation on; its ablation is the recipe with masking.time_stretch off, nothing else
    assert recipe.masking.time_stretch == 1.25 and got["cpu_hour_no_stretch"].masking.time_stretch == 1.0
    assert dataclasses.replace(got["cpu_hour_no_stretch"], masking=recipe.masking) == recipe


# ---------------------------------------------------------------------------------------------- parts


def test_draw_sample_offsets_masks_and_soft_labels():
    labels = np.repeat(np.arange(4), 30)
    rec = VideoRecord("v", np.random.default_rng(0).standard_normal((8, labels.size)).astype(np.float32), labels)
    video = CachedVideo(rec, boundary_targets(labels, 3.0))
    cfg = experiment_config("tiny", {"model": {"num_classes": 4, "input_dim": 8, "sample_rate": 4},
                                     "loss": {"soft_label_sigma": 2.0}})
    np_rng, py_rng = np.random.default_rng(1), random.Random(1)
    seen = set()
    for _ in range(60):
        s = draw_sample(video, cfg, np_rng, py_rng, torch.device("cpu"))
        seen.add(s.mask_type)
        assert 0 <= s.offset < 4 and s.features.shape[:2] == (1, 8)
        assert s.targets.shape == s.visible.shape == s.boundary.shape and s.soft_targets is not None
        if s.mask_type == "ant_ratio":  # r*N^O crop: targets past the video are unknown, soft labels zero there
            unknown = s.targets[0] == IGNORE_INDEX
            assert s.soft_targets[0][:, unknown].abs().sum() == 0
        else:
            assert s.features.shape[2] == len(range(s.offset, labels.size, 4))
    assert seen == set(cfg.masking.types)
    with pytest.raises(ValueError, match="prefix"):
        soft_targets(np.array([0, IGNORE_INDEX, 1]), 2, 1.0)


def test_rng_bundle_state_roundtrip(tmp_path: Path):
    a = RngBundle(7)
    state = a.state_dict()
    torch.save(state, tmp_path / "s.pt")
    draws = (torch.randn(3, generator=a.torch), a.numpy.random(3), a.python.random(), a.order.permutation(5))
    with a.dropout_scope():
        d1 = torch.rand(3)
    b = RngBundle(99)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    again = (torch.randn(3, generator=b.torch), b.numpy.random(3), b.python.random(), b.order.permutation(5))
    with b.dropout_scope():
        d2 = torch.rand(3)
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2] == again[2] and np.array_equal(draws[3], again[3]) and torch.equal(d1, d2)
    outside = torch.get_rng_state()
    with a.dropout_scope():
        torch.rand(5)
    assert torch.equal(outside, torch.get_rng_state())  # the process-wide generator is untouched


def test_shard_and_single_process_context():
    assert shard(range(5), 0, 1) == [0, 1, 2, 3, 4]
    parts = [shard(range(5), r, 2) for r in range(2)]
    assert parts == [[0, 2, 4], [1, 3, 0]]
    ctx = init_distributed("cpu", environ={})
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (0, 1, False, True)


def test_ddp_two_processes_gloo(data: Path, tmp_path: Path):
    """The DistributedDataParallel path: torchrun, 2 CPU processes (gloo), videos sharded by rank."""
    out = tmp_path / "ddp"
    config = write_config(tmp_path / "ddp.yaml", validation_fraction=0.0, model={"sample_rate": 6})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "actfusion_training.train",
           "--config", str(config), "--data-root", str(data), "--split", "1", "--out", str(out), "--epochs", "1",
           "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = state_of(out)
    assert state["world_size"] == 2 and len(state["progress"]["rng"]) == 2
    assert state["progress"]["step"] == 1  # 4 videos, 2 per rank, accumulate 2: one step
    assert load_checkpoint(out / "last.pt").config.num_classes == 11
    assert len(loss_rows(out)) == 2  # rank 0's iterations only
