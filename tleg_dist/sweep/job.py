"""One depth of a sweep: a picklable callable that fine-tunes a Des-Net from a learngene.

It receives paths only (never models), so it pickles in microseconds and runs the same
under submitit's local executor and a Slurm array task. The trainer does the work;
this class maps the job environment onto it and turns its outcome into a result record.

Preemption: submitit's signal (USR2 by default, sent by Slurm `--signal` before the time
limit, or by `job._interrupt()`) is passed on to the trainer, which saves a checkpoint at
the next step boundary and returns; then submitit's own handler calls `checkpoint()` and
requeues. A SIGTERM (`scontrol requeue`, Slurm preemption) stops the trainer the same way;
Slurm has already requeued the job, so it exits without a result. Either way the next
attempt continues from the trainer's newest complete checkpoint (`resume="auto"`).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tleg_dist import config as config_lib
from tleg_dist.config import RunConfig
from tleg_dist.utils.atomic import atomic_path

if TYPE_CHECKING:
    from submitit.helpers import DelayedSubmission

RECORD_FORMAT = "tleg-sweep-record"


def fingerprint(cfg: RunConfig) -> str:
    """What makes two runs of a depth interchangeable: the resolved config, minus where it is written."""
    dump = cfg.model_dump(mode="json")
    dump.pop("output_dir", None)
    dump["train"].pop("progress", None)
    return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:16]


def read_record(path: Path) -> dict | None:
    try:
        rec = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) and rec.get("format") == RECORD_FORMAT else None


@dataclass
class FinetuneJob:
    learngene: str
    recipe: str
    run_dir: str        # the trainer's output_dir for this depth
    record_path: str    # written last, by rank 0: its existence means "this depth is done"
    depth: int
    seed: int | None = None
    overrides: list[str] = field(default_factory=list)
    threads: int = 1
    workdir: str = "."  # the launcher's cwd: relative paths in recipes mean what they meant there

    def run_config(self) -> RunConfig:
        """The recipe plus the sweep's overrides, then this job's fields (set directly, not
        parsed from strings, so that any path survives)."""
        raw = yaml.safe_load((Path(self.workdir) / self.recipe).read_text()) or {}
        raw = config_lib.apply_overrides(raw, list(self.overrides))
        raw["stage"] = "finetune"
        raw["output_dir"] = str(self.run_dir)
        if self.seed is not None:
            raw["seed"] = self.seed
        model = raw.setdefault("model", {})
        model.update(depth=self.depth, init="learngene", learngene=str(self.learngene))
        train = raw.setdefault("train", {})
        train["progress"] = False  # no tqdm bars in job logs; the launcher shows progress
        return config_lib.from_dict(raw, source=f"{self.recipe} (depth {self.depth})")

    def __call__(self) -> dict:
        import submitit
        import torch

        from tleg_dist.training.trainer import train

        t0 = time.time()
        os.chdir(self.workdir)
        # submitit requeues this job; the trainer must not requeue it a second time.
        os.environ.pop("TLEG_REQUEUE", None)
        os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        # Rendezvous for the job's tasks (also for one task: the trainer needs MASTER_PORT);
        # the port is derived from the job id. Devices stay visible: the trainer picks LOCAL_RANK's.
        dist_env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False,
                                                                         overwrite=True)
        cfg = self.run_config()
        preempt = _ForwardPreemption().install()
        try:
            summary = train(cfg, resume="auto")
        finally:
            preempt.uninstall()
        elapsed = time.time() - t0
        if dist_env.rank == 0:
            _append_attempt(Path(self.run_dir), elapsed, summary)
        if summary.get("status") == "preempted":
            print(f"[sweep] depth {self.depth}: stopped at step {summary.get('global_step')} "
                  f"(checkpoint saved); the job continues when it is requeued", file=sys.stderr, flush=True)
            preempt.hand_back()  # submitit: checkpoint() + requeue + exit, on rank 0
            sys.exit(1)          # other ranks, or a SIGTERM: Slurm requeued us already; leave no result
        record = self._record(cfg, summary)
        if dist_env.rank == 0:
            Path(self.record_path).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.record_path) as tmp:
                tmp.write_text(json.dumps(record, indent=1))
        return record

    def checkpoint(self) -> "DelayedSubmission":
        """Requeue as is: the trainer finds its own newest complete checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)

    def _record(self, cfg: RunConfig, summary: dict) -> dict:
        attempts = _read_attempts(Path(self.run_dir))
        return {
            "format": RECORD_FORMAT,
            "depth": self.depth,
            "seed": cfg.seed,
            "top1": summary.get("val_top1"),
            "top5": summary.get("val_top5"),
            "val_loss": summary.get("val_loss"),
            "best_top1": summary.get("best_top1"),
            "params": summary.get("params"),
            "global_step": summary.get("global_step"),
            "epochs": summary.get("epoch"),
            "time_s": round(sum(a["time_s"] for a in attempts), 3),
            "attempts": len(attempts),
            "fingerprint": fingerprint(cfg),
            "learngene": str(self.learngene),
            "run_dir": str(self.run_dir),
            "weights": str(Path(self.run_dir) / "final.safetensors"),
        }


def _append_attempt(run_dir: Path, elapsed: float, summary: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "sweep_attempts.jsonl", "a") as f:
        f.write(json.dumps({"time_s": round(elapsed, 3), "status": summary.get("status"),
                            "global_step": summary.get("global_step")}) + "\n")


def _read_attempts(run_dir: Path) -> list[dict]:
    path = run_dir / "sweep_attempts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _ForwardPreemption:
    """While the trainer runs, submitit's preemption signal only asks it to stop (it then
    saves a checkpoint at a step boundary); submitit's handler runs once it has stopped."""

    def __init__(self):
        import submitit

        self.sig = submitit.JobEnvironment._usr_sig()
        self.received = False
        self._submitit = None

    def install(self) -> "_ForwardPreemption":
        self._submitit = signal.signal(self.sig, self._handle)
        return self

    def uninstall(self) -> None:
        if self._submitit is not None:
            signal.signal(self.sig, self._submitit)

    def _handle(self, signum, frame):
        trainer = signal.getsignal(signal.SIGUSR1)  # the trainer's PreemptionFlag while it trains
        if callable(trainer) and trainer is not self._handle:
            self.received = True
            trainer(signal.SIGUSR1, frame)
        elif callable(self._submitit):
            self._submitit(signum, frame)  # not training (yet): nothing to save, requeue now

    def hand_back(self) -> None:
        if self.received and callable(self._submitit):
            self._submitit(self.sig, None)
