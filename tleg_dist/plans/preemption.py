"""submitit's preemption signal, handed to the trainer while it trains (plans/job.py JobCall)."""

from __future__ import annotations

import signal


class ForwardPreemption:
    """While the trainer runs, submitit's signal only asks it to stop (it then saves a checkpoint
    at a step boundary); submitit's own handler runs once it has stopped."""

    def __init__(self):
        import submitit

        self.sig = submitit.JobEnvironment._usr_sig()
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
        if callable(trainer) and trainer is not self._handle:
            self.received = True
            trainer(signal.SIGUSR1, frame)
        elif callable(self._submitit):
            self._submitit(signum, frame)  # not training (yet): nothing to save, requeue now

    def hand_back(self) -> None:
        if self.received and callable(self._submitit):
            self._submitit(self.sig, None)
