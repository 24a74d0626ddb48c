"""One Lightning `Trainer` setup shared by every training script (encoder, recognizer, UNet).

Why one place: checkpoints, resume, logs and the saved config must look the same for every stage, so a run
folder is always ``OUT/config.yaml``, ``OUT/checkpoints/{last,step=N}.ckpt`` and
``OUT/logs/version_K/metrics.csv`` (one version per launch: a resumed run never overwrites earlier logs).

Seeds: Lightning restores weights, optimizer and step on resume, but not the random streams; seeding every
launch with the config's seed would replay the first launch's batch order and noise draws after each resume,
and seeding every DDP process alike gives all ranks the same timesteps and noise. `seed_launch` and
`RankStreams` keep both streams new.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, Logger

from udifftext.config import OptimConfig, TrainConfig, save_config
from udifftext.io import require_path

CHECKPOINT_DIR = "checkpoints"
SNAPSHOT_DIR = "curve"
LAST_CHECKPOINT = "last.ckpt"
RUN_CONFIG = "config.yaml"


def save_run_config(cfg: Any, out_dir: str | Path) -> Path:
    """Write the resolved stage config as ``out_dir/config.yaml`` (before training starts)."""
    return save_config(cfg, out_dir, RUN_CONFIG)


def resolve_resume(out_dir: str | Path, resume: str | None) -> str | None:
    """The checkpoint to resume from: an explicit `--resume` path, else ``out_dir/checkpoints/last.ckpt``.

    Returns None for a fresh run. An explicit path that does not exist is an error, not a silent restart.
    """
    if resume:
        path = require_path(resume, "a Lightning checkpoint (.ckpt) to resume from", "an earlier training run")
        return str(path)
    last = Path(out_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT
    return str(last) if last.is_file() else None


def launch_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of one launch (resumed at `step`) on one process; a fresh launch's rank 0 keeps `seed` itself."""
    if step == 0 and rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def seed_launch(seed: int, checkpoint: str | None) -> int:
    """Seed everything for a launch that resumes from `checkpoint` (None: a fresh run); returns its step.

    Every process of a launch gets the same seed, so a distributed sampler shards one permutation; a resumed
    launch draws a new permutation instead of replaying the first launch's batches.
    """
    step = 0
    if checkpoint:  # mmap: a multi-GB checkpoint is not read in full for its step
        step = int(torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["global_step"])
    pl.seed_everything(launch_seed(seed, step), workers=True)
    return step


class RankStreams(Callback):
    """At the start of training, reseed torch's global stream per process and resume step, so the noise,
    timesteps and dropout a training step draws differ between DDP ranks and are not replayed after a resume."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.manual_seed(launch_seed(self.seed, trainer.global_step, trainer.global_rank))


class FinalCheckpoint(Callback):
    """Writes last.ckpt when training stops off the checkpoint period (`max_steps` not a multiple of
    `ckpt_every`, or `ckpt_every` 0: no periodic checkpoints): Lightning saves only on the period, and raising
    `max_steps` must resume from the final step."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = path, every

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every < 1 or trainer.global_step % self.every:
            trainer.save_checkpoint(self.path)


class Throughput(Callback):
    """Logs ``perf/samples_per_s``: training samples per wall-clock second over the last `every` batches."""

    def __init__(self, every: int):
        self.every = max(1, every)
        self._start = 0.0
        self._samples = 0
        self._batches = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        if self._batches == 0:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int):
        self._samples += batch_size_of(batch)
        self._batches += 1
        if self._batches >= self.every:
            rate = self._samples / max(time.perf_counter() - self._start, 1e-9)
            pl_module.log("perf/samples_per_s", rate, prog_bar=True)
            self._samples = self._batches = 0


def batch_size_of(batch: Any) -> int:
    """Leading size of the first tensor in a dict / sequence batch."""
    values = batch.values() if isinstance(batch, dict) else batch
    return next(v.shape[0] for v in values if isinstance(v, torch.Tensor))


def _loggers(out_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(str(out_dir), name="logs")]
    if importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None:
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out_dir), name="tensorboard"))
    return loggers


def step_checkpoints(dirpath: Path, every: int, **kwargs: Any) -> ModelCheckpoint:
    """A `ModelCheckpoint` writing `dirpath/step=N.ckpt` every `every` optimizer steps."""
    return ModelCheckpoint(
        dirpath=str(dirpath),
        filename="step={step}",
        auto_insert_metric_name=False,
        every_n_train_steps=every,
        **kwargs,
    )


def build_trainer(
    train_cfg: TrainConfig,
    out_dir: str | Path,
    accelerator: str = "auto",
    devices: int | str = "auto",
    extra_callbacks: Sequence[Callback] = (),
) -> pl.Trainer:
    """A step-based `pl.Trainer`: periodic + last checkpoints, CSV logs, progress bar, clip/accumulate/precision.

    With `train_cfg.keep_every`, every checkpoint of that step multiple is also kept in OUT/curve/ (the periodic
    one in OUT/checkpoints/ keeps only the newest), for learning curves (docs/results.md).

    Validation runs every `train_cfg.val_every` optimizer steps regardless of epoch boundaries;
    no sanity validation (a CPU run should start training at once).
    """
    out_dir = Path(out_dir)
    # with no monitor, save_top_k=1 keeps only the newest periodic checkpoint beside last.ckpt
    callbacks: list[Callback] = [
        step_checkpoints(out_dir / CHECKPOINT_DIR, train_cfg.ckpt_every, save_top_k=1, save_last=True),
        TQDMProgressBar(refresh_rate=max(1, train_cfg.log_every)),
        LearningRateMonitor(logging_interval="step"),
        Throughput(train_cfg.log_every),
        RankStreams(train_cfg.seed),
        FinalCheckpoint(out_dir / CHECKPOINT_DIR / LAST_CHECKPOINT, train_cfg.ckpt_every),
        *extra_callbacks,
    ]
    if train_cfg.keep_every:  # snapshots for learning curves: never pruned
        callbacks.append(step_checkpoints(out_dir / SNAPSHOT_DIR, train_cfg.keep_every, save_top_k=-1))
    return pl.Trainer(
        default_root_dir=str(out_dir),
        accelerator=accelerator,
        devices=devices,
        strategy=train_cfg.strategy,
        precision=train_cfg.precision,
        max_steps=train_cfg.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=train_cfg.accumulate_grad_batches,
        gradient_clip_val=train_cfg.grad_clip or None,
        log_every_n_steps=train_cfg.log_every,
        val_check_interval=train_cfg.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=_loggers(out_dir),
        callbacks=callbacks,
        enable_model_summary=False,
    )


def build_optimizer(params: Iterable[torch.nn.Parameter], optim: OptimConfig, steps_per_epoch: int) -> dict[str, Any]:
    """AdamW with linear warmup and a per-"epoch" multiplicative decay (upstream: 0.95 per epoch).

    Returns Lightning's ``configure_optimizers`` dict with a per-step scheduler.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, betas=tuple(optim.betas))

    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps > 0 else 1.0
        return warmup * math.pow(optim.lr_decay, step // steps_per_epoch)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
