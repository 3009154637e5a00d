"""One epoch of training and one evaluation pass; readable top to bottom.

The training loss never makes the loop wait for the device between log steps: its sum and the
first non-finite micro-step stay in device tensors (LossTracker), read by `settle` (one host
sync and, on several ranks, one all-reduce) at log steps, before every checkpoint save and at
the end of an epoch. So with train.nan_policy=stop a NaN is noticed up to log_every_steps steps
late, but never after a checkpoint has saved its weights.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from tleg_dist.data.device import to_device
from tleg_dist.data.errors import DataError
from tleg_dist.training.checkpoint import Position
from tleg_dist.training.distributed import DistInfo, reduce_
from tleg_dist.utils.errors import UserError

_NONE = 2**62  # "no non-finite loss yet"; larger than any micro-step


class NonFiniteLossError(FloatingPointError, UserError):
    pass


class LossTracker:
    def __init__(self, device: torch.device, policy: str, max_skips: int):
        self.device, self.policy, self.max_skips = device, policy, max_skips
        self.skips = 0
        self._reset()

    def _reset(self) -> None:
        self.sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.count = 0
        self.first_bad = torch.full((), _NONE, dtype=torch.int64, device=self.device)
        self.where: dict[int, Position] = {}  # micro-step -> position, for the error message

    def _error(self, pos: Position, count: int) -> NonFiniteLossError:
        """The one wording of the error, for both policies; `pos` is where the bad batch was."""
        return NonFiniteLossError(
            f"non-finite loss at epoch {pos.epoch}, batch {pos.batch_in_epoch}, optimizer step {pos.global_step} "
            f"({count} so far; train.nan_policy={self.policy}, max_nan_skips={self.max_skips}); "
            f"last good checkpoint kept")

    def skip(self, loss: torch.Tensor, pos: Position, metrics) -> bool:
        """nan_policy=skip: decide now whether this batch takes a step. The price is a host sync (and an
        all-reduce on several ranks) every micro-step, as the decision cannot wait for a log step."""
        if self.policy != "skip":
            return False  # nan_policy=stop: no per-step sync; `settle` finds a NaN at the next log step
        bad = (~torch.isfinite(loss.detach())).double().reshape(1)
        if not reduce_(bad).item():  # the decision's one host sync, after the all-ranks reduction
            return False
        self.skips += 1
        if self.skips > self.max_skips:
            raise self._error(pos, self.skips)
        metrics.print(f"skipping non-finite loss at step {pos.global_step} ({self.skips}/{self.max_skips})")
        return True

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
        loss_sum, n, n_bad = reduce_(torch.stack([self.sum, count, bad.double()])).tolist()
        if n_bad:
            raise self._error(self.where[int(reduce_(self.first_bad.clone(), "min"))], 1)
        self._reset()
        return loss_sum / n if n else None


@dataclass
class LoopContext:
    engine: object
    criterion: Callable
    dist: DistInfo
    dtype: torch.dtype
    mixup: Optional[Callable]
    seed: int
    log_every: int
    losses: LossTracker
    prepare: Callable = None  # the source's on-device normalisation (DataBundle.prepare)
    ema: object = None


def seed_step(seed: int, micro_step: int, rank: int) -> None:
    """Reseed per micro-step so drop-path and mixup are exact after a resume."""
    s = (seed * 1_000_003 + micro_step * 7_919 + rank * 104_729) % (2**32)
    torch.manual_seed(s)
    np.random.seed(s)


def train_steps(ctx: LoopContext, batches, pos: Position, metrics, on_step: Callable[[], bool],
                teacher_logits: Optional[Iterator[torch.Tensor]] = None) -> bool:
    """Consume `batches`; call `on_step` after each optimizer step. Returns False if it asked to stop.
    `teacher_logits`: the teacher's logits of each batch, in step (the teacher-logit cache), or None.

    Nothing here waits for the device except at log steps (`ctx.losses.settle`) and with nan_policy=skip.
    """
    engine, d = ctx.engine, ctx.dist
    t0, seen = time.perf_counter(), 0
    for x, y in to_device(batches, d.device, ctx.prepare):
        seed_step(ctx.seed, pos.micro_step, d.rank)
        if ctx.mixup is not None:
            x, y = ctx.mixup(x, y)
        out = engine(x.to(ctx.dtype))
        loss = ctx.criterion(x, out, y, None if teacher_logits is None else next(teacher_logits))
        before = dataclasses.replace(pos)
        pos.batch_in_epoch += 1
        pos.micro_step += 1
        if ctx.losses.skip(loss, before, metrics):
            metrics.update(1)
            continue
        ctx.losses.add(loss, before)
        boundary = engine.is_gradient_accumulation_boundary()
        engine.backward(loss)
        engine.step()
        seen += x.shape[0]
        metrics.update(1)
        if not boundary:
            continue
        pos.global_step = engine.global_steps
        if ctx.ema is not None:
            ctx.ema.update(engine.module, step=pos.global_step)
        if pos.global_step % ctx.log_every == 0:
            mean_loss = ctx.losses.settle()
            dt = time.perf_counter() - t0
            ips = seen * d.world_size / max(dt, 1e-9)
            metrics.update(0, loss=mean_loss)
            metrics.log("train", pos.global_step, epoch=pos.epoch, loss=mean_loss,
                        lr=engine.get_lr()[0], images_per_s=ips)
            t0, seen = time.perf_counter(), 0
        if not on_step():
            return False
    ctx.losses.settle()  # the epoch's end is a checkpoint: no NaN may slip past it
    return True


def require_val_data(val, dist: DistInfo) -> None:
    """Every rank evaluates its own share of the validation set, and under ZeRO-3 even a rank that
    ran out must keep making forwards (shaped like its own batches): a rank with none cannot."""
    if len(val) == 0:
        raise DataError(f"rank {dist.rank} of {dist.world_size} has no validation data: use fewer ranks "
                        f"or more validation images (data.val_limit)")


@torch.no_grad()
def evaluate(model, val, dist: DistInfo, dtype: torch.dtype, prepare: Callable = None) -> dict:
    """Top-1/top-5 over every rank's disjoint share. Ranks with fewer batches run dummy
    forwards, because ZeRO-3 gathers parameters collectively at each forward."""
    require_val_data(val, dist)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=dist.device)  # loss, top1, top5, count
    rounds = int(reduce_(torch.tensor(len(val), device=dist.device), "max"))  # one agreement, not one per batch
    batches = to_device(val, dist.device, prepare)
    dummy = None
    for _ in range(rounds):
        batch = next(batches, None)
        if batch is None:
            model(dummy)
            continue
        x, y = batch
        dummy = x[:1].to(dtype)
        out = model(x.to(dtype)).float()
        k = min(5, out.shape[1])
        hit = out.topk(k, dim=1).indices == y[:, None]
        sums += torch.stack([F.cross_entropy(out, y, reduction="sum").double(), hit[:, 0].sum().double(),
                             hit.any(dim=1).sum().double(),
                             torch.full((), float(y.numel()), dtype=torch.float64, device=dist.device)])
    loss, top1, top5, n = reduce_(sums).tolist()
    model.train(was_training)
    n = max(n, 1)
    return {"loss": loss / n, "top1": 100 * top1 / n, "top5": 100 * top5 / n, "count": int(n)}
