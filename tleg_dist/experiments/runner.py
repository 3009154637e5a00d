"""Run an experiment's plan (finished stages are reused, interrupted ones resume) and
collect the records of whatever has finished.

Training and reporting are separate: `collect` only reads each run's summary.json, so a
partial experiment can be reported (and is labelled partial) while the rest still runs.
"""

from __future__ import annotations

import logging
import time

from tleg_dist.experiments.config import ExperimentConfig
from tleg_dist.experiments.plan import Job, build_plan
from tleg_dist.pipeline.run import finished, run_stage

log = logging.getLogger("tleg_dist.experiments")


class ExperimentError(RuntimeError):
    pass


def record(job: Job, summary: dict) -> dict:
    """One run's result. Images come from the run's own summary, not from the plan."""
    seen = summary["images_seen"]
    if job.images is not None and seen != job.images:
        # Budgets are the point of the comparison: never report a run that missed its own.
        raise ExperimentError(f"{job.name}: planned {job.images} training images, the run saw {seen} "
                              f"({job.out}); delete that run folder and rerun")
    return {"kind": job.kind, "setting": job.setting, "seed": job.seed, "depth": job.depth, "init": job.init,
            "top1": summary.get("val_top1"), "top5": summary.get("val_top5"), "val_loss": summary.get("val_loss"),
            "images": seen, "aux_share": job.aux_share, "total_images": seen + job.aux_share,
            "params": summary.get("params"), "wall_time_s": summary.get("wall_time_s"),
            "status": summary.get("status"), "out": str(job.out)}


def collect(plan: list[Job]) -> tuple[list[dict], int]:
    """(records of finished runs, number of planned runs)."""
    recs = []
    for job in plan:
        s = finished(job.out)
        if s is not None:
            recs.append(record(job, s))
    return recs, len(plan)


def run(x: ExperimentConfig, smoke: bool = False, on_progress=None) -> list[dict]:
    """Train every planned run in order; `on_progress(records, planned)` after each (seed, setting)."""
    plan = build_plan(x, smoke)
    t0 = time.time()
    for i, job in enumerate(plan):
        missing = [p for p in job.needs if not p.is_file()]
        if missing:
            raise ExperimentError(f"{job.name}: input {missing[0]} is missing (did an earlier stage fail?)")
        print(f"[experiment] {i + 1}/{len(plan)} {job.name} ({job.images:,} images) "
              f"elapsed {time.time() - t0:.0f} s", flush=True)
        summary = run_stage(job.name, job.config())
        record(job, summary)  # fails at once on a budget mismatch
        last_of_block = i + 1 == len(plan) or (plan[i + 1].seed, plan[i + 1].setting) != (job.seed, job.setting)
        if on_progress is not None and last_of_block:
            try:
                on_progress(*collect(plan))
            except Exception as e:  # noqa: BLE001 - a reporting bug must not stop hours of training
                log.warning("writing interim results failed (training goes on): %r", e)
    return collect(plan)[0]
