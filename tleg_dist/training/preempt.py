"""Preemption: a signal sets a flag; the loop saves at the next step boundary and exits.

All ranks must agree to save (a checkpoint is collective), so on several ranks the flag is
reduced across ranks at log steps and checkpoint steps (not every step: that would be a host
sync per step); a signal is acted on within train.log_every_steps optimizer steps.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class PreemptionFlag:
    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def install(self) -> "PreemptionFlag":
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        self.received = signum


def requeue_if_asked(is_main: bool) -> bool:
    """Under Slurm with TLEG_REQUEUE=1, rank 0 puts the job back in the queue."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID")
    job_id = (f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job
              else os.environ.get("SLURM_JOB_ID"))
    if not (is_main and job_id and os.environ.get("TLEG_REQUEUE") == "1"):
        return False
    r = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if r.returncode:
        log.error("scontrol requeue %s failed: %s", job_id, r.stderr.strip())
        return False
    log.warning("requeued Slurm job %s", job_id)
    return True
