"""submitit executors for a sweep: Slurm arrays, or local processes.

The cluster is always named: AutoExecutor silently picks Slurm whenever `srun` is on
PATH, so local runs on a login node would otherwise land on the cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tleg_dist.sweep.config import ResourcesConfig, SweepConfig

ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                 "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "PREEMPTED"}


def log_folder(cfg: SweepConfig) -> Path:
    return Path(cfg.output_dir) / "submitit" / "%j"


def slurm_executor(cfg: SweepConfig):
    import submitit

    if shutil.which("sbatch") is None:
        raise RuntimeError("--cluster: no sbatch on PATH (for a local Slurm: sudo slurm/local-cluster.sh start)")
    r: ResourcesConfig = cfg.resources
    ex = submitit.AutoExecutor(folder=log_folder(cfg), cluster="slurm", slurm_max_num_timeout=r.max_requeues)
    tasks_per_node = max(1, r.tasks_per_job // r.nodes)
    extra = {k: v for k, v in (("partition", r.partition), ("account", r.account), ("qos", r.qos)) if v}
    ex.update_parameters(
        name=f"tleg-sweep-{Path(cfg.output_dir).name}",
        timeout_min=r.timeout_min, nodes=r.nodes, tasks_per_node=tasks_per_node, cpus_per_task=r.cpus_per_task,
        gpus_per_node=r.gpus_per_task * tasks_per_node if r.gpus_per_task else None, mem_gb=r.mem_gb,
        slurm_signal_delay_s=r.signal_delay_s, slurm_array_parallelism=cfg.array_parallelism,
        slurm_additional_parameters=dict(r.slurm_additional) or None,
        **{f"slurm_{k}": v for k, v in extra.items()},
    )
    return ex


def local_executor(cfg: SweepConfig, slot: int = 0):
    """One local job: `tasks_per_job` processes; with GPUs, slot k gets its own devices."""
    import submitit

    r = cfg.resources
    if r.nodes > 1:
        raise ValueError("resources.nodes > 1 needs --cluster (local jobs run on this machine)")
    ex = submitit.LocalExecutor(folder=log_folder(cfg), max_num_timeout=r.max_requeues)
    gpus = r.gpus_per_task * r.tasks_per_job
    params = dict(timeout_min=r.timeout_min, tasks_per_node=r.tasks_per_job, signal_delay_s=r.signal_delay_s)
    if gpus:
        params.update(gpus_per_node=gpus, visible_gpus=tuple(range(slot * gpus, (slot + 1) * gpus)))
    ex.update_parameters(**params)
    return ex


def submit_array(executor, jobs: list) -> list:
    """Several jobs become one Slurm array (one task per depth)."""
    with executor.batch():
        handles = [executor.submit(job) for job in jobs]
    return handles


def slurm_state(job_id: str) -> str | None:
    """Live state from squeue (None once the job left the queue)."""
    r = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    states = [s.strip() for s in r.stdout.splitlines() if s.strip()]
    return states[0] if r.returncode == 0 and states else None


def attach_slurm(cfg: SweepConfig, job_id: str):
    """A handle on a job submitted by an earlier (detached) launch of the same sweep."""
    import submitit

    tasks = list(range(cfg.resources.tasks_per_job))
    return submitit.SlurmJob(folder=log_folder(cfg), job_id=job_id, tasks=tasks)


def read_job_index(out: Path) -> dict:
    try:
        return json.loads((Path(out) / "jobs.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_job_index(out: Path, index: dict) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "jobs.json").write_text(json.dumps(index, indent=1, sort_keys=True))
