"""The experiment's comparisons, as its recipe fixed them before the reported runs (stats.py does
the arithmetic).

Primary endpoints (recipe `endpoints`): TLEG against one comparator in one setting, pooled over
depths: per seed, the mean of TLEG − comparator over the depths both ran at that seed, then a
paired test over the seeds that ran every such depth (superiority: one-sided t-test; equivalence:
TOST within ±margin). Endpoints sharing a `family` are Holm-adjusted together.
Secondary: per setting and depth, TLEG against every other init, two-sided paired t-tests, Holm
within each setting. Every difference comes with its 95 % interval (unadjusted).
"""

from __future__ import annotations

import statistics

from tleg_dist.experiments import stats
from tleg_dist.experiments.recipe import ExperimentRecipe

TLEG = "tleg"


def _by_seed(cell: dict) -> dict[int, float]:
    return dict(zip(cell["seeds"], cell["top1_per_seed"]))


def pooled_diffs(cells: list[dict], setting: str, comparator: str) -> tuple[list[float], list[int], list[int]]:
    """(per-seed mean differences, their seeds, the depths pooled)."""
    mine = {(c["depth"], c["init"]): _by_seed(c) for c in cells if c["setting"] == setting}
    depths = sorted(d for d, i in mine if i == TLEG and (d, comparator) in mine)
    seeds = sorted(set.intersection(*(set(mine[(d, i)]) for d in depths for i in (TLEG, comparator)))) \
        if depths else []
    diffs = [statistics.fmean(mine[(d, TLEG)][s] - mine[(d, comparator)][s] for d in depths) for s in seeds]
    return diffs, seeds, depths


def primary(x: ExperimentRecipe, cells: list[dict]) -> list[dict]:
    alpha, out = x.endpoints.alpha, []
    for e in x.endpoints.primary:
        diffs, seeds, depths = pooled_diffs(cells, e.setting, e.comparator)
        test = stats.tost(diffs, e.margin) if e.test == "equivalence" else stats.superiority(diffs)
        out.append({**e.model_dump(), "seeds": seeds, "depths": depths, "per_seed_diff": diffs, **test})
    for family in {e["family"] for e in out if e["family"]}:
        members = [e for e in out if e["family"] == family]
        adjusted = stats.holm({e["name"]: e["p"] for e in members})
        for e in members:
            e["p_holm"] = adjusted[e["name"]]
    for e in out:
        e["verdict"] = stats.verdict(e, e["test"], e.get("p_holm", e["p"]), alpha)
    return out


def secondary(cells: list[dict], alpha: float = stats.ALPHA) -> list[dict]:
    rows = []
    for c in cells:
        if c["init"] != TLEG:
            continue
        for o in cells:
            if (o["setting"], o["depth"]) == (c["setting"], c["depth"]) and o["init"] != TLEG:
                t, b = _by_seed(c), _by_seed(o)
                diffs = [t[s] - b[s] for s in sorted(set(t) & set(b))]
                rows.append({"setting": c["setting"], "depth": c["depth"], "vs": o["init"], **stats.two_sided(diffs)})
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        adjusted = stats.holm({k: r["p"] for k, r in enumerate(mine)})
        for k, r in enumerate(mine):
            r["p_holm"] = adjusted[k]
            r["verdict"] = stats.verdict(r, "two_sided", r["p_holm"], alpha)
    return rows
