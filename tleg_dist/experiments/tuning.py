"""Choosing each init's lr and warmup on the validation split (phase 1 of the experiment).

Per (setting, init) the candidate (lr, warmup) with the best validation top-1, averaged over the
tuning depths at the tuning seed, is chosen; a tie goes to the candidate listed first in the
recipe's grid. Only the validation split is read: tuning runs evaluate with data.eval_on=val, and
no reported seed runs before every choice is made.
"""

from __future__ import annotations

import statistics

from tleg_dist.config import ConfigError
from tleg_dist.experiments.recipe import ExperimentRecipe


def candidates(x: ExperimentRecipe, setting: str, init: str) -> list[dict]:
    grid = x.tuning.grid(x.inits[init].start)
    return [{"lr": lr, "warmup": w} for lr in grid.lr for w in grid.warmup]


def choose(x: ExperimentRecipe, records: list[dict]) -> dict:
    """{"chosen": {(setting, init): {lr, warmup}}, "table": [...]} from the finished tuning records;
    ConfigError naming the first (setting, init) whose candidates have not all finished."""
    by = {}
    for r in records:
        if r.get("kind") == "tune":
            by.setdefault((r["setting"], r["init"], r["lr"], r["warmup"]), {})[r["depth"]] = r["top1"]
    chosen, table = {}, []
    for setting, s in x.settings.items():
        for init in s.inits():
            rows = []
            for hp in candidates(x, setting, init):
                per_depth = by.get((setting, init, hp["lr"], hp["warmup"]), {})
                if sorted(per_depth) != sorted(x.tuning.depths) or None in per_depth.values():
                    raise ConfigError(f"tuning of {setting}/{init} at {hp} has not finished at every depth "
                                      f"{x.tuning.depths} (has {sorted(per_depth)})")
                rows.append({**hp, "val_top1": {str(d): per_depth[d] for d in sorted(per_depth)},
                             "mean_val_top1": statistics.fmean(per_depth.values())})
            best = max(range(len(rows)), key=lambda k: (rows[k]["mean_val_top1"], -k))
            chosen[(setting, init)] = {"lr": rows[best]["lr"], "warmup": rows[best]["warmup"]}
            table.append({"setting": setting, "init": init, "budget_u": x.budget(setting, init),
                          "chosen": chosen[(setting, init)], "candidates": rows})
    return {"chosen": chosen, "table": table}


def placeholders(x: ExperimentRecipe) -> dict:
    """What a --dry-run shows before tuning has run: the fine-tuning recipe's own lr, no warmup."""
    lr = x.finetune.load().optim.lr
    return {(s, i): {"lr": lr, "warmup": 0.0} for s, setting in x.settings.items() for i in setting.inits()}
