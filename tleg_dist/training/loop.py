"""One epoch of training and one evaluation pass; readable top to bottom."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from tleg_dist.training.checkpoint import Position
from tleg_dist.training.distributed import DistInfo, all_reduce_sum, any_rank
from tleg_dist.utils.errors import UserError


class NonFiniteLossError(FloatingPointError, UserError):
    pass


@dataclass
class LoopContext:
    engine: object
    criterion: Callable
    dist: DistInfo
    dtype: torch.dtype
    mixup: Optional[Callable]
    seed: int
    nan_policy: str
    max_nan_skips: int
    log_every: int
    global_batch: int
    ema: object = None
    nan_skips: int = 0


def seed_step(seed: int, micro_step: int, rank: int) -> None:
    """Reseed per micro-step so drop-path and mixup are exact after a resume."""
    s = (seed * 1_000_003 + micro_step * 7_919 + rank * 104_729) % (2**32)
    torch.manual_seed(s)
    np.random.seed(s)


def train_steps(ctx: LoopContext, batches, pos: Position, metrics, on_step: Callable[[], bool]) -> bool:
    """Consume `batches`; call `on_step` after each optimizer step. Returns False if it asked to stop."""
    engine, d = ctx.engine, ctx.dist
    t0, seen = time.perf_counter(), 0
    for x, y in batches:
        seed_step(ctx.seed, pos.micro_step, d.rank)
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        if ctx.mixup is not None:
            x, y = ctx.mixup(x, y)
        out = engine(x.to(ctx.dtype))
        loss = ctx.criterion(x, out, y)
        pos.batch_in_epoch += 1
        pos.micro_step += 1
        if any_rank(not torch.isfinite(loss).item(), d.device):
            ctx.nan_skips += 1
            if ctx.nan_policy == "stop" or ctx.nan_skips > ctx.max_nan_skips:
                raise NonFiniteLossError(
                    f"non-finite loss at epoch {pos.epoch}, batch {pos.batch_in_epoch - 1}, optimizer step "
                    f"{pos.global_step} ({ctx.nan_skips} so far; train.nan_policy={ctx.nan_policy}, "
                    f"max_nan_skips={ctx.max_nan_skips}); last good checkpoint kept")
            metrics.print(f"skipping non-finite loss at step {pos.global_step} ({ctx.nan_skips}/{ctx.max_nan_skips})")
            metrics.update(1)
            continue
        boundary = engine.is_gradient_accumulation_boundary()
        engine.backward(loss)
        engine.step()
        seen += x.shape[0]
        metrics.update(1, loss=loss.item())
        if not boundary:
            continue
        pos.global_step = engine.global_steps
        if ctx.ema is not None:
            ctx.ema.update(engine.module, step=pos.global_step)
        if pos.global_step % ctx.log_every == 0:
            dt = time.perf_counter() - t0
            ips = seen * d.world_size / max(dt, 1e-9)
            metrics.log("train", pos.global_step, epoch=pos.epoch, loss=loss.item(),
                        lr=engine.get_lr()[0], images_per_s=ips)
            t0, seen = time.perf_counter(), 0
        if not on_step():
            return False
    return True


@torch.no_grad()
def evaluate(model, val, dist: DistInfo, dtype: torch.dtype) -> dict:
    """Top-1/top-5 over every rank's disjoint share. Ranks with fewer batches run dummy
    forwards, because ZeRO-3 gathers parameters collectively at each forward."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # loss, top1, top5, count
    it = iter(val)
    dummy = None
    while True:
        batch = next(it, None)
        if not any_rank(batch is not None, dist.device):
            break
        if batch is None:
            if dummy is None:
                raise RuntimeError(f"rank {dist.rank} has no validation data; use fewer ranks or more val images")
            model(dummy)
            continue
        x, y = batch[0].to(dist.device), batch[1].to(dist.device)
        dummy = x[:1].to(dtype)
        out = model(x.to(dtype)).float()
        k = min(5, out.shape[1])
        topk = out.topk(k, dim=1).indices
        hit = topk == y[:, None]
        sums += torch.tensor([F.cross_entropy(out, y, reduction="sum").item(), hit[:, 0].sum().item(),
                              hit.any(dim=1).sum().item(), y.numel()], dtype=torch.float64)
    loss, top1, top5, n = all_reduce_sum(sums.tolist(), dist.device)
    model.train(was_training)
    n = max(n, 1)
    return {"loss": loss / n, "top1": 100 * top1 / n, "top5": 100 * top5 / n, "count": int(n)}
