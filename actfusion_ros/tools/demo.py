"""The newcomer demo: camera -> features -> ActFusion -> live forecasts -> replay report, on one machine.

1. A synthetic activity world (:mod:`actfusion_ros.tools.world`: a person making tea, frames rendered from
   an action grammar) provides training episodes and one unseen test episode.
2. Features come from the same causal extractor and feature-rate sampling the node uses
   (:func:`actfusion_ros.tools.extract.extract_sampled`), written as an MS-TCN dataset.
3. A tiny ActFusion is trained on them on the CPU (:mod:`actfusion_training.trainer`, ``training/configs/
   demo.yaml``) for a fixed number of optimizer steps (its ``training.max_steps``), so the model, and every
   figure after it, is the same on a fast or a loaded machine; only the time it takes differs. A progress
   bar shows the steps; a generous wall-clock guard (``--max-train-minutes``) stops a machine too slow for
   it, and then the console and the report say the model was stopped early.
4. The unseen episode is written to a rosbag2 (JPEG frames + a ground-truth label topic).
5. Live: ``actfusion_node`` runs as its own process over real DDS (loopback only) while
   ``actfusion-play`` publishes the bag; the demo prints every forecast as it arrives. Without rclpy
   (or with ``--no-dds``) the streaming core is driven in-process instead.
6. ``actfusion-replay`` evaluates the whole pipeline on the bag: metrics, latency, timeline PNG.

Nothing needs the network or ../shared. Outputs go to ``--work`` (default ``demo_output/``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from actfusion_model.labels import segments_from_labels
from actfusion_ros.next_actions import TimedAlternative, format_next_actions
from actfusion_ros.tools.ros_domain import domain_id
from actfusion_ros.tools.world import ActivityWorld, Episode

REPO = Path(__file__).resolve().parents[2]
EXTRACTOR = "color_layout"
EXTRACTOR_KWARGS: dict[str, Any] = {"grid": 4, "bins": 8}
DEMO_CONFIG = REPO / "training" / "configs" / "demo.yaml"
#: Futures sampled per forecast: on 24 unseen episodes their per-frame consensus beat one sample (MoC 57.1 vs
#: 55.8, acc @ 5 s 48.2 vs 43.7: ``benchmarks/bench_demo_episodes.py --num-samples 8`` vs ``--num-samples 1``).
NUM_SAMPLES = 8
#: Rendered episodes (2 held out, 15 % of the rest for validation): with 40 the model learned sequence patterns of
#: its 32 training episodes that the world does not have and lost to "repeat last" at 2 s on the unseen episode
#: (docs/training.md, "Does the forecast leave the current action too early?"); 160 made ``make demo`` 8 s longer.
DEMO_EPISODES = 160
#: After the bag has been played, how long the live part keeps listening for forecasts still in flight.
DRAIN_S = 5.0
#: The wall-clock guard of the training (minutes): only a machine far slower than the README's (1605 steps in
#: 2.5 minutes; about 6 minutes with the other core busy) reaches it; the model is then reported as stopped early.
MAX_TRAIN_MINUTES = 30.0
IMAGE_TOPIC = "/camera/image_raw/compressed"
LABEL_TOPIC = "/action/label"


def _say(msg: str) -> None:
    print(msg, flush=True)


def build_dataset(world: ActivityWorld, seeds: Sequence[int], root: Path, feature_rate_hz: float,
                  *, test_count: int = 2) -> None:
    """Write an MS-TCN dataset (features at the feature rate, one label per feature frame)."""
    from actfusion_model.features import build_extractor
    from actfusion_model.features.pipeline import FeaturePipeline, write_dataset_pipeline
    from actfusion_model.io import atomic_write_text
    from actfusion_model.labels import ClassMapping
    from actfusion_ros.tools.extract import extract_sampled

    extractor = build_extractor(EXTRACTOR, **EXTRACTOR_KWARGS)
    names = []
    for seed in seeds:
        ep = world.episode(seed)
        sampled = extract_sampled(world.frames(ep), extractor, feature_rate_hz)
        name = f"episode_{seed:03d}"
        names.append(name)
        (root / "features").mkdir(parents=True, exist_ok=True)
        np.save(root / "features" / f"{name}.npy", np.ascontiguousarray(sampled.features.T))
        labels = ep.labels[sampled.frame_indices]
        atomic_write_text(root / "groundTruth" / f"{name}.txt",
                          "".join(world.class_names[i] + "\n" for i in labels))
    ClassMapping(tuple(world.class_names)).to_file(root / "mapping.txt")
    test, train = names[:test_count], names[test_count:]
    atomic_write_text(root / "splits" / "train.split1.bundle", "".join(f"{n}.txt\n" for n in train))
    atomic_write_text(root / "splits" / "test.split1.bundle", "".join(f"{n}.txt\n" for n in test))
    write_dataset_pipeline(root, FeaturePipeline.of(EXTRACTOR, feature_rate_hz, EXTRACTOR_KWARGS))


@dataclass(frozen=True)
class TrainingOutcome:
    """What the demo's training did: ``steps`` optimizer steps of the ``max_steps`` asked for (None: no step
    limit, e.g. ``--epochs`` decided), in ``seconds`` of wall-clock; ``stopped_early`` when the wall-clock guard
    (or a signal) ended it before its steps or epochs were done, so the model is under-trained."""

    status: str
    steps: int
    epochs: float   # steps / optimizer steps per epoch
    max_steps: int | None
    seconds: float
    guard_minutes: float
    stopped_early: bool

    def summary(self) -> str:
        """One line for the console and the report."""
        asked = f" of training.max_steps = {self.max_steps}" if self.max_steps is not None else ""
        line = f"{self.steps} optimizer steps{asked} ({self.epochs:.1f} epochs) in {self.seconds:.0f} s"
        if self.max_steps is not None and self.steps < self.max_steps and not self.stopped_early:
            line += " (the epochs asked for ended it first)"
        if self.stopped_early:
            why = (f"the {self.guard_minutes:g}-minute guard" if self.status == "guard" else
                   "an interrupt" if self.status == "interrupted" else self.status)
            line += (f"; STOPPED EARLY by {why}: the model is under-trained and the figures below are not "
                     "the README's")
        return line


class StepProgress:
    """A progress bar over optimizer steps: tqdm on a terminal, else a plain line every ``every`` percent
    (a log file gets no carriage returns)."""

    def __init__(self, total: int | None, *, tty: bool | None = None, every: int = 10,
                 write: Callable[[str], None] = print) -> None:
        self.total, self.every, self.write = total, every, write
        self.tty = sys.stdout.isatty() if tty is None else tty
        self._bar = None
        self._next_pct = every
        if self.tty and total:
            from tqdm import tqdm
            self._bar = tqdm(total=total, unit="step", desc="      training", file=sys.stdout, leave=True)
        self._shown = 0

    def update(self, steps: int, seconds: float) -> None:
        if self._bar is not None:
            self._bar.update(steps - self._shown)
            self._shown = steps
            return
        if not self.total:
            return
        pct = 100 * steps // self.total
        if pct >= self._next_pct:
            self.write(f"      training: {pct:3d}% ({steps}/{self.total} steps, {seconds:.0f} s)")
            self._next_pct = (pct // self.every + 1) * self.every

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def demo_config(work: Path, max_steps: int | None) -> Path:
    """:data:`DEMO_CONFIG`, with ``training.max_steps`` replaced when ``max_steps`` is given (a copy in ``work``)."""
    if max_steps is None:
        return DEMO_CONFIG
    from actfusion_model.io import atomic_write_text

    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data.setdefault("training", {})["max_steps"] = int(max_steps)
    path = work / "demo_config.yaml"
    atomic_write_text(path, f"# {DEMO_CONFIG.name} with training.max_steps = {max_steps} (actfusion-demo "
                      f"--max-steps)\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def train_model(root: Path, run: Path, out: Path, *, config: Path = DEMO_CONFIG, epochs: int | None = None,
                guard_minutes: float = MAX_TRAIN_MINUTES, clock: Callable[[], float] = time.monotonic,
                progress: bool | None = None) -> TrainingOutcome:
    """Train ``config`` on ``root`` until its ``training.max_steps`` (or ``epochs``, whichever ends first);
    copy the selected checkpoint (with its pipeline record) to ``out``.

    ``guard_minutes`` of wall-clock (``clock``) is only a guard: reaching it stops the training after the current
    step and the outcome says ``stopped_early``. It is not the trainer's time budget, which would also shorten the
    LR schedule to what it expects to reach: the schedule spans exactly ``max_steps`` on any machine.
    """
    from actfusion_model.io import atomic_write_bytes
    from actfusion_training.trainer import TrainOptions, train

    t0 = clock()
    seen: dict[str, Any] = {}
    bar: StepProgress | None = None

    def on_iteration(trainer: Any, _iteration: int) -> None:
        nonlocal bar
        if bar is None:
            bar = StepProgress(trainer.cfg.training.max_steps, tty=progress)
        seen["trainer"] = trainer
        bar.update(trainer.progress.step, clock() - t0)
        if clock() - t0 >= 60.0 * guard_minutes and not trainer.stop.requested:
            seen["guard"] = True
            trainer.stop.requested = True   # the trainer stops after this step, saves, and says so
            trainer.stop.signal_name = f"the demo's {guard_minutes:g}-minute guard"

    try:
        status, run_dir = train(TrainOptions(config=config, data_root=root, split=1, out=run, epochs=epochs,
                                             progress=False, on_iteration=on_iteration))
    finally:
        if bar is not None:
            bar.close()
    seconds = clock() - t0
    trainer = seen.get("trainer")
    if trainer is None:
        raise RuntimeError("the demo's training ran no step")
    tc = trainer.cfg.training
    steps = int(trainer.progress.step)
    if seen.get("guard"):
        status = "guard"
    reached = tc.max_steps is not None and steps >= tc.max_steps
    stopped_early = status in ("guard", "interrupted", "budget") and not reached
    best = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"
    atomic_write_bytes(out, best.read_bytes())
    return TrainingOutcome(status=status, steps=steps, epochs=round(steps / max(1, trainer.steps_per_epoch()), 2),
                           max_steps=tc.max_steps,
                           seconds=float(seconds), guard_minutes=float(guard_minutes), stopped_early=stopped_early)


def write_training_record(work: Path, outcome: TrainingOutcome) -> None:
    """``work/training.json``: the outcome, read again when a later run reuses the model."""
    from actfusion_model.io import atomic_write_text

    atomic_write_text(work / "training.json", json.dumps(asdict(outcome), indent=2) + "\n")


def read_training_record(work: Path) -> TrainingOutcome | None:
    path = work / "training.json"
    try:
        return TrainingOutcome(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def add_training_to_report(report_md: Path, outcome: TrainingOutcome | None) -> None:
    """Put the training's outcome at the top of the replay's ``replay.md`` (rewritten atomically)."""
    from actfusion_model.io import atomic_write_text

    if outcome is None or not report_md.is_file():
        return
    text = report_md.read_text()
    head, sep, rest = text.partition("\n")
    note = (f"\n**Model: {outcome.summary()}.**\n" if outcome.stopped_early
            else f"\nModel (actfusion-demo): {outcome.summary()}.\n")
    atomic_write_text(report_md, head + sep + note + rest if sep else text + "\n" + note)


def label_events(world: ActivityWorld, episode: Episode) -> list[tuple[int, str]]:
    """Ground-truth label changes as (stamp_ns, name)."""
    period = 1e9 / episode.fps
    return [(int(round(s.start * period)), world.class_names[s.label]) for s in segments_from_labels(episode.labels)]


def write_episode_bag(world: ActivityWorld, episode: Episode, path: Path) -> Path:
    """The unseen episode as a rosbag2 (MCAP): JPEG frames and the ground-truth label topic."""
    from actfusion_ros.tools.bags import write_bag

    if path.exists():
        shutil.rmtree(path)
    return write_bag(path, storage="mcap", images=list(world.frames(episode)), encoding="jpeg",
                     labels=label_events(world, episode), image_topic=IMAGE_TOPIC, label_topic=LABEL_TOPIC)


def describe(current: tuple[str, float], future: Sequence[tuple[str, float, float]], t0_ns: int,
             stamp_ns: int, truth: str, next_actions: Sequence[TimedAlternative] = ()) -> str:
    """One console line: now, what comes next, and the truth for comparison.

    "next" is the next-action distribution when the forecast carries one (``next_actions``, e.g.
    ``add_sugar 70% @ 12.8s (12.1-13.6), stir 20% @ 14.0s``), else the first future segments' starts.
    """
    if next_actions:
        nxt = format_next_actions(next_actions, t0_ns)
    else:
        if future and future[0][0] == current[0]:
            future = future[1:]  # the current action continuing is not news
        nxt = ", ".join(f"{lab} @ {(start - t0_ns) / 1e9:.1f}s" for lab, start, _ in future[:3]) or "-"
    return (f"[t={(stamp_ns - t0_ns) / 1e9:5.1f}s] now: {current[0]:<11} ({current[1]:.2f})  "
            f"next: {nxt:<60} | truth now: {truth}")


def _time_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def message_next_actions(msg: Any) -> tuple[TimedAlternative, ...]:
    """The ``next_actions`` of an ``ActionForecast`` message (empty when it has none, or an older build)."""
    return tuple(TimedAlternative(a.label, float(a.probability), _time_ns(a.expected_start), _time_ns(a.start_lower),
                                  _time_ns(a.start_upper)) for a in getattr(msg, "next_actions", ()))


def result_line(result: Any, t0_ns: int, truth: str) -> str:
    """:func:`describe` of a stream result (:class:`~actfusion_ros.stream_types.ForecastResult`): its current
    action, its next-action distribution (``next_actions``) and its future segments."""
    future = [(s.label, s.start_ns, s.end_ns) for s in result.future]
    return describe((result.current.label, result.current.confidence), future, t0_ns, result.stamp_ns, truth,
                    result.next_actions)


def live_core(bag: Path, checkpoint: Path, feature_rate_hz: float, truth_at: Any) -> int:
    """Drive the streaming core in-process (no ROS) at bag pace x100, printing forecasts."""
    from actfusion_model.features import build_extractor
    from actfusion_ros.stream import StreamingAnticipator
    from actfusion_ros.stream_model import ModelForecaster
    from actfusion_ros.stream_types import StreamConfig
    from actfusion_ros.tools.bags import read_images

    forecaster = ModelForecaster.from_checkpoint(checkpoint, num_samples=NUM_SAMPLES)
    core = StreamingAnticipator(StreamConfig(feature_rate_hz=feature_rate_hz, max_horizon_s=60.0),
                                build_extractor(EXTRACTOR, **EXTRACTOR_KWARGS), forecaster,
                                forecaster.class_names)
    shown, next_tick, t0 = 0, None, None
    for stamp, rgb in read_images(bag, IMAGE_TOPIC):
        t0 = stamp if t0 is None else t0
        core.push_frame(stamp, rgb)
        next_tick = stamp + 1_000_000_000 if next_tick is None else next_tick
        if stamp >= next_tick:
            next_tick += 1_000_000_000
            r = core.tick(stamp)
            if r is not None and not r.partial:
                _say(result_line(r, t0, truth_at(r.stamp_ns)))
                shown += 1
    return shown


def demo_domain_id() -> int:
    """The demo's ROS domain: ``ROS_DOMAIN_ID`` when set, else one in 150..209 derived from the pid."""
    return domain_id(150 + os.getpid() % 60)


def live_dds(bag: Path, checkpoint: Path, feature_rate_hz: float, truth_at: Any, work: Path, rate: float) -> int:
    """Run actfusion_node and actfusion-play as processes over loopback DDS; print forecasts received."""
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(demo_domain_id()),
               FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_local.xml"), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                                           "FASTDDS_DEFAULT_PROFILES_FILE")})
    params = work / "demo_params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "image_topic": IMAGE_TOPIC, "compressed": True, "qos_reliability": "reliable", "qos_depth": 10,
        "checkpoint": str(checkpoint), "extractor": EXTRACTOR, "extractor_kwargs": json.dumps(EXTRACTOR_KWARGS),
        "feature_rate_hz": float(feature_rate_hz), "tick_rate_hz": 1.0, "max_horizon_s": 60.0,
        "num_threads": 1, "num_samples": NUM_SAMPLES, "use_sim_time": True}}}))
    import rclpy
    from actfusion_msgs.msg import ActionForecast
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    node_log = open(work / "node.log", "w")
    node = subprocess.Popen([sys.executable, "-m", "actfusion_ros.node", "--ros-args", "--params-file", str(params)],
                            env=env, stdout=node_log, stderr=subprocess.STDOUT)
    context = rclpy.Context()
    rclpy.init(context=context)
    listener = rclpy.create_node("actfusion_demo_listener", context=context)
    received: list[Any] = []
    listener.create_subscription(ActionForecast, "/actfusion/future_actions", received.append,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    player = None
    shown = 0
    try:
        time.sleep(1.0)
        player = subprocess.Popen([sys.executable, "-m", "actfusion_ros.tools.play", str(bag), "--rate", str(rate),
                                   "--topics", IMAGE_TOPIC, "--wait-timeout", "30"], env=env)
        t0 = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            while received:
                msg = received.pop(0)
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                t0 = stamp - int(msg.num_observed_frames * 1e9 / feature_rate_hz) if t0 is None else t0
                if msg.partial:
                    continue
                fut = [(s.label, _time_ns(s.start), 0) for s in msg.future]
                _say(describe((msg.current.label, msg.current.confidence), fut, 0, stamp, truth_at(stamp),
                              message_next_actions(msg)))
                shown += 1
            if player.poll() is not None and not received:
                # The bag is played out; forecasts the node computed from its last frames may still be on
                # their way (a loaded machine): wait until none has come for DRAIN_S.
                quiet_until = time.monotonic() + DRAIN_S
                while not received and time.monotonic() < quiet_until:
                    executor.spin_once(timeout_sec=0.1)
                if not received:
                    break
            if node.poll() is not None:
                raise RuntimeError(f"actfusion_node exited with {node.returncode}; see {work / 'node.log'}")
        if player.returncode not in (0, None):
            raise RuntimeError(f"actfusion-play failed with exit code {player.returncode}")
    finally:
        for proc in (player, node):
            if proc is not None and proc.poll() is None:
                proc.send_signal(2)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        executor.shutdown()
        listener.destroy_node()
        rclpy.try_shutdown(context=context)
        node_log.close()
    return shown


def ros_available() -> bool:
    """True when rclpy and the message packages the node needs import."""
    try:
        import actfusion_msgs.msg  # noqa: F401
        import rclpy  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - any import failure means: no ROS here
        return False


def main(argv: list[str] | None = None) -> int:
    """Run the whole demo; see the module docstring."""
    ap = argparse.ArgumentParser(prog="actfusion-demo", description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("demo_output"), help="output folder")
    ap.add_argument("--episodes", type=int, default=DEMO_EPISODES, help="training + held-out episodes")
    ap.add_argument("--max-steps", type=int, default=None, help="optimizer steps to train (default: "
                    f"training.max_steps of {DEMO_CONFIG.name})")
    ap.add_argument("--epochs", type=int, default=None, help="stop training after this many epochs, if that "
                    "comes first (default: the steps decide)")
    ap.add_argument("--max-train-minutes", type=float, default=MAX_TRAIN_MINUTES,
                    help="wall-clock guard: stop the training after this long and report it as stopped early")
    ap.add_argument("--feature-rate", type=float, default=4.0, help="model feature rate (Hz)")
    ap.add_argument("--test-seed", type=int, default=1000, help="seed of the unseen episode")
    ap.add_argument("--retrain", action="store_true", help="train again even if a model exists")
    ap.add_argument("--no-dds", action="store_true", help="drive the streaming core in-process instead")
    ap.add_argument("--rate", type=float, default=2.0, help="bag playback speed for the live part")
    args = ap.parse_args(argv)
    try:
        demo_domain_id()  # a bad ROS_DOMAIN_ID is refused before minutes of training
        if args.max_steps is not None and args.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {args.max_steps}")
        if not args.max_train_minutes > 0:
            raise ValueError(f"--max-train-minutes must be > 0, got {args.max_train_minutes}")
    except ValueError as err:
        print(f"actfusion-demo: error: {err}", file=sys.stderr)
        return 2

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    import torch
    torch.set_num_threads(1)  # a tiny model: one thread is faster than two, and leaves a core for the node
    world = ActivityWorld()
    model_path = work / "model.pt"
    t_start = time.perf_counter()
    if args.retrain or not model_path.exists():
        _say(f"[1/5] rendering {args.episodes} episodes and extracting '{EXTRACTOR}' features at "
             f"{args.feature_rate:g} Hz (the node's extractor and sampler) ...")
        data = work / "dataset"
        shutil.rmtree(data, ignore_errors=True)
        build_dataset(world, range(args.episodes), data, args.feature_rate)
        config = demo_config(work, args.max_steps)
        steps = yaml.safe_load(config.read_text()).get("training", {}).get("max_steps")
        _say(f"[2/5] training a small ActFusion ({DEMO_CONFIG.name}) for {steps} optimizer steps on the CPU "
             f"(guard: {args.max_train_minutes:g} min) ...")
        shutil.rmtree(work / "run", ignore_errors=True)
        training = train_model(data, work / "run", model_path, config=config, epochs=args.epochs,
                               guard_minutes=args.max_train_minutes)
        write_training_record(work, training)
        _say(f"      trained {training.summary()} -> {model_path}")
    else:
        training = read_training_record(work)
        _say(f"[1-2/5] using the trained model {model_path} (--retrain to train again)"
             + (f": {training.summary()}" if training else ""))
    episode = world.episode(args.test_seed)
    bag = write_episode_bag(world, episode, work / "episode_bag")
    _say(f"[3/5] wrote an unseen episode ({episode.num_frames / episode.fps:.1f} s, "
         f"{episode.num_frames} frames) to the rosbag2 {bag}")
    stamps = np.arange(episode.num_frames) * (1e9 / episode.fps)

    def truth_at(stamp_ns: int) -> str:
        i = int(np.clip(np.searchsorted(stamps, stamp_ns, side="right") - 1, 0, episode.num_frames - 1))
        return world.class_names[int(episode.labels[i])]

    if ros_available() and not args.no_dds:
        _say(f"[4/5] live: actfusion_node over DDS (loopback) + actfusion-play at {args.rate:g}x; forecasts:")
        shown = live_dds(bag, model_path, args.feature_rate, truth_at, work, args.rate)
    else:
        _say("[4/5] live (streaming core in-process; rclpy not available or --no-dds); forecasts:")
        shown = live_core(bag, model_path, args.feature_rate, truth_at)
    if shown == 0:
        _say("error: no forecast was received", )
        return 1
    _say("[5/5] replaying the bag through the streaming pipeline for the report ...")
    from actfusion_ros.tools.replay.cli import main as replay_main

    rc = replay_main([str(bag), "--checkpoint", str(model_path), "--out", str(work / "replay"),
                      "--image-topic", IMAGE_TOPIC, "--label-topic", LABEL_TOPIC, "--tick-rate", "2.0",
                      "--max-horizon-s", "60", "--num-samples", str(NUM_SAMPLES)]
                     + (["--baseline-labels", str(work / "dataset")] if (work / "dataset").is_dir() else []))
    add_training_to_report(work / "replay" / "replay.md", training)
    _say(f"demo finished in {time.perf_counter() - t_start:.0f} s; timeline: {work / 'replay' / 'timeline.png'}")
    if training is not None and training.stopped_early:
        _say(f"note: the model was STOPPED EARLY ({training.summary()})")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
