"""A Job is one trainer run: a typed RunConfig, the jobs whose artefacts it reads, and labels
for the report. A plan is a list of jobs in dependency order (plans/demo.py, sweep.py and
experiment.py build them from their YAML).

Inputs are bound, not spelt: `Input("model.learngene", "learngene", "learngene")` means "set
model.learngene to the 'learngene' artefact that job 'learngene' lists in its summary.json".
They are filled in when the job starts, so the planner never guesses a file name.

The same `run_job` runs a job in this process, in a local submitit process or in a Slurm
task (JobCall pickles it: paths and configs only, never models).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tleg_dist import cli, config as config_lib
from tleg_dist.artifacts import run_folder
from tleg_dist.config import RunConfig


@dataclass(frozen=True)
class Input:
    field: str     # dotted RunConfig key, e.g. "model.learngene"
    job: str       # the job that produces it
    artifact: str  # the name under "files" in that job's summary.json


@dataclass
class Job:
    name: str
    cfg: RunConfig  # validated without checking that input files exist (they may not yet)
    inputs: list[Input] = field(default_factory=list)
    labels: dict = field(default_factory=dict)  # kind, depth, init, seed, setting, planned images, ...

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def needs(self) -> list[str]:
        return list(dict.fromkeys(i.job for i in self.inputs))


def check_plan(plan: list[Job]) -> None:
    seen: set[str] = set()
    for job in plan:
        if job.name in seen:
            raise config_lib.ConfigError(f"two planned jobs are named {job.name!r}")
        missing = [n for n in job.needs if n not in seen]
        if missing:
            raise config_lib.ConfigError(f"job {job.name!r} needs {missing[0]!r}, which is not planned before it")
        seen.add(job.name)


def derive(cfg: RunConfig, updates: dict[str, object], inputs: Sequence[Input] = (), check_paths: bool = False,
           source: str = "<plan>") -> RunConfig:
    """cfg with dotted keys set to typed values (never parsed from strings). An input's field
    holds a placeholder naming its producer, "<job:artifact>", until resolve() fills it in."""
    raw = cfg.model_dump(mode="json")
    for key, value in {**updates, **{i.field: f"<{i.job}:{i.artifact}>" for i in inputs}}.items():
        config_lib.set_dotted(raw, key.split("."), str(value) if isinstance(value, Path) else value)
    return config_lib.from_dict(raw, source=source, check_paths=check_paths)


def resolve(job: Job, dirs: dict[str, Path]) -> RunConfig:
    """The job's config with its inputs read from the summaries of the jobs it needs."""
    if not job.inputs:
        return job.cfg
    found = {i.field: run_folder.artifact(dirs[i.job], i.artifact) for i in job.inputs}
    return derive(job.cfg, found, check_paths=True, source=f"job {job.name}")


def up_to_date(job: Job, dirs: dict[str, Path]) -> dict | None:
    """The job's summary when it finished with the config the plan now asks for; None to (re)run.
    Raises when its folder holds a finished run of another config: never silently mix the two."""
    summary = run_folder.finished(job.out)
    if summary is None or "fingerprint" not in summary:  # summaries before fingerprints: trust them
        return summary
    if any(run_folder.finished(dirs[n]) is None for n in job.needs):
        return None  # an input is being redone: so is this job
    if summary["fingerprint"] != run_folder.fingerprint(resolve(job, dirs)):
        raise config_lib.ConfigError(f"{job.out} holds a finished run of a different config than job "
                                     f"{job.name!r} asks for; use another output_dir, or delete that folder")
    return summary


def record(job: Job, summary: dict) -> dict:
    """One finished job as a report row: its labels plus what its summary.json says."""
    path = job.out / run_folder.ATTEMPTS
    attempts = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    files = summary.get("files") or {}
    return {"name": job.name, **job.labels, "seed": job.cfg.seed,
            "top1": summary.get("val_top1"), "top5": summary.get("val_top5"), "val_loss": summary.get("val_loss"),
            "best_top1": summary.get("best_top1"), "params": summary.get("params"),
            "global_step": summary.get("global_step"), "epochs": summary.get("epoch"),
            "images": summary.get("images_seen"),
            "time_s": round(sum(a["time_s"] for a in attempts) if attempts else summary.get("wall_time_s", 0), 3),
            "attempts": max(1, len(attempts)), "fingerprint": summary.get("fingerprint"),
            "cache_fill_s": (summary.get("teacher_cache") or {}).get("fill_s"),
            "run_dir": str(job.out),
            # the file a dependent job binds: the weights, or the learngene of an Aux-Net
            run_folder.WEIGHTS: files.get(run_folder.WEIGHTS) or files.get(run_folder.LEARNGENE)}


def run_job(job: Job, dirs: dict[str, Path], is_main: bool = True) -> dict:
    """Train the job (resuming its newest complete checkpoint) and log the attempt."""
    from tleg_dist.training.trainer import train

    t0 = time.time()
    summary = train(resolve(job, dirs), resume="auto")
    if is_main:
        job.out.mkdir(parents=True, exist_ok=True)
        with open(job.out / run_folder.ATTEMPTS, "a") as f:
            f.write(json.dumps({"time_s": round(time.time() - t0, 3), "status": summary.get("status"),
                                "global_step": summary.get("global_step")}) + "\n")
    return summary


@dataclass
class JobCall:
    """What submitit pickles and runs: one job, in the launcher's working directory.

    Preemption: submitit's signal (USR2, sent by Slurm `--signal` before the time limit) is
    passed on to the trainer, which saves a checkpoint at the next step boundary and returns;
    then submitit's handler calls `checkpoint()` and requeues. A SIGTERM (`scontrol requeue`)
    stops the trainer the same way; Slurm has requeued the job already, so it exits without
    a result. The next attempt resumes from the newest complete checkpoint.
    """

    job: Job
    dirs: dict[str, Path]
    threads: int = 1
    workdir: str = "."

    def __call__(self) -> dict:
        import submitit
        import torch

        from tleg_dist.training.preempt import ForwardPreemption

        os.chdir(self.workdir)
        os.environ.pop("TLEG_REQUEUE", None)  # submitit requeues; the trainer must not as well
        # resources.cpus_per_task, not an OMP_NUM_THREADS the launcher's shell passed on (sbatch exports it)
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        torch.set_num_threads(self.threads)
        # Rendezvous for the job's tasks (the port comes from the job id); devices stay visible.
        env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        preempt = ForwardPreemption().install()
        try:
            summary = run_job(self.job, self.dirs, is_main=env.rank == 0)
        finally:
            preempt.uninstall()
        if summary.get("status") == run_folder.PREEMPTED:
            print(f"[plan] {self.job.name}: stopped at step {summary.get('global_step')} (checkpoint saved); "
                  f"it continues when requeued", file=sys.stderr, flush=True)
            preempt.hand_back()  # submitit: checkpoint() + requeue + exit, on rank 0
            sys.exit(cli.EXIT_PREEMPTED)  # other ranks, or a SIGTERM: Slurm requeued us already
        return record(self.job, summary)

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(self)
