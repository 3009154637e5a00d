"""Plan, submit, wait, collect: the logic behind launchers/sweep_depths.py.

Folder layout under the sweep's output_dir:
    runs/depth_004/       the trainer's run folder of depth 4 (checkpoints, final.safetensors)
    records/depth_004.json  result record, written last: its presence means "depth 4 is done"
    submitit/<job id>/    submitit pickles and logs
    jobs.json             depth -> submitted job id (lets a later launch re-attach)
    results.{md,csv,json,png}
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.sweep import executors, results
from tleg_dist.sweep.config import SweepConfig
from tleg_dist.sweep.job import FinetuneJob, fingerprint, read_record

ERROR_TAIL_LINES = 25


class SweepError(RuntimeError):
    pass


@dataclass
class DepthRun:
    depth: int
    job: FinetuneJob
    fingerprint: str
    record: dict | None = None
    handle: object = None
    slot: int | None = None
    state: str = "TODO"
    error: str | None = None
    log: str | None = None

    @property
    def job_id(self) -> str:
        return getattr(self.handle, "job_id", "?")


@dataclass
class SweepOutcome:
    records: list[dict]
    failed: list[DepthRun] = field(default_factory=list)
    pending: list[DepthRun] = field(default_factory=list)  # submitted, not waited for (--no-wait)
    paths: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def plan(cfg: SweepConfig) -> list[DepthRun]:
    """One DepthRun per depth, each config validated now (before anything is submitted)."""
    from tleg_dist.artifacts.learngene import check_arch as check_compatible

    meta = learngene_file.read_metadata(cfg.learngene)
    lg_arch, _ = learngene_file.arch_from_metadata(meta, str(cfg.learngene))
    out = Path(cfg.output_dir)
    runs = []
    for d in cfg.depths:
        job = FinetuneJob(learngene=str(cfg.learngene), recipe=str(cfg.finetune_recipe),
                          run_dir=str(out / "runs" / f"depth_{d:03d}"),
                          record_path=str(out / "records" / f"depth_{d:03d}.json"),
                          depth=d, seed=cfg.seed, overrides=list(cfg.overrides), threads=cfg.resources.cpus_per_task,
                          workdir=str(Path.cwd()))
        run_cfg = job.run_config()
        if d == cfg.depths[0]:
            check_compatible(lg_arch, run_cfg.model.arch(), cfg.learngene)
            if not Path(run_cfg.deepspeed_config).is_file():
                raise SweepError(f"deepspeed_config {run_cfg.deepspeed_config} (from {cfg.finetune_recipe}) "
                                 f"does not exist here ({Path.cwd()}); run from the repository root")
        run = DepthRun(d, job, fingerprint(run_cfg))
        rec = read_record(job.record_path)
        if rec is not None:
            if rec.get("fingerprint") != run.fingerprint:
                raise SweepError(f"{job.record_path} was produced by a different recipe, learngene or seed; "
                                 f"use another output_dir, or delete {out} to redo the sweep")
            run.record, run.state = rec, "DONE"
        runs.append(run)
    return runs


def run_sweep(cfg: SweepConfig, cluster: bool = False, wait: bool = True, poll_s: float = 1.0,
              progress_every_s: float = 30.0, echo: Callable[[str], None] = print) -> SweepOutcome:
    cfg = cfg.absolute()
    out = Path(cfg.output_dir)
    runs = plan(cfg)
    todo = [r for r in runs if r.record is None]
    where = f"slurm array (parallelism {cfg.array_parallelism})" if cluster else \
        f"this machine ({cfg.array_parallelism} at a time)"
    echo(f"[sweep] depths {cfg.depths}: {len(runs) - len(todo)} done, {len(todo)} to run on {where}; "
         f"logs in {out / 'submitit'}")
    if not wait and not cluster:
        raise SweepError("--no-wait needs --cluster: a local sweep schedules its own jobs, so it must stay")
    index = executors.read_job_index(out)
    if cluster:
        _submit_cluster(cfg, todo, index, echo)
    else:
        _refuse_if_on_cluster(todo, index)
    if not wait:
        echo("[sweep] not waiting; run the same command again to follow the jobs and collect the results")
        return SweepOutcome([r.record for r in runs if r.record], pending=todo)
    _wait(cfg, todo, cluster, index, poll_s, progress_every_s, echo)
    records = [r.record for r in runs if r.record]
    outcome = SweepOutcome(records, failed=[r for r in todo if r.state == "FAILED"])
    if records:
        title = f"{Path(cfg.learngene).parent.name}/{Path(cfg.learngene).name} -> {Path(cfg.finetune_recipe).name}"
        outcome.paths = results.write_all(records, out, title)
        echo(results.markdown(sorted(records, key=lambda r: r["depth"])).rstrip())
        echo(f"[sweep] results: {outcome.paths['md']} (+ .csv .json .png)")
    if outcome.failed:
        echo(f"[sweep] FAILED depths: {[r.depth for r in outcome.failed]} (re-run to retry them; "
             f"finished depths are skipped)")
    return outcome


def _submit_cluster(cfg: SweepConfig, todo: list[DepthRun], index: dict, echo) -> None:
    for r in todo:
        prev = index.get(str(r.depth), {})
        if prev.get("cluster") == "slurm" and prev.get("fingerprint") == r.fingerprint \
                and executors.slurm_state(prev["job_id"]):
            r.handle = executors.attach_slurm(cfg, prev["job_id"])
            echo(f"[sweep] depth {r.depth}: following job {prev['job_id']} from an earlier launch")
    new = [r for r in todo if r.handle is None]
    if new:
        handles = executors.submit_array(executors.slurm_executor(cfg), [r.job for r in new])
        for r, h in zip(new, handles):
            r.handle = h
            index[str(r.depth)] = {"cluster": "slurm", "job_id": h.job_id, "fingerprint": r.fingerprint}
            echo(f"[sweep] depth {r.depth}: submitted job {h.job_id}")
        executors.write_job_index(cfg.output_dir, index)


def _refuse_if_on_cluster(todo: list[DepthRun], index: dict) -> None:
    for r in todo:
        prev = index.get(str(r.depth), {})
        if prev.get("cluster") == "slurm" and executors.slurm_state(prev["job_id"]):
            raise SweepError(f"depth {r.depth} is running on Slurm as job {prev['job_id']} (same output_dir); "
                             f"follow it with --cluster, or scancel it first")


def _wait(cfg, todo, cluster, index, poll_s, progress_every_s, echo) -> None:
    try:
        _poll(cfg, todo, cluster, index, poll_s, progress_every_s, echo)
    except KeyboardInterrupt:
        if cluster:
            echo("[sweep] interrupted: the Slurm jobs keep running; run the same command to follow them")
        else:
            for r in todo:  # local jobs are this launcher's children: stop them, they resume next time
                if r.handle is not None and r.state not in ("DONE", "FAILED"):
                    r.handle.cancel(check=False)
            echo("[sweep] interrupted: local jobs stopped; run the same command to resume them")
        raise


def _poll(cfg, todo, cluster, index, poll_s, progress_every_s, echo) -> None:
    queue = collections.deque(todo if not cluster else [])
    running = [] if not cluster else list(todo)
    free = list(range(cfg.array_parallelism))
    last_progress = time.time()
    while queue or running:
        while queue and free:  # local: bounded parallelism, one slot per job
            r = queue.popleft()
            r.slot = free.pop(0)
            r.handle = executors.local_executor(cfg, r.slot).submit(r.job)
            index[str(r.depth)] = {"cluster": "local", "job_id": r.handle.job_id, "fingerprint": r.fingerprint}
            executors.write_job_index(cfg.output_dir, index)
            running.append(r)
            echo(f"[sweep] depth {r.depth}: started local job {r.job_id}")
        for r in list(running):
            state = _state(r)
            if state != r.state:
                r.state = state
                if state not in ("FINISHED", "COMPLETED", "UNKNOWN"):
                    echo(f"[sweep] depth {r.depth}: {state} (job {r.job_id})")
            if _ended(r.handle):
                _finish(r, echo)
                running.remove(r)
                if r.slot is not None:
                    free.append(r.slot)
                    r.slot = None
        if running and time.time() - last_progress >= progress_every_s:
            echo("[sweep] progress: " + " | ".join(f"depth {r.depth} {_progress(r)}" for r in running))
            last_progress = time.time()
        if queue or running:
            time.sleep(poll_s)


def _ended(handle) -> bool:
    """Every task left its result (a local process may take seconds more to exit), or the job is over."""
    tasks = [handle.task(i) for i in range(handle.num_tasks)] if handle.num_tasks > 1 else [handle]
    return all(t.paths.result_pickle.exists() for t in tasks) or handle.done()


def _state(r: DepthRun) -> str:
    try:
        return str(r.handle.state).upper()
    except Exception:  # noqa: BLE001 - sacct hiccups must not kill the launcher
        return "UNKNOWN"


def _finish(r: DepthRun, echo) -> None:
    err = r.handle.exception()
    rec = read_record(r.job.record_path)
    if err is None and rec is not None:
        r.record, r.state = rec, "DONE"
        echo(f"[sweep] depth {r.depth}: done, top1 {rec['top1']:.2f}% with {rec['params'] / 1e6:.3f}M params "
             f"({rec['time_s']:.1f} s, {rec['attempts']} attempt(s))")
        return
    r.state = "FAILED"
    text = str(err) if err is not None else "the job ended without writing its result record"
    r.error = "\n".join(text.rstrip().splitlines()[-ERROR_TAIL_LINES:])
    first_task = r.handle.task(0) if r.handle.num_tasks > 1 else r.handle
    r.log = str(first_task.paths.stderr)
    echo(f"[sweep] depth {r.depth}: FAILED (job {r.job_id})\n" + _indent(r.error) + f"\n    log: {r.log}")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _progress(r: DepthRun) -> str:
    """The newest training step of this depth's run, from its metrics log."""
    if r.state in ("PENDING", "REQUEUED", "TODO"):
        return r.state
    path = Path(r.job.run_dir) / "metrics.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return "starting"
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "train":
            return f"step {rec['step']} epoch {rec.get('epoch', 0) + 1}"
        if rec.get("kind") == "eval":
            return f"step {rec['step']} top1 {rec.get('top1', float('nan')):.1f}%"
    return "starting"
