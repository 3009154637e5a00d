"""Set-up of one training run: output folder, data, loss, model and DeepSpeed engine, resume point.

`build(cfg, resume)` returns a `Run`, everything the epoch loop and the finish need, built once
and in this order: the process group, the output folder (refused if it holds checkpoints and
resume is not asked for), the data, the loss (with its teacher), the engine, the resume point.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import deepspeed
import torch
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from tleg_dist import config as config_lib
from tleg_dist.artifacts import run_folder
from tleg_dist.artifacts.checkpoints import PREPROCESSING, CheckpointError, complete_tags
from tleg_dist.config import ConfigError, RunConfig
from tleg_dist.data import DataBundle, build_data
from tleg_dist.losses import DistillationLoss
from tleg_dist.teacher import build_teacher
from tleg_dist.training import distributed, ds_config, optim, teacher_cache
from tleg_dist.training.checkpoint import Checkpointer, Position, find_resume
from tleg_dist.training.distributed import DistInfo
from tleg_dist.training.loop import LoopContext, LossTracker, evaluate, require_val_data
from tleg_dist.training.metrics import MetricsLog
from tleg_dist.training.model_factory import build_model, compile_engine
from tleg_dist.training.teacher_cache import CachedLogits

log = logging.getLogger("tleg_dist")


@dataclass
class Run:
    """One run's parts. `pos` is where training stands; `last_eval` the newest evaluation, of the
    weights at optimizer step `eval_step`."""

    cfg: RunConfig
    dist: DistInfo
    out: Path
    data: DataBundle
    engine: object
    ema: object
    ckpt: Checkpointer
    pos: Position
    metrics: MetricsLog
    ctx: LoopContext
    meta: dict  # the checkpoint marker's description of the run (also handed to the export)
    n_params: int
    started: float
    cache: Optional[CachedLogits] = None  # the teacher-logit cache, when distill.teacher.cache is on
    last_eval: dict = field(default_factory=dict)
    eval_step: Optional[int] = None

    def save(self) -> None:
        self.ctx.losses.settle()  # a NaN not yet read must stop the run before it reaches a checkpoint
        client_state = {} if self.ema is None else {"ema": self.ema.state_dict()}
        self.ckpt.save(self.engine, self.pos, self.meta, client_state)

    def teacher_logits(self) -> Optional[Iterator[torch.Tensor]]:
        """From the cache, the teacher's logits of this epoch's batches from `pos` on (None: it runs live)."""
        if self.cache is None:
            return None
        return self.cache.batches(self.data.train.batches(self.pos.epoch)[self.pos.batch_in_epoch:], self.dist.device)

    def evaluate(self, model=None) -> dict:
        """Top-1/top-5 of `model` (default: the engine) on the validation data, over every rank."""
        return evaluate(self.engine if model is None else model, self.data.val, self.dist, self.ctx.dtype,
                        self.data.prepare)


def criterion(cfg: RunConfig, teacher) -> DistillationLoss:
    aug = cfg.data.aug
    if aug.mixup > 0 or aug.cutmix > 0:
        base = SoftTargetCrossEntropy()  # mixup already smoothed the targets
    elif aug.label_smoothing > 0:
        base = LabelSmoothingCrossEntropy(aug.label_smoothing)
    else:
        base = torch.nn.CrossEntropyLoss()
    d = cfg.distill
    return DistillationLoss(base, teacher, d.type, d.alpha, d.tau)


def prepare_output(cfg: RunConfig, resume: str | None, is_main: bool) -> Path:
    out = Path(cfg.output_dir)
    if resume is None and complete_tags(out / run_folder.CHECKPOINTS):
        raise CheckpointError(f"{out} already holds checkpoints; pass --resume auto to continue it, "
                              f"or choose another output_dir (nothing was overwritten)")
    if is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / run_folder.CONFIG).write_text(config_lib.to_yaml(cfg))
        except OSError as e:
            raise CheckpointError(f"cannot write to output_dir {out}: {e}") from e
    return out


def load_data(cfg: RunConfig, dist: DistInfo) -> DataBundle:
    data = build_data(cfg.data, cfg.model.arch(), rank=dist.rank, world_size=dist.world_size, seed=cfg.seed,
                      device=dist.device)
    if data.num_classes != cfg.model.num_classes:  # else a head of the wrong size would train, or crash later
        raise ConfigError(f"model.num_classes is {cfg.model.num_classes} but the data has {data.num_classes} classes"
                          f"{' (data.classes)' if cfg.data.classes else ''}: set model.num_classes={data.num_classes}")
    require_val_data(data.val, dist)  # now, not after the first epoch
    return data


def _engine(cfg: RunConfig, ds: dict, steps_per_epoch: int):
    """(DeepSpeed engine, EMA of its module or None, peak lr), with identical initial weights on every rank."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    total_steps = cfg.optim.schedule_steps or steps_per_epoch * cfg.train.epochs
    optimizer, scheduler, peak = optim.build(model, cfg.optim, global_batch=ds["train_batch_size"],
                                             steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds, lr_scheduler=scheduler)
    if cfg.model.compile.enabled:
        compile_engine(engine, cfg, ds_config.zero_stage(ds))
    ema = None
    if cfg.train.ema_decay is not None:
        from timm.utils import ModelEmaV3
        ema = ModelEmaV3(engine.module, decay=cfg.train.ema_decay)
    return engine, ema, peak


def _resume(cfg: RunConfig, ckpt: Checkpointer, engine, ema, resume: str | None) -> Position:
    resume_from = find_resume(ckpt.root, resume)
    if resume_from is None:
        return Position()
    pos, client = ckpt.load(engine, resume_from, cfg.stage)
    if ema is not None and "ema" in client:
        ema.load_state_dict(client["ema"])
    log.info("resumed from %s: epoch %d, batch %d, step %d", resume_from, pos.epoch, pos.batch_in_epoch,
             pos.global_step)
    return pos


def build(cfg: RunConfig, resume: str | None) -> Run:
    started = time.time()
    dist = distributed.init(cfg.train.collective_timeout_s)
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    deepspeed.utils.logger.setLevel(logging.WARNING)
    out = prepare_output(cfg, resume, dist.is_main)
    distributed.barrier()
    ds = ds_config.build(cfg, dist.world_size)
    zero, bf16 = ds_config.zero_stage(ds), ds_config.bf16(ds)
    data = load_data(cfg, dist)
    teacher, cache = None, None
    if cfg.distill.type != "none" and cfg.distill.teacher.cache:
        cache = teacher_cache.open_or_fill(cfg, data, dist, out)
    elif cfg.distill.type != "none":
        teacher = build_teacher(cfg.distill.teacher, data.num_classes, cfg.model.in_chans).to(dist.device)
    steps_per_epoch = max(1, len(data.train) // cfg.optim.grad_accum)
    engine, ema, peak = _engine(cfg, ds, steps_per_epoch)
    ckpt = Checkpointer(out / run_folder.CHECKPOINTS, cfg.checkpoint.keep_last, cfg.checkpoint.keep_best, dist.is_main)
    pos = _resume(cfg, ckpt, engine, ema, resume)
    metrics = MetricsLog(out, dist.is_main, cfg.train.progress)
    n_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in engine.module.parameters())
    metrics.print(f"[tleg] stage={cfg.stage} depth={cfg.model.depth} params={n_params:,} ranks={dist.world_size} "
                  f"zero={zero} bf16={bf16} global_batch={ds['train_batch_size']} lr={peak:.3g} "
                  f"steps/epoch={steps_per_epoch} -> {out}")
    dtype = torch.bfloat16 if bf16 else torch.float32
    losses = LossTracker(dist.device, cfg.train.nan_policy, cfg.train.max_nan_skips)
    ctx = LoopContext(engine, criterion(cfg, teacher), dist, dtype, data.mixup, cfg.seed,
                      cfg.train.log_every_steps, losses, data.prepare, ema)
    meta = {"stage": cfg.stage, "arch": cfg.model.arch().to_dict(), "depth": cfg.model.depth,
            "zero_stage": zero, "bf16": bf16, "world_size": dist.world_size,
            "config": cfg.model_dump(mode="json"),
            PREPROCESSING: data.preprocessing}  # the eval transform, for the export and `convert`
    return Run(cfg, dist, out, data, engine, ema, ckpt, pos, metrics, ctx, meta, n_params, started, cache)
