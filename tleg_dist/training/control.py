"""After each optimizer step: save a checkpoint? stop? One object owns that decision and its state.

Three things end or interrupt a run between steps: the step budget (train.max_steps), a
periodic checkpoint (checkpoint.every_steps) and a preemption signal; between epochs, the
epoch-end checkpoint (checkpoint.every_epochs, and always after the last epoch). All ranks must take the
same decision (a checkpoint is collective), so on several ranks the signal is agreed on by an
all-reduce, but only at steps where the ranks meet anyway (log steps, saves): an all-reduce
every step would stall the device.
"""

from __future__ import annotations

from typing import Callable, Optional

from tleg_dist.artifacts.run_folder import COMPLETED, MAX_STEPS, PREEMPTED
from tleg_dist.config import RunConfig
from tleg_dist.training import distributed
from tleg_dist.training.checkpoint import Position
from tleg_dist.training.distributed import DistInfo
from tleg_dist.training.preempt import PreemptionFlag


class RunControl:
    """`with RunControl(...) as control:` listens for preemption signals while the run trains.

    `after_step` is the loop's callback; `stopped` says why the run stopped early (None: it has not).
    """

    def __init__(self, cfg: RunConfig, dist: DistInfo, pos: Position, save: Callable[[], None]):
        self.every, self.max_steps = cfg.checkpoint.every_steps, cfg.train.max_steps
        self.every_epochs, self.epochs = cfg.checkpoint.every_epochs, cfg.train.epochs
        self.log_every = cfg.train.log_every_steps
        self.dist, self.pos, self._save = dist, pos, save
        self.flag = PreemptionFlag()
        self.stopped: Optional[str] = MAX_STEPS if self._budget_spent() else None  # resumed at its budget

    def __enter__(self) -> "RunControl":
        self.flag.install()
        return self

    def __exit__(self, *exc) -> None:
        self.flag.uninstall()

    @property
    def running(self) -> bool:
        return self.stopped is None

    @property
    def status(self) -> str:
        return self.stopped or COMPLETED

    def _budget_spent(self) -> bool:
        return self.max_steps is not None and self.pos.global_step >= self.max_steps

    def _preempted(self, due: bool) -> bool:
        preempted = self.flag.received is not None
        if self.dist.world_size > 1:
            step = self.pos.global_step
            preempted = (due or step % self.log_every == 0) and distributed.any_rank(preempted, self.dist.device)
        return preempted

    def after_step(self) -> bool:
        """Save when a checkpoint is due or the run must stop; False: stop now (`stopped` says why)."""
        done = self._budget_spent()
        due = done or bool(self.every and self.pos.global_step % self.every == 0)
        preempted = self._preempted(due)
        if preempted or due:
            self._save()
        if preempted:
            self.stopped = PREEMPTED
        elif done:
            self.stopped = MAX_STEPS
        return self.running

    def after_epoch(self) -> None:
        """Save at the end of every `checkpoint.every_epochs`-th epoch and of the last one."""
        epoch = self.pos.epoch  # epochs finished
        if epoch % self.every_epochs == 0 or epoch == self.epochs:
            self._save()
