"""AdamW with DeiT's parameter groups, and warmup + cosine as a per-step LR factor."""

from __future__ import annotations

import math

import torch
from torch import nn

from tleg_dist.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No decay on biases, norms and embeddings (anything 1-D, plus pos_embed)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_norm = ".norm" in f".{name}" or "norm1" in name or "norm2" in name or "fc_norm" in name
        if p.ndim <= 1 or name.endswith(".bias") or name.endswith("_bias") or "pos_embed" in name or is_norm:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, *, total: int, warmup: int, peak: float, min_lr: float) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = min(min_lr / peak, 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build(model: nn.Module, cfg: OptimConfig, *, global_batch: int, steps_per_epoch: int, total_steps: int):
    """(AdamW, a factory of its LR scheduler, the peak LR); the peak defaults to base_lr * global_batch / 512."""
    peak = cfg.lr if cfg.lr is not None else cfg.base_lr * global_batch / 512
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=peak, betas=tuple(cfg.betas), eps=cfg.eps)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    def scheduler(wrapped):  # DeepSpeed wraps the optimizer first, then schedules the wrapper
        return torch.optim.lr_scheduler.LambdaLR(
            wrapped, lambda s: lr_factor(s, total=total_steps, warmup=warmup, peak=peak, min_lr=cfg.min_lr))

    return optimizer, scheduler, peak
