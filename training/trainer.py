"""The ActFusion training loop: Adam, padded batches of ``training.batch_size`` videos with gradient
accumulation, LR schedule, weight EMA, a wall-clock budget, checkpoints, exact resume.

Run directory (``--out``)::

    last.pt            model checkpoint (model/checkpoint.py format) of the latest saved step
    best.pt            model checkpoint with the best validation score (when a validation subset exists)
    trainer_state.pt   model + optimizer + every RNG state + progress: what ``--resume`` continues from
    config.yaml        the resolved experiment config
    loss.csv           one row per training iteration (one batch of videos); epochs.csv one row per epoch
    tensorboard/       the same curves as TensorBoard scalars (skipped if tensorboard is not installed)

Exactness: after every optimizer step the trainer snapshots its progress (epoch, position in the epoch's
video order, counters) and every RNG state. A checkpoint combines that snapshot with the model and optimizer,
which only change at optimizer steps, so a checkpoint written at any time (periodic, at the end, on Ctrl-C
or SIGTERM) describes a consistent "last completed step"; ``--resume`` continues from there exactly as an
uninterrupted run would (bit-identical on CPU; CUDA kernels may be non-deterministic).

An iteration is one forward/backward pass over a batch of ``batch_size`` videos (the epoch's last batch
may be smaller); an optimizer step follows every ``accumulate`` iterations and at the end of an epoch.
With ``ema_decay`` > 0 validation and the saved ``last.pt``/``best.pt`` use the averaged weights;
``trainer_state.pt`` holds both. ``--time-budget MIN`` (``TrainOptions.time_budget_minutes``) stops after
the first optimizer step that ends past MIN minutes of this invocation, validates and saves like the end of
the run; the budget counts per invocation, so ``--resume`` gets a fresh one.
"""
from __future__ import annotations

import dataclasses
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from torch import nn
from tqdm import tqdm

from actfusion_model.checkpoint import save_checkpoint
from actfusion_model.config import (
    ConfigError,
    ExperimentConfig,
    LossConfig,
    MaskingConfig,
    ModelConfig,
    TrainingConfig,
    config_to_dict,
)
from actfusion_model.diffusion import min_snr_weights, training_timesteps
from actfusion_model.features.pipeline import read_dataset_pipeline
from actfusion_model.io import atomic_open, atomic_write_text
from actfusion_model.losses import actfusion_loss
from actfusion_model.network import ActFusion, TrainingOutputs, training_outputs
from actfusion_training.baselines import fit_baselines, score_baselines
from actfusion_training.batches import TrainingBatch, VideoStore, collate, draw_sample
from actfusion_training.data import MsTcnDataset, class_weights, split_train_validation
from actfusion_training.distributed import (
    DistContext,
    any_rank,
    barrier,
    gather_objects,
    init_distributed,
    shard,
    shutdown,
)
from actfusion_training.inference import PROTOCOLS
from actfusion_training.rng import RngBundle
from actfusion_training.run_config import data_facts, resolve_config
from actfusion_training.run_log import CsvLog, Scalars
from actfusion_training.schedule import WeightAverage, budget_total_steps, lr_factor
from actfusion_training.scoring import ScoringOptions, score_model

STATE_FORMAT = "actfusion_ros/trainer_state/1"
LOSS_TERMS = ("total", "enc_ce", "enc_smooth", "enc_boundary", "dec_ce", "dec_smooth", "dec_boundary")
LOSS_COLUMNS = ("iteration", "epoch", "step", "video", "mask", "offset", "frames") + LOSS_TERMS
EPOCH_COLUMNS = ("epoch", "step", "iterations", "seconds", "loss") + tuple(
    f"val_{k}" for k in ("acc", "edit", "f1@10", "f1@25", "f1@50", "tas_score", "lta_gt_mean", "combined"))
# One row per validation (every epoch-, step- or minute-triggered one): the model next to the baselines.
VALIDATION_COLUMNS = ("step", "epoch", "minutes", "val_acc", "val_edit", "model_lta_gt", "model_lta_rn",
                      "best_baseline_gt", "best_baseline_rn", "best_baseline_gt_name", "best_baseline_rn_name",
                      "combined")
# Training-config fields that may change between a run and its resumption.
RESUMABLE_CHANGES = {"training.epochs", "training.eval_every", "training.checkpoint_every", "training.max_steps",
                     "training.eval_every_steps", "training.eval_every_minutes"}
BUDGET_TIMING_STEPS = 10  # optimizer steps timed before a time budget's step count is estimated


class TrainingError(RuntimeError):
    """The run directory or a resumed state is inconsistent with the requested run."""


@dataclass
class TrainOptions:
    """What ``actfusion-train`` was asked to do."""

    config: Path
    data_root: Path
    split: int
    out: Path
    resume: bool = False
    epochs: int | None = None
    device: str = "cpu"
    max_videos: int | None = None
    progress: bool | None = None  # None: a bar only when stderr is a terminal
    cache_bytes: int = 2 << 30
    time_budget_minutes: float | None = None  # stop after this much wall-clock per invocation (None: no limit)
    clock: Callable[[], float] = time.monotonic  # seconds; tests substitute a fake clock
    # Called after every iteration with (trainer, iteration); tests use it to simulate an interrupt.
    on_iteration: Callable[["Trainer", int], None] | None = None


@dataclass
class Progress:
    """Where the run is, consistent with the model and optimizer after the last completed step."""

    epoch: int = 0  # 0-based epoch in progress
    position: int = 0  # videos of this rank's shard of ``order`` already used in this epoch
    order: list[int] | None = None  # the epoch's permutation of training videos (None: not drawn yet)
    iteration: int = 0  # videos processed so far (this rank)
    step: int = 0  # optimizer steps so far
    epoch_loss_sum: float = 0.0
    epoch_iterations: int = 0
    epoch_seconds: float = 0.0
    best_score: float | None = None
    best_epoch: int | None = None
    schedule_total: int | None = None  # optimizer steps the LR schedule spans (set under a time budget)
    stopped_on_budget: bool = False
    last_eval_step: int = 0  # optimizer step of the latest validation (step-triggered validation counts from it)
    rng: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Progress":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class _StopFlag:
    """SIGINT/SIGTERM set a flag instead of raising; the loop stops after the current step.

    A second SIGINT raises ``KeyboardInterrupt`` at once (e.g. during a long validation); the trainer then
    writes the snapshot of the last completed step.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self.critical = False  # inside optimizer.step: never raise there

    def __call__(self, signum: int, _frame: Any) -> None:
        if self.requested and signum == signal.SIGINT and not self.critical:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    @contextmanager
    def installed(self) -> Iterator[None]:
        import threading
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers only work in the main thread; KeyboardInterrupt is still caught
            return
        previous = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class TrainingForward(nn.Module):
    """``training_outputs`` as a module forward, so DistributedDataParallel sees (and syncs) the pass."""

    def __init__(self, model: ActFusion, loss_cfg: Any) -> None:
        super().__init__()
        self.model = model
        self.loss_cfg = loss_cfg

    def forward(self, features: torch.Tensor, visible: torch.Tensor, targets: torch.Tensor,
                generator: torch.Generator, valid: torch.Tensor | None = None) -> TrainingOutputs:
        return training_outputs(self.model, features, visible, targets, generator=generator, valid=valid,
                                loss_cfg=self.loss_cfg)


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def with_new_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved experiment dict with config keys added since it was written set to their defaults.

    So a run saved before an option existed resumes as long as the option is left at its default.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in saved.items()}
    for section, cls in (("model", ModelConfig), ("loss", LossConfig), ("masking", MaskingConfig),
                         ("training", TrainingConfig)):
        values = out.get(section)
        if not isinstance(values, dict):
            continue
        for f in dataclasses.fields(cls):
            if f.name not in values and f.default is not dataclasses.MISSING:
                values[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    return out


class Trainer:
    """One training run (see module docstring). ``run()`` returns ``"finished"`` or ``"interrupted"``."""

    def __init__(self, options: TrainOptions, dist_ctx: DistContext | None = None) -> None:
        self.opt = options
        self.ctx = dist_ctx or init_distributed(options.device)
        self.out = Path(options.out)
        self.log = print if self.ctx.is_main else (lambda *_a, **_k: None)
        dataset = MsTcnDataset(options.data_root, options.split, "train")
        self.pipeline = read_dataset_pipeline(options.data_root)  # copied into checkpoint metadata
        names = dataset.names if options.max_videos is None else dataset.names[:options.max_videos]
        if not names:
            raise TrainingError(f"no training videos in split {options.split} of {options.data_root}")
        self.cfg: ExperimentConfig = resolve_config(options.config, data_facts(dataset))
        if options.epochs is not None:
            self.cfg = _with_epochs(self.cfg, options.epochs)
        tc = self.cfg.training
        if tc.validation_fraction > 0 and len(names) >= 2:
            self.train_names, self.val_names = split_train_validation(names, tc.validation_fraction, tc.seed)
        else:
            self.train_names, self.val_names = list(names), []
        # The videos validation scores: a fixed subset (the first validation_max_videos) of the held-out ones.
        self.scored_val_names = self.val_names[:tc.validation_max_videos]
        self.class_names = list(dataset.mapping.names)
        self.dataset = MsTcnDataset(options.data_root, options.split, "train", names=names)
        self.store = VideoStore(self.dataset, self.cfg.loss.boundary_sigma, options.cache_bytes)
        self.device = self.ctx.device

        labels = [self.dataset.load_labels(n) for n in self.train_names]
        self.class_weights = torch.from_numpy(class_weights(labels, self.cfg.model.num_classes)).to(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tc.seed)
            self.model = ActFusion(self.cfg.model)
        self.model.to(self.device).train()
        self.forward = TrainingForward(self.model, self.cfg.loss)
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DDP(self.forward, device_ids=ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.ema = WeightAverage(self.model, tc.ema_decay) if tc.ema_decay > 0 else None
        if options.time_budget_minutes is not None and not options.time_budget_minutes > 0:
            raise ConfigError(f"--time-budget must be > 0 minutes, got {options.time_budget_minutes}")
        self._started: float | None = None  # clock() when run() began (the budget's origin)
        self._last_eval_clock: float | None = None  # clock() of this invocation's latest validation
        self.last_metrics: dict[str, Any] | None = None  # the latest validation's metrics (main rank)
        self.baselines = self._validation_baselines()
        self._timing: tuple[int, float] | None = None  # (step, clock) where budget timing began
        self.budget_spent = False
        self.last_batch: TrainingBatch | None = None  # the latest iteration's batch (benchmarks read it)
        self.rng = RngBundle(tc.seed, self.ctx.rank, self.ctx.cuda_index)
        self.progress = Progress(rng=self.rng.state_dict())
        self.snapshot = Progress(**self.progress.to_dict())
        self.stop = _StopFlag()
        self._prepare_run_dir()

    # -- run directory ------------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        state_path = self.out / "trainer_state.pt"
        if self.opt.resume:
            if not state_path.is_file():
                raise TrainingError(f"--resume: no {state_path} to resume from")
            self._load_state(state_path)
        elif state_path.exists():
            raise TrainingError(f"{self.out} already holds a run ({state_path.name}); pass --resume to continue "
                                f"it or choose another --out")
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            source = yaml.safe_load(Path(self.opt.config).read_text()) or {}
            resolved = {"preset": source.get("preset", "50salads"), **config_to_dict(self.cfg)}
            atomic_write_text(self.out / "config.yaml", f"# resolved from {self.opt.config} and the data; "
                              f"usable as --config\n" + yaml.safe_dump(resolved, sort_keys=False))
            self.loss_csv = CsvLog(self.out / "loss.csv", LOSS_COLUMNS)
            self.epoch_csv = CsvLog(self.out / "epochs.csv", EPOCH_COLUMNS)
            self.validation_csv = CsvLog(self.out / "validation.csv", VALIDATION_COLUMNS)
            if self.opt.resume:  # drop rows logged after the resumed step (or a partial last line)
                done = self.progress.iteration
                self.loss_csv.truncate(lambda r: int(r["iteration"]) <= done)
                epoch = self.progress.epoch
                self.epoch_csv.truncate(lambda r: int(r["epoch"]) <= epoch)
                step = self.progress.step
                self.validation_csv.truncate(lambda r: int(r["step"]) <= step)
            else:  # rows of an attempt that died before its first trainer_state.pt: none of it was kept
                self.loss_csv.truncate(lambda r: False)
                self.epoch_csv.truncate(lambda r: False)
                self.validation_csv.truncate(lambda r: False)
            self.scalars = Scalars(self.out / "tensorboard", purge_step=self.progress.iteration + 1,
                                   note=self.log)

    def _state_payload(self) -> dict[str, Any]:
        snap = self.snapshot.to_dict()
        snap["rng"] = gather_objects(self.snapshot.rng, self.ctx)  # one entry per rank
        return {
            "format": STATE_FORMAT,
            "experiment": config_to_dict(self.cfg),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "progress": snap,
            "world_size": self.ctx.world_size,
            "train_names": list(self.train_names),
            "val_names": list(self.val_names),
        }

    def _load_state(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - report any unreadable file the same way
            raise TrainingError(f"{path}: cannot read trainer state: {err}") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise TrainingError(f"{path}: not a trainer state of format {STATE_FORMAT!r}")
        changes = [c for c in config_changes(with_new_defaults(state["experiment"]), config_to_dict(self.cfg))
                   if c.split(":")[0] not in RESUMABLE_CHANGES]
        if changes:
            raise TrainingError(f"{path}: the config differs from the run being resumed: " + "; ".join(changes))
        if state["train_names"] != self.train_names or state["val_names"] != self.val_names:
            raise TrainingError(f"{path}: the training/validation videos differ from the resumed run "
                                f"(same --data-root, --split and --max-videos?)")
        if state["world_size"] != self.ctx.world_size:
            raise TrainingError(f"{path}: saved with world size {state['world_size']}, resumed with "
                                f"{self.ctx.world_size}; exact resume needs the same number of processes")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise TrainingError(f"{path}: the resumed run has no weight EMA state")
            self.ema.load_state_dict(state["ema"])
        prog = dict(state["progress"])
        prog["rng"] = prog["rng"][self.ctx.rank]
        self.progress = Progress.from_dict(prog)
        self.rng.load_state_dict(self.progress.rng)
        self.snapshot = Progress(**self.progress.to_dict())

    def save(self, best_metrics: dict[str, Any] | None = None) -> None:
        """Write ``last.pt`` (and ``best.pt``), then ``trainer_state.pt``, from the snapshot (collective under DDP).

        ``trainer_state.pt`` goes last: it is the commit record. After a crash between the writes the state
        still describes the previous save, so ``--resume`` redoes the work and rewrites the model files.
        """
        payload = self._state_payload()
        if not self.ctx.is_main:
            return
        with self.evaluated_weights():
            save_checkpoint(self.out / "last.pt", self.model, self.class_names, self._metadata())
            if best_metrics is not None:
                save_checkpoint(self.out / "best.pt", self.model, self.class_names,
                                self._metadata(validation=best_metrics))
        with atomic_open(self.out / "trainer_state.pt", "wb") as fh:
            torch.save(payload, fh)

    def _metadata(self, validation: dict[str, Any] | None = None) -> dict[str, Any]:
        meta = {"experiment": config_to_dict(self.cfg), "epoch": self.snapshot.epoch,
                "step": self.snapshot.step, "iteration": self.snapshot.iteration,
                "data_root": str(self.opt.data_root), "split": self.opt.split,
                "train_videos": list(self.train_names), "validation_videos": list(self.val_names)}
        if validation is not None:
            meta["validation"] = validation
        meta["ema_weights"] = self.ema is not None
        meta["time_budget_minutes"] = self.opt.time_budget_minutes
        meta["stopped_on_budget"] = self.snapshot.stopped_on_budget
        if self.pipeline is not None:
            meta["pipeline"] = self.pipeline.to_dict()
        return meta

    # -- one iteration --------------------------------------------------------------------------
    @contextmanager
    def evaluated_weights(self) -> Iterator[None]:
        """The weights to validate and save: the EMA when ``ema_decay`` > 0, else the trained ones."""
        with (self.ema.applied(self.model) if self.ema is not None else nullcontext()):
            yield

    def decoder_weights(self, steps: torch.Tensor) -> torch.Tensor | None:
        """Per-run weights of the decoder loss terms (``loss.timestep_weighting``), or None."""
        lc, mc = self.cfg.loss, self.cfg.model
        if lc.timestep_weighting == "none":
            return None
        candidates = training_timesteps(mc.num_timesteps, mc.ddim_steps if lc.train_on_ddim_steps else None)
        return min_snr_weights(steps, self.model.alphas_cumprod, lc.min_snr_gamma, candidates).to(steps.device)

    def _iteration(self, names: list[str], sync: bool) -> tuple[TrainingBatch, dict[str, float]]:
        samples = [draw_sample(self.store.get(n), self.cfg, self.rng.numpy, self.rng.python, self.device)
                   for n in names]
        batch = collate(samples)
        no_sync = self.forward.no_sync if (self.ctx.enabled and not sync) else nullcontext
        with self.rng.dropout_scope(), no_sync():
            out = self.forward(batch.features, batch.visible, batch.targets, generator=self.rng.torch,
                               valid=batch.valid)
            terms = actfusion_loss(out.enc_logits, out.dec_logits, batch.targets, batch.boundary, self.cfg.loss,
                                   class_weights=self.class_weights, soft_targets=batch.soft_targets,
                                   valid=batch.valid, dec_weights=self.decoder_weights(out.steps))
            (terms["total"] / self.cfg.training.accumulate).backward()
        return batch, {k: float(v.detach()) for k, v in terms.items()}

    def _take_snapshot(self) -> None:
        self.progress.rng = self.rng.state_dict()
        self.snapshot = Progress(**{k: (list(v) if isinstance(v, list) else v)
                                    for k, v in self.progress.to_dict().items()})

    # -- schedule and budget ------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        """Optimizer steps of one epoch on this rank's shard."""
        tc = self.cfg.training
        videos = len(shard(range(len(self.train_names)), 0, self.ctx.world_size))
        batches = -(-videos // tc.batch_size)
        return -(-batches // tc.accumulate)

    def schedule_total(self) -> int:
        """Optimizer steps the LR schedule spans: the epochs' total, or the time budget's estimate."""
        full = self.cfg.training.epochs * self.steps_per_epoch()
        if self.cfg.training.max_steps is not None:
            full = min(full, self.cfg.training.max_steps)
        total = self.progress.schedule_total
        return full if total is None else min(full, total)

    def _set_lr(self) -> None:
        """Set the optimizer's learning rate for the next step (``progress.step``)."""
        tc = self.cfg.training
        lr = tc.lr * lr_factor(tc, self.progress.step, self.schedule_total())
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _budget_seconds(self) -> float | None:
        minutes = self.opt.time_budget_minutes
        return None if minutes is None else 60.0 * float(minutes)

    def _budget_check(self) -> bool:
        """After an optimizer step: estimate the schedule length once, and say whether the budget is spent."""
        budget = self._budget_seconds()
        if budget is None or self._started is None:
            return False
        now = self.opt.clock()
        p = self.progress
        if self._timing is None:
            self._timing = (p.step, now)
        timed = p.step - self._timing[0]
        if timed == BUDGET_TIMING_STEPS and self.cfg.training.lr_schedule != "constant":
            cap = self.cfg.training.epochs * self.steps_per_epoch()
            if self.cfg.training.max_steps is not None:
                cap = min(cap, self.cfg.training.max_steps)
            p.schedule_total = budget_total_steps(p.step, timed, now - self._timing[1],
                                                  budget - (now - self._started), cap)
        self.budget_spent = any_rank(now - self._started >= budget, self.ctx)
        return self.budget_spent

    # -- epochs ---------------------------------------------------------------------------------
    def _run_epoch(self, bar: tqdm) -> str:
        """Train (the rest of) the current epoch: ``"done"``, ``"stop"`` (signal) or ``"budget"`` (time spent)."""
        p, tc = self.progress, self.cfg.training
        if p.order is None:
            p.order = [int(i) for i in self.rng.order.permutation(len(self.train_names))]
            p.position = 0
        mine = shard(p.order, self.ctx.rank, self.ctx.world_size)
        pending = 0
        t_start = time.perf_counter()
        while p.position < len(mine):
            chunk = mine[p.position:p.position + tc.batch_size]
            names = [self.train_names[i] for i in chunk]
            last = p.position + len(chunk) >= len(mine)
            sync = last or pending + 1 == tc.accumulate
            batch, terms = self._iteration(names, sync)
            self.last_batch = batch
            pending += 1
            p.position += len(chunk)
            p.iteration += 1
            p.epoch_iterations += 1
            p.epoch_loss_sum += terms["total"]
            if self.ctx.is_main:
                self.loss_csv.append({"iteration": p.iteration, "epoch": p.epoch + 1, "step": p.step,
                                      "video": " ".join(names), "mask": " ".join(batch.mask_types),
                                      "offset": " ".join(str(o) for o in batch.offsets),
                                      "frames": batch.frames, **terms})
                self.scalars.add("loss/total", terms["total"], p.iteration)
                bar.update(len(chunk))
                bar.set_postfix(epoch=p.epoch + 1, loss=f"{terms['total']:.3f}")
            budget_spent = False
            if sync:
                self._set_lr()
                self.stop.critical = True
                try:
                    self.optimizer.step()
                finally:
                    self.stop.critical = False
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema is not None:
                    self.ema.update(self.model)
                pending = 0
                p.step += 1
                p.epoch_seconds += time.perf_counter() - t_start
                t_start = time.perf_counter()
                budget_spent = self._budget_check()
                self._take_snapshot()
            if self.opt.on_iteration is not None:
                self.opt.on_iteration(self, p.iteration)
            if sync and any_rank(self.stop.requested, self.ctx):
                return "stop"
            if sync and self.steps_reached() and not last:
                return "max_steps"
            if budget_spent and not last:
                return "budget"
            if sync and not last and self._validation_due():
                best = self._validation_point(p.epoch + 1)
                self._take_snapshot()
                self.save(best_metrics=best)
                t_start = time.perf_counter()  # epochs.csv's seconds count training, not validation
        return "done"

    def steps_reached(self) -> bool:
        """Whether ``training.max_steps`` optimizer steps are done."""
        max_steps = self.cfg.training.max_steps
        return max_steps is not None and self.progress.step >= max_steps

    def _validation_due(self) -> bool:
        """A step- or minute-triggered validation is due (``eval_every_steps`` / ``eval_every_minutes``)."""
        tc, p = self.cfg.training, self.progress
        if not self.val_names:
            return False
        due = tc.eval_every_steps is not None and p.step - p.last_eval_step >= tc.eval_every_steps
        if tc.eval_every_minutes is not None and self._started is not None:
            since = self._last_eval_clock if self._last_eval_clock is not None else self._started
            due = due or self.opt.clock() - since >= 60.0 * tc.eval_every_minutes
        return any_rank(due, self.ctx)

    def _validation_baselines(self) -> dict[str, dict[str, float | None]]:
        """``{baseline: {protocol: mean MoC}}`` of the label-only baselines on the scored validation videos,
        fitted on the training videos' labels at the model's sample rate (deterministic: computed once)."""
        if not self.scored_val_names:
            return {}
        sr = self.cfg.model.sample_rate
        fitted = fit_baselines([self.dataset.load_labels(n) for n in self.train_names], sr)
        videos = [(n, self.dataset.load_labels(n)) for n in self.scored_val_names]
        run = score_baselines(fitted, videos, sr, protocols=PROTOCOLS)
        return {name: dict(m["lta_mean"]) for name, m in run.metrics.items()}

    def best_baseline(self, protocol: str) -> tuple[str | None, float | None]:
        """The baseline with the highest mean validation MoC under ``protocol``, and that MoC."""
        scored = [(m.get(protocol), name) for name, m in self.baselines.items() if m.get(protocol) is not None]
        if not scored:
            return None, None
        value, name = max(scored)
        return name, value

    def _validation_point(self, epoch_label: int) -> dict[str, Any] | None:
        """Validate, log the model next to the baselines, update the best score; the best's metadata or None."""
        p = self.progress
        p.last_eval_step = p.step
        self._last_eval_clock = self.opt.clock()
        metrics = self.validate() if self.ctx.is_main else None
        best = None
        if metrics is not None:
            row: dict[str, Any] = {"step": p.step, "epoch": epoch_label, "combined": metrics["combined"],
                                   "minutes": round((self.opt.clock() - (self._started or 0.0)) / 60.0, 3),
                                   "val_acc": metrics["tas"]["acc"], "val_edit": metrics["tas"]["edit"]}
            words = []
            for protocol in PROTOCOLS:
                model_moc = metrics["lta_mean"].get(protocol)
                name, base = self.best_baseline(protocol)
                row.update({f"model_lta_{protocol}": model_moc, f"best_baseline_{protocol}": base,
                            f"best_baseline_{protocol}_name": name})
                if model_moc is not None:
                    words.append(f"{protocol} {model_moc:.1f}" + ("" if base is None else
                                 f" vs {base:.1f} ({name})"))
            self.validation_csv.append(row)
            self.last_validation = row
            for key in ("acc", "edit", "f1@50", "score"):
                self.scalars.add(f"val/{key}", metrics["tas"][key], p.iteration)
            self.scalars.add("val/combined", metrics["combined"], p.iteration)
            self.log(f"validation at step {p.step}: TAS acc {metrics['tas']['acc']:.1f}; LTA MoC model vs the best "
                     f"label-only baseline: " + ", ".join(words) + f" ({len(self.scored_val_names)} videos)")
            if p.best_score is None or metrics["combined"] > p.best_score:
                p.best_score, p.best_epoch = metrics["combined"], epoch_label
                best = {"epoch": epoch_label, "step": p.step, "videos": list(self.scored_val_names),
                        "baselines": self.baselines, **metrics}
        barrier(self.ctx)
        return best

    def verdict(self) -> str:
        """One plain line: does the model beat the label-only baselines on the validation videos?"""
        row = getattr(self, "last_validation", None)
        if row is None:
            return "no validation ran: nothing says whether the model beats the label-only baselines"
        parts, wins = [], []
        for protocol, title in (("gt", "ground-truth length"), ("rn", "r*N^O")):
            model_moc, base = row.get(f"model_lta_{protocol}"), row.get(f"best_baseline_{protocol}")
            if model_moc is None or base is None:
                continue
            wins.append(model_moc > base)
            parts.append(f"{title} {model_moc:.1f} vs {base:.1f} ({row[f'best_baseline_{protocol}_name']})")
        if not parts:
            return "the validation scored no forecasts: nothing says whether the model beats the baselines"
        head = ("the model BEATS the best label-only baseline" if all(wins) else
                "the model does NOT beat the best label-only baseline" if not any(wins) else
                "the model beats the best label-only baseline under one protocol only")
        return f"{head} on the validation videos at step {row['step']} (mean LTA MoC: " + "; ".join(parts) + ")"

    def _end_epoch(self, *, complete: bool = True, on_budget: bool = False) -> bool:
        """Validation, best/periodic checkpoints and the epoch row; then move to the next epoch.

        ``on_budget``: the time budget is spent; validate and save as at the end of the run. With
        ``complete=False`` (stopped mid-epoch) the row describes the partial epoch and the run stays in it,
        so ``--resume`` continues the epoch (and drops the partial row).
        """
        p, tc = self.progress, self.cfg.training
        done = p.epoch + 1
        final = done >= tc.epochs or on_budget
        row: dict[str, Any] = {"epoch": done, "step": p.step, "iterations": p.epoch_iterations,
                               "seconds": round(p.epoch_seconds, 3),
                               "loss": p.epoch_loss_sum / max(1, p.epoch_iterations)}
        best = None
        if self.val_names and (done % tc.eval_every == 0 or final):
            best = self._validation_point(done)
        metrics = self.last_metrics if self.val_names and p.last_eval_step == p.step else None
        if metrics is not None:
            row.update({f"val_{k}": metrics["tas"][k] for k in ("acc", "edit", "f1@10", "f1@25", "f1@50")})
            row.update(val_tas_score=metrics["tas"]["score"], val_lta_gt_mean=metrics["lta_mean"].get("gt"),
                       val_combined=metrics["combined"])
        if self.ctx.is_main:
            self.epoch_csv.append(row)
            self.scalars.add("loss/epoch", row["loss"], p.iteration)
            self.scalars.flush()
        if complete:
            p.epoch, p.position, p.order = done, 0, None
            p.epoch_loss_sum, p.epoch_iterations, p.epoch_seconds = 0.0, 0, 0.0
        p.stopped_on_budget = on_budget
        self._take_snapshot()
        if any_rank(best is not None, self.ctx) or final or done % tc.checkpoint_every == 0:
            self.save(best_metrics=best)
        return not any_rank(self.stop.requested, self.ctx)

    def validate(self) -> dict[str, Any]:
        """TAS + LTA under both horizon protocols on the scored validation videos (offset 0 only, fixed noise
        seeds); also kept as ``last_metrics``."""
        tc = self.cfg.training
        records = [self.store.get(n).record for n in self.scored_val_names]
        options = ScoringOptions(seed=tc.seed, median_filter=tc.median_filter, aggregate_offsets=False,
                                 protocols=PROTOCOLS)
        try:
            with self.evaluated_weights():
                self.last_metrics = score_model(self.model, records, self.class_names, options).metrics
                return self.last_metrics
        finally:
            self.model.train()

    def run(self) -> str:
        """Train until ``training.epochs``: ``"finished"``, ``"budget"`` (stopped on the time budget, validated
        and saved) or ``"interrupted"`` after SIGINT/SIGTERM/KeyboardInterrupt."""
        tc = self.cfg.training
        per_epoch = len(shard(range(len(self.train_names)), 0, self.ctx.world_size))
        show = self.ctx.is_main and (sys.stderr.isatty() if self.opt.progress is None else self.opt.progress)
        total = tc.epochs * per_epoch
        done = self.progress.epoch * per_epoch + self.progress.position
        bar = tqdm(total=total, initial=min(done, total), desc="train", disable=not show,
                   unit="video")
        self.log(f"training {len(self.train_names)} videos (validation {len(self.val_names)}), "
                 f"epochs {self.progress.epoch}->{tc.epochs}, batch {tc.batch_size}, accumulate {tc.accumulate}, "
                 f"device {self.device}, world size {self.ctx.world_size}"
                 + (f", time budget {self.opt.time_budget_minutes} min" if self.opt.time_budget_minutes else "")
                 + f"; writing to {self.out}")
        status = "finished"
        self._started, self._timing, self.budget_spent = self.opt.clock(), None, False
        self.progress.stopped_on_budget = False
        try:
            with self.stop.installed():
                while self.progress.epoch < tc.epochs and not self.steps_reached():
                    result = self._run_epoch(bar)
                    if result == "stop":
                        status = "interrupted"
                        break
                    if result in ("budget", "max_steps"):
                        self._end_epoch(complete=False, on_budget=True)
                        status = "budget" if result == "budget" else "finished"
                        break
                    stop_now = (self.budget_spent or self.steps_reached()) and self.progress.epoch + 1 < tc.epochs
                    if not self._end_epoch(on_budget=stop_now):
                        status = "interrupted"
                        break
                    if self.steps_reached():
                        break
                    if self.budget_spent:
                        status = "budget" if self.progress.epoch < tc.epochs else "finished"
                        break
                if status != "interrupted" and self.steps_reached():
                    self.log(f"training.max_steps = {tc.max_steps} optimizer steps done")
                if status != "interrupted" and self.val_names:
                    self.log(self.verdict())
                if status == "budget":
                    self.log(f"time budget of {self.opt.time_budget_minutes} min spent after step "
                             f"{self.snapshot.step} (epoch {self.snapshot.epoch + 1}); validated and saved, "
                             f"continue with --resume")
                if status == "interrupted":
                    self.save()
                    self.log(f"stopped by {self.stop.signal_name or 'request'} after step {self.snapshot.step}; "
                             f"checkpoint written, continue with --resume")
        except KeyboardInterrupt:
            # The model and optimizer are still those of the last completed step (partial gradients are
            # discarded); the snapshot holds that step's progress and RNG states.
            status = "interrupted"
            self.optimizer.zero_grad(set_to_none=True)
            self.save()
            self.log(f"interrupted after step {self.snapshot.step}; checkpoint written, continue with --resume")
        finally:
            bar.close()
            if self.ctx.is_main:
                self.scalars.close()
        return status

    def close(self) -> None:
        shutdown(self.ctx)


def _with_epochs(cfg: ExperimentConfig, epochs: int) -> ExperimentConfig:
    import dataclasses
    if epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, epochs=int(epochs)))


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def train(options: TrainOptions) -> tuple[str, Path]:
    """Build and run a :class:`Trainer`; returns (status, run directory)."""
    trainer = Trainer(options)
    try:
        return trainer.run(), trainer.out
    finally:
        trainer.close()

