"""Preemption: a signal sets a flag; the loop saves at the next step boundary and exits.

All ranks must agree to save (a checkpoint is collective), so on several ranks the flag is
reduced across ranks at log steps and checkpoint steps (not every step: that would be a host
sync per step); a signal is acted on within train.log_every_steps optimizer steps.
Under submitit, ForwardPreemption hands submitit's signal to that flag while the trainer runs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess

from tleg_dist.utils.errors import UserError

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class PreemptionFlag:
    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def install(self) -> "PreemptionFlag":
        self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        self.received = signum


def requeue_if_asked(is_main: bool) -> None:
    """Under Slurm with TLEG_REQUEUE=1, rank 0 puts the job back in the queue."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job_id = "_".join(array) if all(array) else os.environ.get("SLURM_JOB_ID")
    if not (is_main and job_id and os.environ.get("TLEG_REQUEUE") == "1"):
        return
    r = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if r.returncode:
        log.error("scontrol requeue %s failed: %s", job_id, r.stderr.strip())
    else:
        log.warning("requeued Slurm job %s", job_id)


def submitit_signal() -> signal.Signals:
    """The signal submitit requeues on, from its public `JobEnvironment.USR_SIG` (a name such as "USR2",
    from SUBMITIT_PREEMPT_SIGNAL), resolved as submitit resolves it when it installs its handler."""
    import submitit

    name = submitit.JobEnvironment.USR_SIG
    sig = getattr(signal, f"SIG{name}", None)
    if sig is None:
        raise UserError(f"SUBMITIT_PREEMPT_SIGNAL={name}: not a signal name; leave it unset (USR2)")
    return sig


class ForwardPreemption:
    """While the trainer runs, submitit's signal only asks it to stop (it then saves a checkpoint
    at a step boundary); submitit's own handler runs once it has stopped."""

    def __init__(self):
        self.sig = submitit_signal()
        if self.sig in SIGNALS:  # the trainer would take it, stop, and the job never be requeued
            raise UserError(f"SUBMITIT_PREEMPT_SIGNAL={signal.Signals(self.sig).name[3:]}: the trainer stops on "
                            f"USR1 and TERM itself, so submitit could not requeue the job; leave it unset (USR2)")
        self.received = False
        self._submitit = None

    def install(self) -> "ForwardPreemption":
        self._submitit = signal.signal(self.sig, self._handle)
        return self

    def uninstall(self) -> None:
        if self._submitit is not None:
            signal.signal(self.sig, self._submitit)

    def _handle(self, signum, frame):
        trainer = signal.getsignal(signal.SIGUSR1)  # the trainer's PreemptionFlag while it trains
        # `!=`, not `is not`: each `self._handle` is a new bound-method object
        if callable(trainer) and trainer != self._handle:
            self.received = True
            trainer(signal.SIGUSR1, frame)
        elif callable(self._submitit):
            self._submitit(signum, frame)  # not training (yet): nothing to save, requeue now

    def hand_back(self) -> None:
        if self.received and callable(self._submitit):
            self._submitit(self.sig, None)
