"""From per-run records to per-(setting, depth, init) cells, TLEG-vs-baseline verdicts, and
the equal-accuracy cost ratio.

Verdict rule (fixed in advance, applied to every cell, so nothing is picked afterwards):
TLEG wins when its mean top-1 exceeds the baseline's by more than twice the standard error
of the difference, sqrt(s_t^2/n_t + s_b^2/n_b); loses when it trails by as much; ties
otherwise. With fewer than 2 seeds on either side there is no verdict ("n/a").
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from tleg_dist.plans.experiment import INIT_ORDER

BASELINES = tuple(i for i in INIT_ORDER if i != "tleg")
SCRATCH_CURVE = ("scratch", "scratch_long", "scratch_2x")  # random init at growing budgets


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(rs: list[dict], **key) -> dict:
    rs = sorted(rs, key=lambda r: r["seed"])
    m, s = mean_std([r["top1"] for r in rs])
    images = sorted({r["images"] for r in rs})
    return {**key, "top1_mean": m, "top1_std": s, "n_seeds": len(rs), "seeds": [r["seed"] for r in rs],
            "top1_per_seed": [r["top1"] for r in rs],
            # Identical across seeds by construction; a list would show it if not.
            "finetune_images": images[0] if len(images) == 1 else images,
            "total_images": statistics.fmean(r["total_images"] for r in rs),
            "aux_share_images": statistics.fmean(r["aux_share"] for r in rs),
            "params": rs[0]["params"], "wall_time_s": sum(r["wall_time_s"] or 0 for r in rs)}


def aggregate(records: list[dict]) -> list[dict]:
    """One cell per (setting, depth, init) of the descendants, in setting/depth/init order."""
    settings = list(dict.fromkeys(r["setting"] for r in records))
    groups = defaultdict(list)
    for r in records:
        if r["kind"] == "des":
            groups[(r["setting"], r["depth"], r["init"])].append(r)
    keys = sorted(groups, key=lambda k: (settings.index(k[0]), k[1], INIT_ORDER.index(k[2])))
    return [_cell(groups[k], setting=k[0], depth=k[1], init=k[2]) for k in keys]


def upstream(records: list[dict]) -> list[dict]:
    """Teacher, Aux-Net and the truncated baseline's pretrain run, per setting (top-1 on upstream val)."""
    groups = defaultdict(list)
    for r in records:
        if r["kind"] != "des":
            groups[(r["setting"], r["kind"])].append(r)
    out = []
    for (setting, kind), rs in groups.items():
        c = _cell(rs, setting=setting, kind=kind)
        out.append({k: c[k] for k in ("setting", "kind", "top1_mean", "top1_std", "n_seeds", "seeds",
                                      "top1_per_seed", "params", "wall_time_s")} | {"images": c["finetune_images"]})
    return out


def verdict(t: dict, b: dict) -> dict:
    diff = t["top1_mean"] - b["top1_mean"]
    if min(t["n_seeds"], b["n_seeds"]) < 2:
        return {"diff": diff, "se": None, "verdict": "n/a"}
    se = math.sqrt(t["top1_std"] ** 2 / t["n_seeds"] + b["top1_std"] ** 2 / b["n_seeds"])
    word = "win" if diff > 2 * se else "loss" if diff < -2 * se else "tie"
    if se == 0 and diff == 0:
        word = "tie"
    return {"diff": diff, "se": se, "verdict": word}


def cost_ratio(tleg: dict, scratch_cells: list[dict]) -> dict | None:
    """How many images random init needs to reach TLEG's mean top-1, over TLEG's total.

    The scratch points (same budget, TLEG's total, twice it) are joined linearly in
    log(images); the first crossing counts. bound: "about" (interpolated), "at_most" (the
    smallest scratch budget already reaches it), "more_than" (the largest does not).
    """
    pts = sorted((c["total_images"], c["top1_mean"]) for c in scratch_cells)
    if not pts:
        return None
    target, total = tleg["top1_mean"], tleg["total_images"]
    if pts[0][1] >= target:
        return {"ratio": pts[0][0] / total, "bound": "at_most"}
    for (x0, a0), (x1, a1) in zip(pts, pts[1:]):
        if a1 >= target > a0:
            f = (target - a0) / (a1 - a0)
            return {"ratio": math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))) / total, "bound": "about"}
    return {"ratio": pts[-1][0] / total, "bound": "more_than"}


def ratio_text(r: dict | None) -> str:
    if r is None:
        return "-"
    return {"at_most": "≤ ", "about": "≈ ", "more_than": "> "}[r["bound"]] + f"{r['ratio']:.2f}×"


def comparisons(cells: list[dict], other_totals: dict | None = None) -> list[dict]:
    """Per (setting, depth): TLEG against each baseline present, and the cost ratio.

    other_totals {(setting, depth): TLEG's total under the other cost accounting} adds
    `cost_ratio_other`, because the accounting, not only the accuracies, decides the ratio.
    """
    by = {(c["setting"], c["depth"], c["init"]): c for c in cells}
    out = []
    for (setting, depth, init), t in by.items():
        if init != "tleg":
            continue
        row = {"setting": setting, "depth": depth, "vs": {}}
        for b in BASELINES:
            if (setting, depth, b) in by:
                row["vs"][b] = verdict(t, by[(setting, depth, b)])
        curve = [by[(setting, depth, s)] for s in SCRATCH_CURVE if (setting, depth, s) in by]
        row["cost_ratio"] = cost_ratio(t, curve)
        if other_totals and (setting, depth) in other_totals:
            row["cost_ratio_other"] = cost_ratio({**t, "total_images": other_totals[(setting, depth)]}, curve)
        out.append(row)
    return out


def tally(comps: list[dict], setting: str, baseline: str) -> dict[str, list[int]]:
    """Depths where TLEG wins / ties / loses against `baseline` in `setting`."""
    t = {"win": [], "tie": [], "loss": [], "n/a": []}
    for c in comps:
        if c["setting"] == setting and baseline in c["vs"]:
            t[c["vs"][baseline]["verdict"]].append(c["depth"])
    return t
