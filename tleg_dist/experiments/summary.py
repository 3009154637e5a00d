"""The experiment's numbers: per-(setting, depth, init) cells, TLEG-vs-baseline verdicts, the
equal-accuracy cost ratio and the storage arithmetic, written to results_dir/summary.json;
its tables and plots are the plans' report (tleg_dist/plans/report.py) with `notes` below.
What the numbers say about the paper is written up by hand in docs/results.md.

Verdict rule (fixed in advance, applied to every cell, so nothing is picked afterwards):
TLEG wins when its mean top-1 exceeds the baseline's by more than twice the standard error
of the difference, sqrt(s_t^2/n_t + s_b^2/n_b); loses when it trails by as much; ties
otherwise. With fewer than 2 seeds on either side there is no verdict ("n/a").
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from pathlib import Path

from tleg_dist.artifacts import run_folder
from tleg_dist.experiments import budget
from tleg_dist.plans.experiment import INIT_ORDER, ExperimentRecipe
from tleg_dist.plans.job import Job
from tleg_dist.plans.report import md_table
from tleg_dist.utils.atomic import atomic_path

BASELINES = tuple(i for i in INIT_ORDER if i != "tleg")
SCRATCH_CURVE = ("scratch", "scratch_long", "scratch_2x")  # random init at growing budgets
OTHER_COST = {"depth_share": "amortised", "amortised": "depth_share"}
# The report's display names and plots (report.write's names= and plots=).
NAMES = {"depth": "L", "total_images": "training images charged to the run (own + its Aux-Net share)"}
PLOTS = {"acc_vs_depth.png": "depth", "acc_vs_cost.png": "total_images"}


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


def write(x: ExperimentRecipe, plan: list[Job], records: list[dict], *, smoke: bool, command: str,
          invocation_s: float | None) -> dict:
    """results_dir/summary.json. invocation_s: wall time of the training invocation so far; None
    for a --report-only rebuild, which keeps the training invocation's figures."""
    cells = aggregate(records)
    lg_jobs = [j for j in plan if j.labels["kind"] == "learngene"]
    aux_images = {j.labels["setting"]: j.labels["planned_images"] for j in lg_jobs if j.labels["seed"] == x.seeds[0]}
    aux_depth = lg_jobs[0].cfg.model.depth if lg_jobs else 0
    # TLEG's total under the accounting the recipe did not choose: the accounting, not only the
    # accuracies, decides the cost ratio.
    other = {(c["setting"], c["depth"]): c["finetune_images"] + budget.aux_share(
                 aux_images[c["setting"]], c["depth"], aux_depth, x.depths, OTHER_COST[x.budget.cost])
             for c in cells if c["init"] == "tleg" and lg_jobs}
    lg_file = next((run_folder.artifact(j.out, "learngene") for j in lg_jobs if run_folder.finished(j.out)), None)
    out = Path(x.results_dir)
    # Stages run in this process: its CPU time is what an idle machine would need in wall time at
    # OMP_NUM_THREADS=1, whatever else shares the machine.
    wall, cpu = (invocation_s, _cpu_time()) if invocation_s is not None else _last_times(out / "summary.json", command)
    result = {"format": "tleg-experiment-results", "format_version": "2", "complete": len(records) == len(plan),
              "runs_finished": len(records), "runs_planned": len(plan), "smoke": smoke, "command": command,
              "host": f"{os.cpu_count()} CPU cores", "rebuilt": invocation_s is None, "cpu_time_s": cpu,
              "wall_time_s": {"sum_of_runs": sum(r["wall_time_s"] or 0 for r in records), "this_invocation": wall},
              "accounting": {"unit": "training images", "cost": x.budget.cost, "aux_depth": aux_depth,
                             "aux_images": aux_images, "finetune_images": x.budget.finetune_images},
              "records": cells, "upstream": upstream(records), "comparisons": comparisons(cells, other),
              "storage": _storage(lg_file, x.depths), "experiment": x.model_dump(mode="json"), "runs": records}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=str))
    return result


def notes(result: dict) -> str:
    """The verdicts, cost ratios, storage and provenance of summary.json as plain Markdown."""
    comps, cost = result["comparisons"], result["accounting"]["cost"]
    base = [b for b in BASELINES if any(b in c["vs"] for c in comps)]
    other = any("cost_ratio_other" in c for c in comps)
    rows = [[c["setting"], c["depth"]] + ["-" if c["vs"].get(b) is None else
                                          f"{c['vs'][b]['verdict']} ({c['vs'][b]['diff']:+.2f})" for b in base]
            + [ratio_text(c["cost_ratio"])] + ([ratio_text(c.get("cost_ratio_other"))] if other else [])
            for c in comps]
    head = ["setting", "L"] + [f"tleg vs {b}" for b in base] + [f"cost ratio ({cost})"]
    lines = ["## Comparisons", "",
             "TLEG against each baseline: verdict (win/loss beyond 2 standard errors of the difference of "
             "means, else tie; n/a under 2 seeds) and the difference in top-1 points. Cost ratio: images "
             "random init needs to reach TLEG's mean top-1, over TLEG's total images.", "",
             md_table(head + ([f"cost ratio ({OTHER_COST[cost]})"] if other else []), rows)]
    st = (result["storage"] or {}).get("storage")
    if st:
        lines += [f"Storage (parameters, as `python -m tleg_dist.convert inspect` counts them): learngene "
                  f"{st['learngene']:,}; one model per depth {st['depths']}: {st['per_depth_total']:,} "
                  f"({st['ratio_per_depth']:.1f}×); one {st['aux_depth']}-layer model: {st['aux_model']:,} "
                  f"({st['ratio_aux_model']:.1f}×).", ""]
    wall, made = result["wall_time_s"], f"Produced by `{result['command']}` on {result['host']}"
    made += f": {wall['sum_of_runs'] / 60:.1f} min of wall time summed over the runs"
    if wall["this_invocation"] is not None:
        made += (f"; its last training invocation used {result['cpu_time_s'] / 60:.1f} min of CPU time in "
                 f"{wall['this_invocation'] / 60:.1f} min of wall time")
    lines.append(made + (" (rebuilt with --report-only)." if result["rebuilt"] else "."))
    return "\n".join(lines)


def _storage(lg_file: Path | None, depths: list[int]) -> dict | None:
    """inspect's storage comparison for our learngene at our depths and the paper's sizes."""
    if lg_file is None or not Path(lg_file).is_file():
        return None
    from tleg_dist.convert.inspect import describe
    from tleg_dist.convert.storage import DEFAULT_DEPTHS

    return describe(lg_file, depths) | {"paper_default_depths": describe(lg_file, DEFAULT_DEPTHS)["paper"]}


def _last_times(path: Path, command: str) -> tuple[float | None, float | None]:
    """(wall, cpu) of the training invocation that last wrote `path`, if it ran `command`."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, None
    if old.get("command") != command:
        return None, None
    return old.get("wall_time_s", {}).get("this_invocation"), old.get("cpu_time_s")


def _cpu_time() -> float:
    import resource

    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
