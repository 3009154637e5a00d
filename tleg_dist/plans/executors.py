"""Where a plan's jobs run: in this process, as local submitit processes, or as Slurm arrays.

Every executor gives the scheduler (plans/run.py) the same calls: `submit(jobs, dirs, after)`
returns one Handle per job, and each Handle says whether it ended and how. What an executor
can do beyond that, the scheduler reads from its class attributes (see Executor), never from
its name: Slurm alone takes jobs before their inputs exist (it queues them behind `afterok` on
the tasks they need), and its jobs alone outlive the launcher.

    ROOT/submitit/<job id>/   submitit's pickles and the jobs' logs (local and Slurm)

The cluster is always named: submitit's AutoExecutor silently picks Slurm whenever `srun` is
on PATH, so local runs on a login node would otherwise land on the cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import traceback
from pathlib import Path
from typing import Optional

from pydantic import Field, model_validator

from tleg_dist.artifacts import run_folder
from tleg_dist.config import Section
from tleg_dist.plans.job import Job, JobCall, run_job
from tleg_dist.utils.errors import UserError


class ResourcesConfig(Section):
    """What one job gets. A job with several tasks runs DeepSpeed across them."""

    nodes: int = Field(1, ge=1)
    tasks_per_job: int = Field(1, ge=1, description="ranks per job, split evenly over its nodes")
    gpus_per_task: int = Field(0, ge=0, description="0 on CPU-only allocations")
    cpus_per_task: int = Field(1, ge=1, description="also the torch thread count of each rank")
    mem_gb: Optional[float] = Field(None, gt=0)
    timeout_min: int = Field(60, ge=1)
    signal_delay_s: int = Field(120, ge=1, description="preemption signal this long before the time limit")
    max_requeues: int = Field(3, ge=0, description="time-outs a job may requeue after")
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    slurm_additional: dict[str, str] = Field(default_factory=dict, description="extra sbatch options")
    parallelism: int = Field(2, ge=1, description="jobs running at once (per Slurm array, or locally)")

    @model_validator(mode="after")
    def _even(self):
        if self.tasks_per_job % self.nodes:  # Slurm would start another rank count than budgets assume
            raise ValueError(f"resources.tasks_per_job={self.tasks_per_job} is not a multiple of "
                             f"resources.nodes={self.nodes} (each node runs as many ranks)")
        return self


SUBMITIT = "submitit"  # the plan folder's sub-folder for submitit's pickles and logs

# What a status poll meets on a busy cluster, no bug of ours (checked against submitit 1.5.4):
# sacct or squeue failing to run or answer in time (submitit 1.5.4 logs and bypasses a failed
# call itself; a version that does not would raise these), and sacct output that does not parse
# (a header without JobID: KeyError; bytes that are not text: UnicodeDecodeError, a ValueError).
POLL_HICCUPS = (OSError, subprocess.SubprocessError, KeyError, ValueError)
# The state of a job with none to follow, or whose poll hiccuped; the others are submitit's (Slurm's).
UNKNOWN, DONE_STATES, WAITING_STATES = "UNKNOWN", ("FINISHED", "COMPLETED"), ("PENDING", "REQUEUED")


class Handle:
    """One submitted job, as the scheduler sees it."""

    def __init__(self, job: Job, sub=None, error: str | None = None, slot: int = 0):
        self.job, self.sub, self.error = job, sub, error  # sub: submitit's job; None when run in-process
        self.slot = slot  # local jobs: which share of the GPUs

    @property
    def job_id(self) -> str:
        return getattr(self.sub, "job_id", "in-process")

    def state(self) -> str:
        """Submitit's state of the job; "UNKNOWN" for a job run in-process (none to follow) and
        while a poll hiccups (POLL_HICCUPS), which must not kill the launcher. Anything else raises."""
        if self.sub is None:
            return UNKNOWN
        try:
            return str(self.sub.state).upper()
        except POLL_HICCUPS:
            return UNKNOWN

    def ended(self) -> bool:
        if self.sub is None:
            return True
        # every task left its result (a local process may take seconds more to exit), or it is over
        tasks = [self.sub.task(i) for i in range(self.sub.num_tasks)] if self.sub.num_tasks > 1 else [self.sub]
        return all(t.paths.result_pickle.exists() for t in tasks) or self.sub.done()

    def failure(self) -> str | None:
        """The job's error; None when it returned (its run folder then says whether it finished)."""
        if self.sub is None:
            return self.error
        err = self.sub.exception()  # of any task
        return None if err is None else str(err)

    @property
    def log(self) -> str | None:
        if self.sub is None:
            return None
        first = self.sub.task(0) if self.sub.num_tasks > 1 else self.sub
        return str(first.paths.stderr)

    def cancel(self) -> None:
        if self.sub is not None:
            self.sub.cancel(check=False)


class Executor:
    """What the scheduler may ask of every executor; the class attributes say what it can do."""

    name: str                  # shown in messages and recorded in the plan's job index beside each job id
    capacity: int = 1          # jobs running at once
    queues_ahead = False       # takes a job before its inputs exist (queued behind the jobs it needs)
    runs_in_submit = False     # submit() returns once its jobs have run here: no job ids, no logs to point to
    outlives_launcher = False  # its jobs run on when the launcher stops: --no-wait is allowed, an interrupt
                               # leaves them running, and a later launch follows them (attach)
    started = "started job"    # how a submitted job is announced, before its id
    log_folder: Optional[Path] = None  # where its jobs' logs go

    def __init__(self, resources: ResourcesConfig, log_root: Path):
        pass

    def submit(self, jobs: list[Job], dirs: dict[str, Path], after: list[str]) -> list[Handle]:
        raise NotImplementedError

    @staticmethod
    def alive(job_id: str) -> bool:
        """Whether a job an earlier launch submitted through this kind of executor still runs."""
        return False

    def attach(self, job: Job, job_id: str) -> Handle:
        """A job an earlier launch submitted (only where outlives_launcher)."""
        raise NotImplementedError


class InProcess(Executor):
    """One job after another in this process: the demo's default, and the tests'."""

    name, runs_in_submit = "in-process", True

    def submit(self, jobs: list[Job], dirs: dict[str, Path], after: list[str]) -> list[Handle]:
        out = []
        for job in jobs:
            try:
                summary = run_job(job, dirs)
                if summary.get("status") == run_folder.PREEMPTED:
                    raise UserError(f"{job.name} was preempted; rerun the same command to continue it")
                out.append(Handle(job))
            except UserError as e:
                out.append(Handle(job, error=f"{type(e).__name__}: {e}"))
            except Exception:  # noqa: BLE001 - one failed job must not lose the others' results
                out.append(Handle(job, error=traceback.format_exc()))
        return out


class _Submitit(Executor):
    def __init__(self, resources: ResourcesConfig, log_root: Path):
        self.r, self.log_folder = resources, Path(log_root) / SUBMITIT
        self.folder = self.log_folder / "%j"

    def _calls(self, jobs: list[Job], dirs: dict[str, Path]) -> list[JobCall]:
        return [JobCall(job, dirs, threads=self.r.cpus_per_task, workdir=str(Path.cwd())) for job in jobs]


class Local(_Submitit):
    """Local processes, `parallelism` at a time; with GPUs, each slot gets its own devices."""

    name, started = "local", "started local job"

    def __init__(self, resources: ResourcesConfig, log_root: Path):
        super().__init__(resources, log_root)
        self.capacity, self.handles = resources.parallelism, []

    def submit(self, jobs: list[Job], dirs: dict[str, Path], after: list[str]) -> list[Handle]:
        import submitit

        r = self.r
        if r.nodes > 1:
            raise UserError("resources.nodes > 1 needs --cluster (local jobs run on this machine)")
        out = []
        for call in self._calls(jobs, dirs):
            busy = {h.slot for h in self.handles if not h.ended()}
            slot = next(i for i in range(self.capacity) if i not in busy)
            ex = submitit.LocalExecutor(folder=self.folder, max_num_timeout=r.max_requeues)
            gpus = r.gpus_per_task * r.tasks_per_job
            params = dict(timeout_min=r.timeout_min, tasks_per_node=r.tasks_per_job, signal_delay_s=r.signal_delay_s)
            if gpus:
                params.update(gpus_per_node=gpus, visible_gpus=tuple(range(slot * gpus, (slot + 1) * gpus)))
            ex.update_parameters(**params)
            out.append(Handle(call.job, ex.submit(call), slot=slot))
        self.handles += out
        return out


class Slurm(_Submitit):
    """One Slurm array per submit call, queued behind `afterok` on the tasks it needs."""

    name, capacity, started = "slurm", 10**9, "submitted job"
    queues_ahead = outlives_launcher = True

    def __init__(self, resources: ResourcesConfig, log_root: Path):
        super().__init__(resources, log_root)
        if shutil.which("sbatch") is None:
            raise UserError("--cluster: no sbatch on PATH (for a local Slurm: sudo slurm/local-cluster.sh start)")
        self.label = Path(log_root).name

    def submit(self, jobs: list[Job], dirs: dict[str, Path], after: list[str]) -> list[Handle]:
        import submitit

        r = self.r
        ex = submitit.AutoExecutor(folder=self.folder, cluster="slurm", slurm_max_num_timeout=r.max_requeues)
        per_node = r.tasks_per_job // r.nodes
        extra = {f"slurm_{k}": v for k, v in (("partition", r.partition), ("account", r.account), ("qos", r.qos)) if v}
        sbatch = dict(r.slurm_additional)
        if after:
            sbatch["dependency"] = "afterok:" + ":".join(after)
        ex.update_parameters(
            name=f"tleg-{self.label}", timeout_min=r.timeout_min, nodes=r.nodes, tasks_per_node=per_node,
            cpus_per_task=r.cpus_per_task, gpus_per_node=r.gpus_per_task * per_node if r.gpus_per_task else None,
            mem_gb=r.mem_gb, slurm_signal_delay_s=r.signal_delay_s, slurm_array_parallelism=r.parallelism,
            slurm_additional_parameters=sbatch or None, **extra)
        with ex.batch():
            subs = [ex.submit(call) for call in self._calls(jobs, dirs)]
        return [Handle(call_job, sub) for call_job, sub in zip(jobs, subs)]

    def attach(self, job: Job, job_id: str) -> Handle:
        import submitit

        return Handle(job, submitit.SlurmJob(folder=self.folder, job_id=job_id,
                                             tasks=list(range(self.r.tasks_per_job))))

    @staticmethod
    def alive(job_id: str) -> bool:
        """Slurm still has the job (queued or running)."""
        if shutil.which("squeue") is None:
            return False
        r = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
        return r.returncode == 0 and bool(r.stdout.strip())


EXECUTORS: dict[str, type[Executor]] = {e.name: e for e in (InProcess, Local, Slurm)}
