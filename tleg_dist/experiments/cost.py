"""What TLEG costs against its comparator, three ways side by side (recipe `cost`).

The paper's accounting: the Aux-Net is trained once and shared by the descendants of every depth D,
so TLEG's cost is Aux + Σ_D fine-tuning, against Σ_D of the comparator trained from scratch. Here D
is every depth both ran (nothing is extrapolated), in
  - training images (planned budgets),
  - layer-passes (images × layers: an image costs more in a deeper network),
  - wall-clock seconds of each job run alone at one thread (the --timing reruns of one seed).
The teacher's one-off costs (training it, filling the logit cache) are on a line of their own:
the paper's teacher is a public pre-trained model, here it is trained, once per upstream setting.
"""

from __future__ import annotations

from tleg_dist.experiments.endpoints import TLEG
from tleg_dist.experiments.recipe import ExperimentRecipe
from tleg_dist.plans.job import Job


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def planned(x: ExperimentRecipe, plan: list[Job]) -> dict:
    """Images and layer-passes of the cost setting's Aux-Net, TLEG and comparators per depth (one seed)."""
    c = x.cost
    des = {(j.labels["init"], j.labels["depth"]): j for j in plan if j.labels["kind"] == "des"
           and j.labels["setting"] == c.setting and not j.labels.get("ablation")}
    depths = sorted(d for i, d in des if i == TLEG and (c.reference, d) in des)
    if not depths:
        return {}
    aux = next(j for j in plan if j.name == des[(TLEG, depths[0])].inputs[0].job)
    out = {"depths": depths}
    for unit, w in (("images", lambda d: 1), ("layer_passes", lambda d: d)):
        a = aux.labels["planned_images"] * w(aux.cfg.model.depth)
        ft = sum(des[(TLEG, d)].labels["planned_images"] * w(d) for d in depths)
        ref = sum(des[(c.reference, d)].labels["planned_images"] * w(d) for d in depths)
        out[unit] = {"aux": a, TLEG: ft, c.reference: ref, "ratio": (a + ft) / ref}
    return out


def wall_clock(x: ExperimentRecipe, timing_records: list[dict]) -> dict | None:
    """The --timing reruns' seconds: one-off teacher costs, the Aux-Net's training with the cache
    filled, every timed init per depth, and TLEG's ratio against the reference over their depths."""
    if not timing_records:
        return None
    teacher = next((r for r in timing_records if r["kind"] == "teacher"), None)
    aux = next((r for r in timing_records if r["kind"] == "aux"), None)
    fill = (aux or {}).get("cache_fill_s") or 0.0
    per_init = {}
    for r in timing_records:
        if r["kind"] == "timing" and r.get("init"):
            per_init.setdefault(r["init"], {})[r["depth"]] = r["time_s"]
    ref, depths = x.cost.reference, sorted(set(per_init.get(TLEG, {})) & set(per_init.get(x.cost.reference, {})))
    aux_train = None if aux is None else aux["time_s"] - fill
    tleg = sum(per_init[TLEG][d] for d in depths) if depths else None
    scratch = sum(per_init[ref][d] for d in depths) if depths else None
    out = {"seed": x.cost.timing.seed, "depths": depths,
           "one_off": {"teacher_training_s": None if teacher is None else teacher["time_s"], "cache_fill_s": fill},
           "aux_training_s": aux_train, "per_init_s": {i: dict(sorted(v.items())) for i, v in per_init.items()},
           TLEG: tleg, ref: scratch,
           "ratio": _ratio(None if aux_train is None or tleg is None else aux_train + tleg, scratch),
           "ratio_with_one_off": _ratio(None if aux is None or tleg is None or teacher is None
                                        else aux["time_s"] + tleg + teacher["time_s"], scratch),
           "complete": len(depths) > 0 and aux is not None and teacher is not None}
    return out


def charged_wall_clock(x: ExperimentRecipe, wall: dict | None) -> dict[tuple[str, int], float]:
    """Seconds charged to each timed (init, depth): its own, plus for TLEG an equal share of the
    Aux-Net's training over the timed depths (the plot of top-1 against measured wall-clock)."""
    if not wall:
        return {}
    share = (wall["aux_training_s"] or 0.0) / max(1, len(wall["per_init_s"].get(TLEG, {})))
    return {(i, d): s + (share if i == TLEG else 0.0) for i, v in wall["per_init_s"].items() for d, s in v.items()}
