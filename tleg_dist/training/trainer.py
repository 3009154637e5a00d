"""train(cfg): build the stage's model, data and DeepSpeed engine; run; checkpoint; export.

    cfg = tleg_dist.config.load("configs/cpu/learngene_fmnist.yaml")
    summary = train(cfg, resume="auto")
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from pathlib import Path

import deepspeed
import numpy as np
import torch
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from tleg_dist import config as config_lib
from tleg_dist.artifacts import run_folder
from tleg_dist.artifacts.checkpoints import PREPROCESSING, CheckpointError, complete_tags, tag_for
from tleg_dist.config import ConfigError, RunConfig
from tleg_dist.data import build_data
from tleg_dist.data.preprocessing import eval_preprocessing
from tleg_dist.losses import DistillationLoss
from tleg_dist.teacher import build_teacher
from tleg_dist.training import ds_config, distributed, optim
from tleg_dist.training.checkpoint import Checkpointer, Position, find_resume
from tleg_dist.training.exports import export_final
from tleg_dist.training.loop import LoopContext, LossTracker, evaluate, train_steps
from tleg_dist.training.metrics import MetricsLog
from tleg_dist.training.model_factory import build_model, compile_engine
from tleg_dist.training.preempt import PreemptionFlag, requeue_if_asked

log = logging.getLogger("tleg_dist")


def rng_states() -> dict:
    """Plain tensors and Python scalars only, so the checkpoint stays loadable with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": random.getstate()}


def _criterion(cfg: RunConfig, teacher) -> DistillationLoss:
    aug = cfg.data.aug
    if aug.mixup > 0 or aug.cutmix > 0:
        base = SoftTargetCrossEntropy()  # mixup already smoothed the targets
    elif aug.label_smoothing > 0:
        base = LabelSmoothingCrossEntropy(aug.label_smoothing)
    else:
        base = torch.nn.CrossEntropyLoss()
    d = cfg.distill
    return DistillationLoss(base, teacher, d.type, d.alpha, d.tau)


def _prepare_output(cfg: RunConfig, resume: str | None, is_main: bool) -> Path:
    out = Path(cfg.output_dir)
    ckpt = out / run_folder.CHECKPOINTS
    if resume is None and complete_tags(ckpt):
        raise CheckpointError(f"{out} already holds checkpoints; pass --resume auto to continue it, "
                              f"or choose another output_dir (nothing was overwritten)")
    if is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / run_folder.CONFIG).write_text(config_lib.to_yaml(cfg))
        except OSError as e:
            raise CheckpointError(f"cannot write to output_dir {out}: {e}") from e
    return out


def train(cfg: RunConfig, resume: str | None = None) -> dict:
    t_start = time.time()
    dist = distributed.init(cfg.train.collective_timeout_s)
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    deepspeed.utils.logger.setLevel(logging.WARNING)
    out = _prepare_output(cfg, resume, dist.is_main)
    distributed.barrier()

    ds = ds_config.build(cfg, dist.world_size)
    zero, bf16 = ds_config.zero_stage(ds), ds_config.bf16(ds)

    data = build_data(cfg.data, cfg.model.arch(), rank=dist.rank, world_size=dist.world_size, seed=cfg.seed,
                      device=dist.device)
    if data.num_classes != cfg.model.num_classes:  # else a head of the wrong size would train, or crash later
        raise ConfigError(f"model.num_classes is {cfg.model.num_classes} but the data has {data.num_classes} classes"
                          f"{' (data.classes)' if cfg.data.classes else ''}: set model.num_classes={data.num_classes}")
    teacher = None
    if cfg.distill.type != "none":
        teacher = build_teacher(cfg.distill.teacher, data.num_classes, cfg.model.in_chans).to(dist.device)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg)

    steps_per_epoch = max(1, len(data.train) // cfg.optim.grad_accum)
    total_steps = cfg.optim.schedule_steps or steps_per_epoch * cfg.train.epochs
    global_batch = ds["train_batch_size"]
    optimizer, scheduler, peak = optim.build(model, cfg.optim, global_batch=global_batch,
                                             steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds, lr_scheduler=scheduler)
    if cfg.model.compile.enabled:
        compile_engine(engine, cfg, zero)
    ema = None
    if cfg.train.ema_decay is not None:
        from timm.utils import ModelEmaV3
        ema = ModelEmaV3(engine.module, decay=cfg.train.ema_decay)

    ckpt = Checkpointer(out / run_folder.CHECKPOINTS, cfg.checkpoint.keep_last, cfg.checkpoint.keep_best, dist.is_main)
    pos = Position()
    resume_from = find_resume(out / run_folder.CHECKPOINTS, resume)
    if resume_from is not None:
        pos, client = ckpt.load(engine, resume_from, cfg.stage)
        if ema is not None and "ema" in client:
            ema.load_state_dict(client["ema"])
        log.info("resumed from %s: epoch %d, batch %d, step %d", resume_from, pos.epoch, pos.batch_in_epoch,
                 pos.global_step)

    metrics = MetricsLog(out, dist.is_main, cfg.train.progress)
    n_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in engine.module.parameters())
    metrics.print(f"[tleg] stage={cfg.stage} depth={cfg.model.depth} params={n_params:,} ranks={dist.world_size} "
                  f"zero={zero} bf16={bf16} global_batch={global_batch} lr={peak:.3g} "
                  f"steps/epoch={steps_per_epoch} -> {out}")
    dtype = torch.bfloat16 if bf16 else torch.float32
    losses = LossTracker(dist.device, cfg.train.nan_policy, cfg.train.max_nan_skips)
    ctx = LoopContext(engine, _criterion(cfg, teacher), dist, dtype, data.mixup, cfg.seed,
                      cfg.train.log_every_steps, losses, data.prepare, ema)
    meta = {"stage": cfg.stage, "arch": cfg.model.arch().to_dict(),
            "depth": cfg.model.depth, "zero_stage": zero, "bf16": bf16,
            "world_size": dist.world_size, "config": cfg.model_dump(mode="json"),
            PREPROCESSING: eval_preprocessing(cfg.data, cfg.model.in_chans)}

    def client_state() -> dict:
        # The position and config also live in the checkpoint marker (read without unpickling);
        # RNG states are informative only: every micro-step reseeds from (seed, step, rank).
        state = {"position": dataclasses.asdict(pos), "config": meta["config"], "rng": rng_states()}
        if ema is not None:
            state["ema"] = ema.state_dict()
        return state

    flag = PreemptionFlag().install()
    stopped = None

    def save() -> None:
        losses.settle()  # a NaN not yet read must stop the run before it reaches a checkpoint
        ckpt.save(engine, pos, meta, client_state())

    def on_step() -> bool:
        nonlocal stopped
        every = cfg.checkpoint.every_steps
        done = cfg.train.max_steps is not None and pos.global_step >= cfg.train.max_steps
        due = done or bool(every and pos.global_step % every == 0)
        preempted = flag.received is not None
        if dist.world_size > 1:
            # Every rank must save together, so they agree on the signal, but only where they meet
            # anyway (log steps, saves): an all-reduce every step would stall the device.
            preempted = (due or pos.global_step % cfg.train.log_every_steps == 0) and \
                distributed.any_rank(preempted, dist.device)
        if preempted or due:
            save()
        if preempted:
            stopped = "preempted"
        elif done:
            stopped = "max_steps"
        return stopped is None

    last_eval: dict = {}
    eval_step = None  # the step whose weights last_eval measured
    if cfg.train.max_steps is not None and pos.global_step >= cfg.train.max_steps:
        stopped = "max_steps"  # resumed a run that had already reached its step budget
    try:
        while pos.epoch < cfg.train.epochs and stopped is None:
            metrics.bar(len(data.train), pos.batch_in_epoch, f"{cfg.stage} epoch {pos.epoch + 1}/{cfg.train.epochs}")
            finished = train_steps(ctx, data.train.epoch(pos.epoch, pos.batch_in_epoch), pos, metrics, on_step)
            metrics.close_bar()
            if not finished:
                break
            pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
            if pos.epoch % cfg.train.eval_every_epochs == 0 or pos.epoch == cfg.train.epochs:
                last_eval, eval_step = evaluate(engine, data.val, dist, dtype, data.prepare), pos.global_step
                if ema is not None:
                    last_eval["ema_top1"] = evaluate(ema.module, data.val, dist, dtype, data.prepare)["top1"]
                metrics.log("eval", pos.global_step, epoch=pos.epoch, **last_eval)
                metrics.print(f"[tleg] epoch {pos.epoch}: val top1 {last_eval['top1']:.2f}% "
                              f"top5 {last_eval['top5']:.2f}% loss {last_eval['loss']:.4f}")
                if last_eval["top1"] > pos.best_top1:
                    pos.best_top1 = last_eval["top1"]
                    pos.best_tag = tag_for(pos.global_step)
            save()
    finally:
        flag.uninstall()
        metrics.close_bar()

    summary = {"stage": cfg.stage, "depth": cfg.model.depth, "status": stopped or "completed",
               "fingerprint": run_folder.fingerprint(cfg),
               "epoch": pos.epoch, "global_step": pos.global_step,
               "images_seen": pos.micro_step * cfg.data.batch_size * dist.world_size,
               "params": n_params, "wall_time_s": time.time() - t_start, "best_top1": pos.best_top1,
               **{f"val_{k}": v for k, v in last_eval.items()}}
    if stopped == "preempted":
        metrics.print(f"[tleg] preempted at step {pos.global_step}: checkpoint saved")
        requeue_if_asked(dist.is_main)
    else:
        if eval_step != pos.global_step:  # none yet, or of an earlier epoch's weights (max_steps mid-epoch)
            last_eval = evaluate(engine, data.val, dist, dtype, data.prepare)
            summary = {k: v for k, v in summary.items() if not k.startswith("val_")}
            summary.update({f"val_{k}": v for k, v in last_eval.items()})
        summary["files"] = export_final(cfg, engine, meta, out, dist.is_main, summary,
                                        preprocessing=meta[PREPROCESSING])
    if dist.is_main:
        run_folder.write_summary(out, summary)
    metrics.close()
    distributed.barrier()
    return summary
