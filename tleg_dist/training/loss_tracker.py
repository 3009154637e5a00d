"""Training-loss bookkeeping that never waits for the device between log steps.

The loss sum and the first non-finite micro-step stay in device tensors; `settle` reads them
(one host sync and, on several ranks, one all-reduce) at log steps, before every checkpoint
save and at the end of an epoch. So with train.nan_policy=stop a NaN is noticed up to
log_every_steps steps late, but never after a checkpoint has saved its weights.
"""

from __future__ import annotations

import torch

from tleg_dist.training import distributed
from tleg_dist.training.checkpoint import Position
from tleg_dist.utils.errors import UserError

_NONE = 2**62  # "no non-finite loss yet"; larger than any micro-step


class NonFiniteLossError(FloatingPointError, UserError):
    pass


def describe(pos: Position, count: int, policy: str, max_skips: int) -> str:
    """The one wording of the error, for both policies; `pos` is where the bad batch was."""
    return (f"non-finite loss at epoch {pos.epoch}, batch {pos.batch_in_epoch}, optimizer step "
            f"{pos.global_step} ({count} so far; train.nan_policy={policy}, max_nan_skips={max_skips}); "
            f"last good checkpoint kept")


class LossTracker:
    def __init__(self, device: torch.device, policy: str, max_skips: int):
        self.device, self.policy, self.max_skips = device, policy, max_skips
        self._reset()

    def _reset(self) -> None:
        self.sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.count = 0
        self.first_bad = torch.full((), _NONE, dtype=torch.int64, device=self.device)
        self.where: dict[int, Position] = {}  # micro-step -> position, for the error message

    def add(self, loss: torch.Tensor, pos: Position) -> None:
        """`pos`: a snapshot taken before this micro-batch (kept as it is). No host sync."""
        loss = loss.detach()
        finite = torch.isfinite(loss)
        self.sum += torch.where(finite, loss.double(), 0.0)
        self.count += 1
        self.first_bad = torch.minimum(self.first_bad, torch.where(finite, _NONE, pos.micro_step))
        self.where[pos.micro_step] = pos

    def settle(self) -> float | None:
        """Mean finite loss since the last settle over all ranks (None if none); raises on a non-finite one."""
        if not self.count:
            return None  # nothing new since the last settle (ranks agree: they count the same micro-steps)
        bad = self.first_bad < _NONE
        count = torch.full((), float(self.count), dtype=torch.float64, device=self.device)
        totals = distributed.reduce_(torch.stack([self.sum, count, bad.double()]))
        loss_sum, n, n_bad = totals.tolist()
        if n_bad:
            first = int(distributed.reduce_(self.first_bad.clone(), "min"))
            raise NonFiniteLossError(describe(self.where[first], 1, self.policy, self.max_skips))
        self._reset()
        return loss_sum / n if n else None
