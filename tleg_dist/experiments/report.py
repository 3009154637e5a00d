"""Write results_dir/{summary.json, results.md, acc_vs_depth.png, acc_vs_cost.png} and,
for the full run, the Results section (docs/results.md) that the README quotes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tleg_dist.experiments import budget, claims, plots, summary
from tleg_dist.artifacts import run_folder
from tleg_dist.plans.experiment import INIT_ORDER, ExperimentRecipe
from tleg_dist.plans.job import Job
from tleg_dist.utils.atomic import atomic_path

HEAD = {"tleg": "TLEG", "scratch": "scratch", "scratch_long": "scratch, TLEG's total",
        "scratch_2x": "scratch, 2× TLEG's total", "truncated": "truncated"}
WORDS = {"win": "win", "tie": "tie", "loss": "**loss**", "n/a": "n/a"}
OTHER_COST = {"depth_share": "amortised", "amortised": "depth_share"}


def _pm(c: dict | None) -> str:
    if c is None:
        return "-"
    return f"{c['top1_mean']:.2f} ± {c['top1_std']:.2f}" + ("" if c["n_seeds"] > 1 else " (1 seed)")


def setting_table(cells: list[dict], setting: str) -> str:
    mine = [c for c in cells if c["setting"] == setting]
    inits = [i for i in INIT_ORDER if any(c["init"] == i for c in mine)]
    by = {(c["depth"], c["init"]): c for c in mine}
    head = ["L", "params", "fine-tune images", "TLEG total images"] + [f"{HEAD[i]} (%)" for i in inits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in sorted({c["depth"] for c in mine}):
        t = by.get((d, "tleg"))
        first = t or next(by[(d, i)] for i in inits if (d, i) in by)
        total = "-" if t is None else f"{t['total_images']:,.0f}"
        lines.append(f"| {d} | {first['params']:,} | {first['finetune_images']:,} | {total} | "
                     + " | ".join(_pm(by.get((d, i))) for i in inits) + " |")
    return "\n".join(lines)


def verdict_table(comps: list[dict], setting: str, cost: str) -> str:
    mine = [c for c in comps if c["setting"] == setting]
    base = [b for b in summary.BASELINES if any(b in c["vs"] for c in mine)]
    other = any("cost_ratio_other" in c for c in mine)
    head = ["L"] + [f"TLEG vs {HEAD[b]}" for b in base] + ["scratch images to match TLEG / TLEG total"]
    head += [f"same, {OTHER_COST[cost]} accounting"] if other else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in mine:
        cells = []
        for b in base:
            v = c["vs"].get(b)
            cells.append("-" if v is None else f"{WORDS[v['verdict']]} ({v['diff']:+.2f})")
        cells.append(summary.ratio_text(c["cost_ratio"]))
        if other:
            cells.append(summary.ratio_text(c.get("cost_ratio_other")))
        lines.append(f"| {c['depth']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def upstream_table(ups: list[dict], setting: str) -> str:
    rows = [u for u in ups if u["setting"] == setting]
    names = {"teacher": "teacher CNN", "learngene": "Aux-Net (learngene)", "pretrain": "plain ViT for truncated"}
    return "; ".join(f"{names[u['kind']]} {u['top1_mean']:.2f} ± {u['top1_std']:.2f}% "
                     f"({u['images']:,} images, {u['n_seeds']} seed{'s' if u['n_seeds'] > 1 else ''})" for u in rows)


def markdown(x: ExperimentRecipe, meta: dict, cells, ups, comps, img_dir: str, extra: list[str]) -> str:
    status = ("complete" if meta["complete"] else
              f"**PARTIAL: {meta['runs_finished']} of {meta['runs_planned']} runs finished; numbers below "
              f"cover only the finished runs**")
    lines = ["# Results: TLEG at CPU scale on Fashion-MNIST" + (" (smoke budget, not results)" if meta["smoke"] else ""),
             "", f"Status: {status}.", "",
             f"Produced by `{meta['command']}` on {meta['host']}: {meta['wall_time_s']['sum_of_runs'] / 60:.1f} min "
             f"of wall time summed over the runs" + _invocation(meta) + ".", "",
             meta["setup"], ""]
    for s in x.settings:
        if not any(c["setting"] == s.name for c in cells):
            continue
        lines += [f"## Setting `{s.name}`", "", s.description, "",
                  f"Upstream (top-1 on the upstream classes): {upstream_table(ups, s.name)}.", "",
                  "Top-1 on the descendants' validation set, mean ± std over seeds:", "",
                  setting_table(cells, s.name), "", "TLEG against each baseline (difference of means, points):",
                  "", verdict_table(comps, s.name, x.budget.cost), ""]
    lines += ["## Plots", "", f"![top-1 against depth]({img_dir}acc_vs_depth.png)", "",
              f"![top-1 against training images]({img_dir}acc_vs_cost.png)", ""]
    return "\n".join(lines + extra) + "\n"


def _other_totals(x: ExperimentRecipe, cells: list[dict], aux_images: dict, lg_jobs: list[Job]) -> dict:
    """TLEG's total per (setting, depth) under the accounting the recipe did not choose."""
    if not lg_jobs:
        return {}
    other = OTHER_COST[x.budget.cost]
    aux_depth = lg_jobs[0].cfg.model.depth
    return {(c["setting"], c["depth"]): c["finetune_images"] + budget.aux_share(
                aux_images[c["setting"]], c["depth"], aux_depth, x.depths, other)
            for c in cells if c["init"] == "tleg"}


def _invocation(meta: dict) -> str:
    wall = meta["wall_time_s"]["this_invocation"]
    text = "" if wall is None else (f"; the last training invocation of that command used "
                                    f"{meta['cpu_time_s'] / 60:.1f} min of CPU time in {wall / 60:.1f} min "
                                    f"of wall time")
    return text + (" (tables rebuilt from the finished runs with --report-only)" if meta["rebuilt"] else "")


def _last_training_times(path: Path, command: str) -> tuple[float | None, float | None]:
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


def setup_text(x: ExperimentRecipe, lg_job: Job | None, aux_images: dict) -> str:
    if lg_job is None:
        return ""
    cfg = lg_job.cfg
    a = cfg.model.arch()
    acct = {"depth_share": "F + A × L / L_aux", "amortised": f"F + A / {len(x.depths)}"}[x.budget.cost]
    return (f"ViT embed {a.embed_dim}, {a.num_heads} heads, patch {a.patch_size} on {a.img_size}px; Aux-Net depth "
            f"L_aux = {cfg.model.depth} distilled (soft, τ={cfg.distill.tau}, α={cfg.distill.alpha}) from a "
            f"{cfg.distill.teacher.model} teacher; descendants at depths {x.depths}; seeds {x.seeds}. "
            f"Budgets are training images: every descendant fine-tunes on F = {x.budget.finetune_images:,} "
            f"images (rounded up to whole batches); TLEG's total is counted as {acct} ({x.budget.cost}, "
            f"A = the Aux-Net's images: {', '.join(f'{k} {v:,}' for k, v in aux_images.items())}); the teacher "
            f"is charged to no one. The truncated baseline is charged like TLEG. Why: `tleg_dist/experiments/budget.py`.")


def write(x: ExperimentRecipe, plan: list[Job], records: list[dict], planned: int, *, smoke: bool,
          command: str, invocation_s: float | None) -> dict:
    """invocation_s: wall time of the training invocation so far; None for a --report-only rebuild."""
    cells = summary.aggregate(records)
    ups = summary.upstream(records)
    lg_jobs = [j for j in plan if j.labels["kind"] == "learngene"]
    aux_images = {j.labels["setting"]: j.labels["planned_images"] for j in lg_jobs if j.labels["seed"] == x.seeds[0]}
    comps = summary.comparisons(cells, _other_totals(x, cells, aux_images, lg_jobs))
    lg_file = next((run_folder.artifact(j.out, "learngene") for j in lg_jobs if run_folder.finished(j.out)), None)
    storage_md, storage_info = claims.storage_section(lg_file, x.depths)
    lg_model = lg_jobs[0].cfg.model if lg_jobs else None
    aux_depth, embed_dim = (lg_model.depth, lg_model.embed_dim) if lg_model else (0, 0)
    out = Path(x.results_dir)
    # Stages run in this process: its CPU time is what an idle machine would need in wall time at
    # OMP_NUM_THREADS=1, whatever else shares the machine. A --report-only rebuild keeps the
    # training invocation's figures.
    wall, cpu = (invocation_s, _cpu_time()) if invocation_s is not None else \
        _last_training_times(out / "summary.json", command)
    meta = {"complete": len(records) == planned, "runs_finished": len(records), "runs_planned": planned,
            "smoke": smoke, "command": command, "host": f"{os.cpu_count()} CPU cores",
            "rebuilt": invocation_s is None, "cpu_time_s": cpu,
            "wall_time_s": {"sum_of_runs": sum(r["wall_time_s"] or 0 for r in records), "this_invocation": wall},
            "setup": setup_text(x, lg_jobs[0] if lg_jobs else None, aux_images)}
    extra = [claims.claims_section(x, comps, storage_info), "", storage_md, "",
             claims.pretrain_cost_section(aux_depth, x.depths, aux_images), "",
             claims.caveats_section(x, embed_dim, aux_images)]
    out.mkdir(parents=True, exist_ok=True)
    result = {"format": "tleg-experiment-results", "format_version": "1", **{k: v for k, v in meta.items()},
              "accounting": {"unit": "training images", "cost": x.budget.cost, "aux_depth": aux_depth,
                             "aux_images": aux_images, "finetune_images": x.budget.finetune_images},
              "records": cells, "upstream": ups, "comparisons": comps, "storage": storage_info,
              "experiment": x.model_dump(mode="json"), "runs": records}
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=str))
    titles = {s.name: s.name for s in x.settings}
    if cells:
        plots.accuracy_vs_depth(cells, titles, out / "acc_vs_depth.png")
        plots.accuracy_vs_cost(cells, titles, out / "acc_vs_cost.png")
    (out / "results.md").write_text(markdown(x, meta, cells, ups, comps, "", extra))
    if x.docs is not None and not smoke:
        rel = os.path.relpath(out, Path(x.docs).parent) + "/"
        Path(x.docs).parent.mkdir(parents=True, exist_ok=True)
        Path(x.docs).write_text(markdown(x, meta, cells, ups, comps, rel, extra))
    return result
