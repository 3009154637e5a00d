"""Training budgets in images: a budget becomes optimizer steps that see at least that many.

The unit is training images seen (micro-batches x batch size x ranks), as in the trainer's
summary. Budgets are matched in optimizer steps (train.max_steps with optim.schedule_steps, so
the cosine schedule ends with the budget): a budget is rounded up to whole global batches. How
the costs are then compared (the paper's amortised accounting) is experiments/cost.py.
"""

from __future__ import annotations

import functools
import json
import math

from tleg_dist.config import RunConfig


def images_per_step(cfg: RunConfig, world_size: int = 1) -> int:
    return cfg.data.batch_size * cfg.optim.grad_accum * world_size


def steps_for(images: float, cfg: RunConfig, world_size: int = 1) -> int:
    """Optimizer steps that see at least `images` images."""
    return max(1, math.ceil(images / images_per_step(cfg, world_size) - 1e-9))


@functools.lru_cache(maxsize=32)
def _train_batches(data_json: str, arch_json: str, seed: int, ranks: int) -> int:
    from tleg_dist.config import DataConfig
    from tleg_dist.data import build_data
    from tleg_dist.models.arch import ViTArch

    data = build_data(DataConfig.model_validate_json(data_json), ViTArch.from_dict(json.loads(arch_json), "model"),
                      rank=0, world_size=ranks, seed=seed)
    return len(data.train)


def steps_per_epoch(cfg: RunConfig, ranks: int = 1) -> int:
    """As the trainer counts them (full micro-batches per rank // grad_accum)."""
    n = _train_batches(cfg.data.model_dump_json(), json.dumps(cfg.model.arch().to_dict()), cfg.seed, ranks)
    return max(1, n // cfg.optim.grad_accum)


def stage_images(cfg: RunConfig, ranks: int = 1) -> int:
    """Images a stage run will see: its epochs, or train.max_steps if that comes first."""
    steps = steps_per_epoch(cfg, ranks) * cfg.train.epochs
    if cfg.train.max_steps is not None:
        steps = min(steps, cfg.train.max_steps)
    return steps * images_per_step(cfg, ranks)


def budget_updates(images: float, cfg: RunConfig, ranks: int = 1, warmup: float = 0.0) -> tuple[int, dict]:
    """(images it will see, config updates) for training exactly `images` (rounded up to a step),
    the first `warmup` fraction of them warming up (0: as the recipe says).

    Only one evaluation, of the final weights (what each init is judged on), which the trainer
    makes when max_steps ends the run; evaluations at epoch ends before it would only cost time.
    About four epoch-end checkpoints a run (and the last): a few-shot run of 80 epochs of 5 batches
    would otherwise spend more time saving than training.
    """
    steps = steps_for(images, cfg, ranks)
    epochs = math.ceil(steps / steps_per_epoch(cfg, ranks))
    updates = {"train.epochs": epochs, "train.max_steps": steps, "optim.schedule_steps": steps,
               "train.eval_every_epochs": epochs + 1, "checkpoint.every_epochs": max(1, epochs // 4)}
    if warmup:
        updates["optim.warmup_epochs"] = warmup * steps / steps_per_epoch(cfg, ranks)
    return steps * images_per_step(cfg, ranks), updates
