"""Faults in the ROS-free streaming core and in training: what breaks, what the system does, and recovery.

Not repeated here (see tests/test_stream.py): a single backwards jump, a gap at exactly the threshold,
frame-size changes, staleness at exactly ``stale_after_s``, a reset while the forecaster runs
(result discarded), pushes not blocked by inference, malformed forecaster output.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from actfusion_model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from actfusion_model.config import model_config
from actfusion_model.features import build_extractor
from actfusion_model.features.base import FeatureExtractor
from actfusion_model.network import ActFusion
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import ForecastOutput, StreamConfig
from actfusion_ros.tools.world import ActivityWorld

REPO = Path(__file__).resolve().parents[1]
S = 1_000_000_000
T0 = 1_700_000_000 * S
FPS = 30


# --------------------------------------------------------------------------- helpers
class ScriptedForecaster:
    """Fake model: class = feature block; ``fail_on`` call numbers raise, ``delay_s`` sleeps per call."""

    num_classes = 3

    def __init__(self, fail_on: tuple[int, ...] = (), delay_s: float = 0.0) -> None:
        self.fail_on = set(fail_on)
        self.delay_s = delay_s
        self.calls = 0

    def __call__(self, observed: np.ndarray, horizon: int) -> ForecastOutput:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError(f"inference backend failed (call {self.calls})")
        if self.delay_s:
            time.sleep(self.delay_s)
        n = observed.shape[1]
        obs = np.full((3, n), 0.1, np.float32)
        obs[(np.abs(observed[0]) * 7).astype(int) % 3, np.arange(n)] = 0.8
        fut = np.full((3, horizon), 0.1, np.float32)
        fut[0] = 0.8
        return ForecastOutput(obs, fut)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Synthetic camera frames (recycled by the tests with their own stamps)."""
    world = ActivityWorld(width=32, height=24, fps=FPS)
    return [rgb for _, rgb in world.frames(world.episode(3))][:450]


def stamp(i: int) -> int:
    return T0 + i * S // FPS


def make_stream(forecaster=None, **config) -> StreamingAnticipator:
    cfg = StreamConfig(**{"feature_rate_hz": 2.0, "min_observed_frames": 2, "max_window_s": 120.0,
                          "stale_after_s": 2.0, "episode_gap_s": 5.0, **config})
    return StreamingAnticipator(cfg, build_extractor("color_layout", grid=2, bins=4),
                                forecaster or ScriptedForecaster(), ["a", "b", "c"])


def assert_counts_consistent(stream: StreamingAnticipator) -> None:
    st = stream.stats
    assert st.frames_received == (st.frames_accepted + st.frames_not_due + st.duplicates + st.out_of_order
                                  + st.invalid_frames + st.extract_errors), st
    assert st.ticks == st.published + st.skipped_ticks, st


def feed(stream: StreamingAnticipator, frames: list[np.ndarray], indices: range, *, tick_every: int = 15,
         results: list | None = None, pace_s: float = 0.0) -> None:
    """Push camera frames ``indices`` (stamped at 30 fps); tick after every ``tick_every``-th frame."""
    for i in indices:
        if pace_s:
            time.sleep(pace_s)
        stream.push_frame(stamp(i), frames[i % len(frames)])
        if results is not None and i % tick_every == 0:
            results.append(stream.tick(stamp(i)))


# --------------------------------------------------------------------------- camera stall and resume
def test_stall_shorter_than_the_episode_gap_resumes_the_same_episode(frames) -> None:
    stream = make_stream()
    results: list = []
    feed(stream, frames, range(0, 300), results=results)          # 0 .. 9.97 s
    before = results[-1]
    assert before is not None and before.num_observed == 20 and before.episode == 0
    # the camera stalls 4 s (> stale_after_s = 2 s, < episode_gap_s = 5 s); ticks go on at 2 Hz
    ticks = [stream.tick(T0 + t * S // 2) for t in range(20, 29)]  # now = 10.0 .. 14.0 s
    reasons = [stream.last_skip_reason]
    assert [r is not None for r in ticks] == [True] * 4 + [False] * 5  # fresh up to 2 s after 9.97 s
    assert reasons == ["stale"] and stream.stats.stale_ticks == 5
    assert all(r.stamp_ns == before.stamp_ns for r in ticks[:4])  # nothing new: the same last frame
    # frames resume at 14.0 s: same episode, the window keeps the old features and shows the hole
    feed(stream, frames, range(420, 480), results=results)
    after = results[-1]
    assert after is not None and after.episode == 0 and stream.stats.resets == 0
    assert after.num_observed == 20 + 4
    gaps = np.diff(after.observed_stamps_ns)
    assert gaps.max() == 4_500_000_000 and (gaps == S // 2).sum() == after.num_observed - 2
    assert_counts_consistent(stream)


def test_stall_longer_than_the_episode_gap_starts_a_new_episode(frames) -> None:
    stream = make_stream()
    results: list = []
    feed(stream, frames, range(0, 150), results=results)
    assert stream.tick(stamp(149) + 3 * S) is None and stream.last_skip_reason == "stale"
    feed(stream, frames, range(330, 400), results=results)        # resumes after a 6 s hole
    st = stream.stats
    assert dict(st.reset_reasons) == {"gap": 1} and st.episode == 1
    first_new = next(r for r in results if r is not None and r.episode == 1)
    assert first_new.observed_stamps_ns[0] == stamp(330) and first_new.num_observed == 1
    assert first_new.partial and results[-1].num_observed == 5
    assert results[-1].observed[0].start_ns == stamp(330)          # nothing of the old episode
    assert_counts_consistent(stream)


# --------------------------------------------------------------------------- load
def test_slow_concurrent_ticks_do_not_change_what_the_core_computes(frames) -> None:
    """Frames arriving much faster than inference: every frame is still taken or refused exactly as
    without any inference running (the core never drops frames; the node's queue is where drops happen)."""
    quiet = make_stream(max_window_s=300.0)
    feed(quiet, frames, range(0, 450))
    busy = make_stream(ScriptedForecaster(delay_s=0.02), max_window_s=300.0)
    stop = threading.Event()
    results: list = []

    def ticker() -> None:
        while not stop.is_set():
            results.append(busy.tick(stamp(0)))   # the clock behind the frames: never stale

    t = threading.Thread(target=ticker)
    t.start()
    try:
        feed(busy, frames, range(0, 450), pace_s=0.0005)   # ~10 frames per 20 ms inference
    finally:
        stop.set()
        t.join(60)
    f_quiet, s_quiet = quiet.snapshot()
    f_busy, s_busy = busy.snapshot()
    np.testing.assert_array_equal(s_busy, s_quiet)
    np.testing.assert_array_equal(f_busy, f_quiet)
    assert (busy.stats.frames_accepted, busy.stats.frames_not_due) == (quiet.stats.frames_accepted,
                                                                       quiet.stats.frames_not_due) == (30, 420)
    published = [r for r in results if r is not None]
    assert published, "the ticker never produced a forecast"
    for r in published:   # every forecast saw a consistent prefix of the final window
        np.testing.assert_array_equal(r.observed_stamps_ns, s_quiet[:r.num_observed])
    assert_counts_consistent(busy)


def test_push_tick_and_reset_from_three_threads_keep_the_counters_consistent(frames) -> None:
    stream = make_stream(ScriptedForecaster(delay_s=0.002), min_observed_frames=1)
    stop = threading.Event()
    errors: list[BaseException] = []
    results: list = []
    resets = [0]

    def guard(fn):
        def run() -> None:
            try:
                fn()
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)
        return run

    @guard
    def pusher() -> None:
        for i in range(3000):
            stream.push_frame(stamp(i), frames[i % len(frames)])
        stop.set()

    @guard
    def ticker() -> None:
        while not stop.is_set():
            results.append(stream.tick(stamp(0)))

    @guard
    def resetter() -> None:
        while not stop.is_set():
            time.sleep(0.01)
            stream.reset("operator")
            resets[0] += 1

    threads = [threading.Thread(target=f) for f in (pusher, ticker, resetter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    st = stream.stats
    assert dict(st.reset_reasons) == {"operator": resets[0]} and st.episode == resets[0]
    assert st.frames_received == 3000 and st.invalid_frames == st.extract_errors == 0
    assert_counts_consistent(stream)
    assert set(st.skip_reasons) <= {"no_data", "reset_during_inference"}
    for r in results:
        if r is not None:
            assert np.all(np.diff(r.observed_stamps_ns) > 0) and r.num_observed == r.observed_stamps_ns.size


# --------------------------------------------------------------------------- time going backwards
def test_a_looping_bag_restarts_the_episode_and_reproduces_the_first_pass(frames) -> None:
    """The same 10 s played twice with the same stamps (a bag on loop): one reset, identical features."""
    stream = make_stream()
    feed(stream, frames, range(0, 300))
    first = stream.snapshot()
    result_first = stream.tick(stamp(299))
    feed(stream, frames, range(0, 300))
    second = stream.snapshot()
    result_second = stream.tick(stamp(299))
    assert dict(stream.stats.reset_reasons) == {"backward_jump": 1}
    np.testing.assert_array_equal(second[1], first[1])
    np.testing.assert_array_equal(second[0], first[0])          # extractor context was cleared too
    assert result_second.observed == result_first.observed and result_second.episode == 1
    assert_counts_consistent(stream)


# --------------------------------------------------------------------------- errors inside the pipeline
def test_a_failing_forecaster_is_counted_and_the_next_tick_recovers(frames) -> None:
    fc = ScriptedForecaster(fail_on=(2, 3))
    stream = make_stream(fc)
    feed(stream, frames, range(0, 60))
    outcomes = []
    for k in range(4):
        try:
            outcomes.append(stream.tick(stamp(59)) is not None)
        except RuntimeError as err:
            outcomes.append(str(err))
    assert outcomes == [True, "inference backend failed (call 2)", "inference backend failed (call 3)", True]
    st = stream.stats
    assert dict(st.skip_reasons) == {"forecast_error": 2} and st.published == 2
    assert stream.last_skip_reason is None                        # the last tick succeeded
    assert_counts_consistent(stream)


class FlakyExtractor(FeatureExtractor):
    """Mean colour; raises on frames whose red mean is exactly 77 (a 'bad frame')."""

    dim = 3
    context_frames = 1

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        means = frames.reshape(frames.shape[0], -1, 3).mean(axis=1)
        if (means[:, 0] == 77).any():
            raise RuntimeError("extractor failed on a bad frame")
        return means


def test_an_extractor_error_leaves_one_hole_and_the_stream_goes_on() -> None:
    stream = StreamingAnticipator(StreamConfig(feature_rate_hz=2.0, min_observed_frames=1),
                                  FlakyExtractor(), ScriptedForecaster(), ["a", "b", "c"])
    good, bad = np.full((4, 4, 3), 10, np.uint8), np.full((4, 4, 3), 77, np.uint8)
    for i in range(90):
        frame = bad if i == 30 else good                       # frame 30 is a sampled one (t = 1.0 s)
        if i == 30:
            with pytest.raises(RuntimeError, match="bad frame"):
                stream.push_frame(stamp(i), frame)
        else:
            stream.push_frame(stamp(i), frame)
    st = stream.stats
    assert st.extract_errors == 1 and st.frames_accepted == 5
    np.testing.assert_array_equal(stream.snapshot()[1], [stamp(i) for i in (0, 15, 45, 60, 75)])
    assert stream.tick(stamp(89)) is not None
    assert_counts_consistent(stream)


# --------------------------------------------------------------------------- checkpoints: crash mid-write
CRASH_SCRIPT = r"""
import io, os, signal, sys
import torch
from actfusion_model.checkpoint import save_checkpoint
from actfusion_model.config import model_config
from actfusion_model.network import ActFusion

torch.manual_seed(1)
model = ActFusion(model_config("tiny", num_classes=3))
real_save = torch.save

def half_then_killed(obj, fh, *args, **kwargs):
    buf = io.BytesIO()
    real_save(obj, buf, *args, **kwargs)
    data = buf.getvalue()
    fh.write(data[: len(data) // 2])
    fh.flush()
    os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)   # power cut / OOM killer in the middle of the write

torch.save = half_then_killed
save_checkpoint(sys.argv[1], model, ["a", "b", "c"], {"version": 2})
"""


def _weights_equal(a: ActFusion, b: ActFusion) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_process_killed_mid_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        old = ActFusion(model_config("tiny", num_classes=3))
    save_checkpoint(path, old, ["a", "b", "c"], {"version": 1})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(path)], cwd=str(REPO), env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    ckpt = load_checkpoint(path)                                  # the old file, complete and valid
    assert ckpt.metadata == {"version": 1} and _weights_equal(ckpt.model, old)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".model.pt.") and p.suffix == ".tmp"]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the half-written data is only here...
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(leftovers[0])                             # ...and refused if anyone loads it


@pytest.mark.parametrize("interrupt", [OSError("No space left on device"), KeyboardInterrupt()])
def test_an_error_mid_write_keeps_the_previous_checkpoint_and_cleans_up(tmp_path: Path, monkeypatch,
                                                                         interrupt: BaseException) -> None:
    path = tmp_path / "model.pt"
    model = ActFusion(model_config("tiny", num_classes=3))
    save_checkpoint(path, model, ["a", "b", "c"], {"version": 1})
    before = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj, fh, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise interrupt

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(type(interrupt)):
        save_checkpoint(path, model, ["a", "b", "c"], {"version": 2})
    assert path.read_bytes() == before and load_checkpoint(path).metadata == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


# --------------------------------------------------------------------------- training: crash mid-save
VIDEOS = {"v0": [0] * 20 + [1] * 25 + [2] * 15, "v1": [1] * 30 + [0] * 20, "v2": [2] * 18 + [0] * 22 + [1] * 20,
          "v3": [0] * 15 + [2] * 30, "v4": [1] * 20 + [2] * 20, "t0": [0] * 20 + [1] * 20}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 5-video synthetic MS-TCN dataset (3 classes, 8-d features) and a 2-epoch tiny config."""
    from actfusion_training.make_dataset import make_dataset

    root = tmp_path_factory.mktemp("tinydata")
    src = root / "src"
    (src / "groundTruth").mkdir(parents=True)
    (src / "splits").mkdir()
    (src / "mapping.txt").write_text("0 reach\n1 pour\n2 stir\n")
    for name, labels in VIDEOS.items():
        (src / "groundTruth" / f"{name}.txt").write_text("".join(["reach\n", "pour\n", "stir\n"][i] for i in labels))
    (src / "splits" / "train.split1.bundle").write_text("".join(f"{n}.txt\n" for n in VIDEOS if n != "t0"))
    (src / "splits" / "test.split1.bundle").write_text("t0.txt\n")
    make_dataset(src, root / "data", "synthetic", dim=8, seed=0, noise=0.5)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({"preset": "tiny", "model": {"sample_rate": 1, "ddim_steps": 2},
                                      "training": {"epochs": 2, "lr": 0.003, "accumulate": 2, "eval_every": 1,
                                                   "checkpoint_every": 1, "validation_fraction": 0.25,
                                                   "seed": 0}}))
    return root / "data", config


def _train(data: Path, config: Path, out: Path, resume: bool = False) -> str:
    from actfusion_training.trainer import TrainOptions, train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(TrainOptions(config=config, data_root=data, split=1, out=out, resume=resume,
                                  progress=False))[0]
    finally:
        torch.set_num_threads(before)


class SaveRecorder:
    """Wraps torch.save: records the file each call writes; can crash mid-write of one of them."""

    def __init__(self, real, crash_at: int | None = None) -> None:
        self.real, self.crash_at, self.names = real, crash_at, []

    def __call__(self, obj, fh, *args, **kwargs):
        name = Path(os.readlink(f"/proc/self/fd/{fh.fileno()}")).name   # ".last.pt.k3x9.tmp"
        self.names.append(name[1:].rsplit(".", 2)[0] if name.endswith(".tmp") else name)
        if len(self.names) - 1 == self.crash_at:
            buf = io.BytesIO()
            self.real(obj, buf, *args, **kwargs)
            fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise SimulatedCrash(f"crash while writing {self.names[-1]}")
        return self.real(obj, fh, *args, **kwargs)


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the trainer catches it (like the process dying)."""


@pytest.fixture(scope="module")
def straight_run(tiny_run, tmp_path_factory) -> tuple[Path, list[str]]:
    data, config = tiny_run
    out = tmp_path_factory.mktemp("straight") / "run"
    recorder = SaveRecorder(torch.save)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "save", recorder)
        assert _train(data, config, out) == "finished"
    return out, recorder.names


@pytest.mark.parametrize("victim", ["trainer_state.pt", "last.pt", "best.pt"])
def test_a_crash_while_saving_the_final_checkpoints_loses_nothing_on_resume(tiny_run, straight_run, tmp_path,
                                                                          monkeypatch, victim: str) -> None:
    data, config = tiny_run
    straight, writes = straight_run
    assert writes.count(victim) >= 1, writes
    crash_at = len(writes) - 1 - writes[::-1].index(victim)        # its last write (end of the run)
    out = tmp_path / "run"
    monkeypatch.setattr(torch, "save", SaveRecorder(torch.save, crash_at=crash_at))
    with pytest.raises(SimulatedCrash):
        _train(data, config, out)
    monkeypatch.undo()
    # every file on disk is complete and loadable (the interrupted one, if any, is its previous version)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    for name in ("last.pt", "best.pt"):
        if (out / name).exists():
            load_checkpoint(out / name)
    committed = (out / "trainer_state.pt").exists()
    if committed:
        torch.load(out / "trainer_state.pt", weights_only=True)
    else:   # the crash hit the very first save: nothing was committed, --resume refuses, start again
        assert victim != "trainer_state.pt" and writes.index(victim) == crash_at
    # resuming (or restarting) reproduces the uninterrupted run: nothing of the last epoch is lost
    assert _train(data, config, out, resume=committed) == "finished"
    for name in ("last.pt", "best.pt"):
        got, want = load_checkpoint(out / name), load_checkpoint(straight / name)
        assert _weights_equal(got.model, want.model), f"{name} differs from the uninterrupted run"
        assert got.metadata["step"] == want.metadata["step"] and got.metadata["epoch"] == want.metadata["epoch"]
    with open(out / "loss.csv") as got_csv, open(straight / "loss.csv") as want_csv:
        assert [r.split(",")[:4] for r in got_csv] == [r.split(",")[:4] for r in want_csv]  # no duplicated rows
    state, ref = (torch.load(p / "trainer_state.pt", weights_only=True) for p in (out, straight))
    assert state["progress"]["step"] == ref["progress"]["step"]
    assert all(torch.equal(state["model"][k], ref["model"][k]) for k in ref["model"])


def test_a_truncated_trainer_state_is_refused_on_resume(tiny_run, straight_run, tmp_path: Path) -> None:
    """A state file cut short (copied from a crashed disk, say) is never resumed from as if valid."""
    import shutil

    from actfusion_training.trainer import Trainer, TrainingError, TrainOptions

    data, config = tiny_run
    run = tmp_path / "run"
    shutil.copytree(straight_run[0], run)
    state = run / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(TrainingError, match=r"trainer_state\.pt: cannot read trainer state"):
        Trainer(TrainOptions(config=config, data_root=data, split=1, out=run, resume=True, progress=False))
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(last)
