"""train(cfg): build the stage's model, data and DeepSpeed engine; run its epochs; checkpoint; export.

    cfg = tleg_dist.config.load("configs/cpu/learngene_fmnist.yaml")
    summary = train(cfg, resume="auto")

Read top to bottom: `train` is the set-up (training/setup.py), the epoch loop (`run_epochs`,
whose steps are training/loop.py's) and the finish (`finish`: the final evaluation, the
export and summary.json). When to save and when to stop is RunControl's (training/control.py).
"""

from __future__ import annotations

import time

from tleg_dist.artifacts import run_folder
from tleg_dist.artifacts.checkpoints import tag_for
from tleg_dist.config import RunConfig
from tleg_dist.training import distributed, setup
from tleg_dist.artifacts.run_folder import PREEMPTED
from tleg_dist.training.control import RunControl
from tleg_dist.training.exports import export_final
from tleg_dist.training.loop import train_steps
from tleg_dist.training.preempt import requeue_if_asked
from tleg_dist.training.setup import Run


def train(cfg: RunConfig, resume: str | None = None) -> dict:
    run = setup.build(cfg, resume)
    with RunControl(cfg, run.dist, run.pos, run.save) as control:
        run_epochs(run, control)
    return finish(run, control.status)


def run_epochs(run: Run, control: RunControl) -> None:
    """Train epoch after epoch until the last one, or until `control` stops the run mid-epoch."""
    cfg, pos, metrics = run.cfg, run.pos, run.metrics
    try:
        while pos.epoch < cfg.train.epochs and control.running:
            metrics.bar(len(run.data.train), pos.batch_in_epoch, f"{cfg.stage} epoch {pos.epoch + 1}/{cfg.train.epochs}")
            batches, teacher_logits = run.data.train.epoch(pos.epoch, pos.batch_in_epoch), run.teacher_logits()
            if not train_steps(run.ctx, batches, pos, metrics, control.after_step, teacher_logits):
                return
            metrics.close_bar()
            pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
            if pos.epoch % cfg.train.eval_every_epochs == 0 or pos.epoch == cfg.train.epochs:
                evaluate_epoch(run)
            control.after_epoch()
    finally:
        metrics.close_bar()


def evaluate_epoch(run: Run) -> None:
    pos, metrics = run.pos, run.metrics
    run.last_eval, run.eval_step = run.evaluate(), pos.global_step
    if run.ema is not None:
        run.last_eval["ema_top1"] = run.evaluate(run.ema.module)["top1"]
    metrics.log("eval", pos.global_step, epoch=pos.epoch, **run.last_eval)
    metrics.print(f"[tleg] epoch {pos.epoch}: val top1 {run.last_eval['top1']:.2f}% "
                  f"top5 {run.last_eval['top5']:.2f}% loss {run.last_eval['loss']:.4f}")
    if run.last_eval["top1"] > pos.best_top1:
        pos.best_top1, pos.best_tag = run.last_eval["top1"], tag_for(pos.global_step)


def finish(run: Run, status: str) -> dict:
    """A preempted run asks to be requeued; any other evaluates its final weights and exports them.
    Either way rank 0 writes summary.json last."""
    pos = run.pos
    if status == PREEMPTED:
        run.metrics.print(f"[tleg] preempted at step {pos.global_step}: checkpoint saved")
        requeue_if_asked(run.dist.is_main)
    elif run.eval_step != pos.global_step:  # none yet, or of an earlier epoch's weights (max_steps mid-epoch)
        run.last_eval, run.eval_step = run.evaluate(), pos.global_step
    summary = {"stage": run.cfg.stage, "depth": run.cfg.model.depth, "status": status,
               "fingerprint": run_folder.fingerprint(run.cfg), "epoch": pos.epoch, "global_step": pos.global_step,
               "images_seen": pos.micro_step * run.cfg.data.batch_size * run.dist.world_size,
               "params": run.n_params, "wall_time_s": time.time() - run.started, "best_top1": pos.best_top1,
               **{f"val_{k}": v for k, v in run.last_eval.items()}}
    if run.cache is not None:  # a run that filled the cache says how long that took (a one-off cost)
        summary["teacher_cache"] = {"folder": str(run.cache.folder), "fill_s": run.cache.fill_s}
    if status != PREEMPTED:
        summary["files"] = export_final(run.cfg, run.engine, run.meta, run.out, run.dist.is_main, summary)
    if run.dist.is_main:
        run_folder.write_summary(run.out, summary)
    run.metrics.close()
    distributed.barrier()
    return summary
