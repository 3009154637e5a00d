"""The experiment's numbers: per-(setting, depth, init) cells, paired comparisons of TLEG with
every other init, the paper's amortised cost accounting, storage, and the one-seed ablations,
written to results_dir/experiment.json (RESULTS). Tables and plots are the plans' report
(tleg_dist/plans/report.py) with `notes` below; what the numbers say about the paper is
written up by hand in docs/results.md.

Comparisons pair the runs of one seed (same data order, same upstream jobs): the mean
difference TLEG − baseline over seeds, its standard error, and a two-sided paired t-test at
95 % (df = seeds − 1). Verdict: "win" or "loss" when p < 0.05, else "tie"; "n/a" under 2 seeds.

Accounting (the paper's): the Aux-Net is trained once and amortised over the descendants, so
TLEG's cost for a set D of depths is (Aux + Σ_D fine-tuning) ÷ Σ_D scratch(100u), in
training images; extrapolated to the paper's |D| = 10 by repeating the mean descendant.
Layer-passes (images × layers) are the sensitivity check: deeper runs cost more per image.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

import scipy.stats

from tleg_dist.artifacts import run_folder
from tleg_dist.plans.experiment import ExperimentRecipe
from tleg_dist.plans.job import Job
from tleg_dist.plans import report
from tleg_dist.plans.report import md_table
from tleg_dist.utils.atomic import atomic_path
from tleg_dist.utils.errors import UserError
from tleg_dist.utils.jsonio import read_json

RESULTS = "experiment.json"  # in results_dir, beside the plans' report
# RESULTS's "format": what --reuse-runs accepts, whatever the file is called (the committed
# results/fmnist_v2/summary.json predates the name).
FORMAT = "tleg-experiment-results"
REFERENCE = "scratch_100u"  # the paper's comparator for cost
# The report's display names and plots (report.write's names= and plots=).
NAMES = {"depth": "L", "total_images": "training images charged to the run (own + amortised upstream)"}
PLOTS = {"acc_vs_depth.png": "depth", "acc_vs_cost.png": "total_images"}


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    return float(2 * scipy.stats.t.sf(abs(t), df))


def paired(t: dict, b: dict) -> dict:
    """TLEG − baseline over the seeds both have."""
    seeds = sorted(set(t["seeds"]) & set(b["seeds"]))
    d = [t["top1_per_seed"][t["seeds"].index(s)] - b["top1_per_seed"][b["seeds"].index(s)] for s in seeds]
    if len(d) < 2:
        return {"diff": d[0] if d else None, "se": None, "p": None, "n": len(d), "verdict": "n/a"}
    mean, se = statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d))
    p = 1.0 if se == 0 and mean == 0 else 0.0 if se == 0 else t_two_sided_p(mean / se, len(d) - 1)
    word = "tie" if p >= 0.05 else "win" if mean > 0 else "loss"
    return {"diff": mean, "se": se, "p": p, "n": len(d), "verdict": word}


def aggregate(records: list[dict]) -> list[dict]:
    """One cell per (setting, depth, init) of the main descendants (report.cells), over seeds."""
    out = []
    for (setting, depth, init), rs in report.cells(records).items():
        rs = sorted(rs, key=lambda r: r["seed"])
        vals = [r["top1"] for r in rs]
        mean, std = report.mean_std(vals)
        out.append({"setting": setting, "depth": depth, "init": init, "top1_mean": mean, "top1_std": std,
                    "n_seeds": len(rs), "seeds": [r["seed"] for r in rs], "top1_per_seed": vals,
                    "train_images": rs[0]["images"], "total_images": rs[0]["total_images"],
                    "budget_u": rs[0]["budget_u"], "params": rs[0]["params"]})
    return out


def comparisons(cells: list[dict]) -> list[dict]:
    by = {(c["setting"], c["depth"], c["init"]): c for c in cells}
    return [{"setting": s, "depth": d, "vs": {b: paired(t, by[(s, d, b)]) for (s2, d2, b) in by
                                              if (s2, d2) == (s, d) and b != "tleg"}}
            for (s, d, i), t in by.items() if i == "tleg"]


def accounting(plan: list[Job], cells: list[dict]) -> list[dict]:
    """Per setting, the paper's cost ratio for the planned depths and for |D| = 10, in images
    and in layer-passes (images × depth): against scratch(100u), and against Pre-Fin (one
    pre-training per depth, then the same fine-tuning), with the pre-training alone beside it."""
    names = {j.name: j for j in plan}
    rows = []
    for setting in dict.fromkeys(c["setting"] for c in cells):
        by = {(c["depth"], c["init"]): c for c in cells if c["setting"] == setting}
        depths = sorted({d for d, i in by if i == "tleg" and (d, REFERENCE) in by})
        main = {(j.labels["init"], j.labels["depth"]): j for j in plan if j.labels.get("setting") == setting
                and j.labels.get("kind") == "des" and not j.labels.get("ablation")}
        if not depths or ("tleg", depths[0]) not in main:
            continue
        aux = names[main[("tleg", depths[0])].inputs[0].job]  # the Aux-Net this setting's TLEG expands
        pre = {d: names[main[("prefin", d)].inputs[0].job] for d in depths if ("prefin", d) in main}
        for unit, w in (("images", lambda d: 1), ("layer_passes", lambda d: d)):
            a = aux.labels["planned_images"] * w(aux.cfg.model.depth)
            ft = [by[(d, "tleg")]["train_images"] * w(d) for d in depths]
            sc = [by[(d, REFERENCE)]["train_images"] * w(d) for d in depths]
            row = {"setting": setting, "unit": unit, "depths": depths, "aux": a, "tleg": sum(ft),
                   REFERENCE: sum(sc), "ratio": (a + sum(ft)) / sum(sc),
                   "ratio_10_depths": (a + 10 * statistics.fmean(ft)) / (10 * statistics.fmean(sc))}
            if len(pre) == len(depths) and all((d, "prefin") in by for d in depths):
                pt = [pre[d].labels["planned_images"] * w(pre[d].cfg.model.depth) for d in depths]
                pf = [by[(d, "prefin")]["train_images"] * w(d) for d in depths]
                row |= {"prefin_pretrain": sum(pt), "prefin": sum(pt) + sum(pf),
                        "ratio_vs_prefin": (a + sum(ft)) / (sum(pt) + sum(pf)),
                        "pretrain_ratio_vs_prefin": a / sum(pt)}
            rows.append(row)
    return rows


def ablations(records: list[dict]) -> list[dict]:
    """The one-seed ablations next to the main run of the same seed, depth and init."""
    main = {(*cell, r["seed"]): r["top1"] for cell, rs in report.cells(records).items() for r in rs}
    return [{"ablation": r["ablation"], "setting": r["setting"], "depth": r["depth"], "init": r["init"],
             "seed": r["seed"], "top1": r["top1"],
             "main_top1": main.get((r["setting"], r["depth"], r["init"], r["seed"]))}
            for r in records if r["kind"] == "des" and r.get("ablation")]


def write(x: ExperimentRecipe, plan: list[Job], records: list[dict], *, smoke: bool, command: str,
          invocation_s: float | None) -> dict:
    """results_dir/RESULTS; invocation_s: wall time of the training invocation so far (None
    for a --report-only rebuild, which keeps the training invocation's figures)."""
    cells = aggregate(records)
    aux_jobs = [j for j in plan if j.labels.get("kind") == "aux" and not j.labels.get("ablation")]
    lg_file = next((run_folder.artifact(j.out, "learngene") for j in aux_jobs if run_folder.finished(j.out)), None)
    aux_cfg = aux_jobs[0].cfg  # the first setting always trains its own upstream
    out = Path(x.results_dir)
    wall, cpu = (invocation_s, _cpu_time()) if invocation_s is not None else _last_times(out / RESULTS, command)
    result = {"format": FORMAT, "format_version": "3", "complete": len(records) == len(plan),
              "runs_finished": len(records), "runs_planned": len(plan), "smoke": smoke, "command": command,
              "host": f"{os.cpu_count()} CPU cores", "rebuilt": invocation_s is None, "cpu_time_s": cpu,
              "wall_time_s": {"sum_of_runs": sum(r["wall_time_s"] or 0 for r in records), "this_invocation": wall},
              "setup": {"unit_images": x.unit_images, "budgets_u": x.budget_u.model_dump(), "depths": x.depths,
                        "seeds": x.seeds, "aux_depth": aux_cfg.model.depth, "alpha": aux_cfg.distill.alpha,
                        "tau": aux_cfg.distill.tau,
                        "inits": {k: v.model_dump() for k, v in x.inits.items()}},
              "records": cells, "comparisons": comparisons(cells), "accounting": accounting(plan, cells),
              "storage": _storage(lg_file, aux_cfg, x.depths), "ablations": ablations(records),
              "experiment": x.model_dump(mode="json"), "runs": records}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / RESULTS) as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=str))
    return result


def read_runs(path: Path) -> list[dict]:
    """The run records of an earlier experiment's results file (for launchers/experiment.py --reuse-runs)."""
    doc = read_json(path, UserError, what=f"--reuse-runs {path}")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not doc.get("runs"):
        raise UserError(f"--reuse-runs {path}: not an experiment's results ({RESULTS}) with runs")
    return doc["runs"]


def notes(result: dict) -> str:
    """The comparisons, accounting, storage, ablations and provenance as plain Markdown."""
    comps = result["comparisons"]
    base = list(dict.fromkeys(b for c in comps for b in c["vs"]))
    cell = lambda v: "-" if v is None or v["diff"] is None else (  # noqa: E731
        f"{v['verdict']} ({v['diff']:+.2f}" + ("" if v["se"] is None else f" ± {v['se']:.2f}, p={v['p']:.3f}") + ")")
    lines = ["## Comparisons", "", "TLEG − each init, paired by seed: verdict (two-sided paired t-test, 95 %), mean "
             "difference in top-1 points ± its standard error, p.", "",
             md_table(["setting", "L"] + [f"tleg vs {b}" for b in base],
                      [[c["setting"], c["depth"]] + [cell(c["vs"].get(b)) for b in base] for c in comps])]
    if result["accounting"]:
        opt = lambda a, k: f"{a[k]:.2f}" if k in a else "-"  # noqa: E731
        lines += ["## Cost (the paper's amortised accounting)", "",
                  md_table(["setting", "unit", "depths", f"(Aux + Σ tleg) ÷ Σ {REFERENCE}", "same, |D| = 10",
                            "(Aux + Σ tleg) ÷ Σ prefin (pre-training + fine-tuning)", "Aux ÷ Σ pre-trainings"],
                           [[a["setting"], a["unit"], a["depths"], f"{a['ratio']:.2f}", f"{a['ratio_10_depths']:.2f}",
                             opt(a, "ratio_vs_prefin"), opt(a, "pretrain_ratio_vs_prefin")]
                            for a in result["accounting"]])]
    st = result["storage"]["storage"]
    lines += [f"Storage (parameters, as `python -m tleg_dist.convert inspect` counts them): learngene "
              f"{st['learngene']:,}; one model per depth {st['depths']} (prefin): {st['per_depth_total']:,} "
              f"({st['ratio_per_depth']:.1f}×); one {st['aux_depth']}-layer model (truncated, heur_lg): "
              f"{st['aux_model']:,} ({st['ratio_aux_model']:.1f}×).", ""]
    if result["ablations"]:
        lines += ["## Ablations (one seed)", "", md_table(
            ["ablation", "setting", "L", "init", "top-1", "main run"],
            [[a["ablation"], a["setting"], a["depth"], a["init"], f"{a['top1']:.2f}",
              "-" if a["main_top1"] is None else f"{a['main_top1']:.2f}"] for a in result["ablations"]])]
    wall, made = result["wall_time_s"], f"Produced by `{result['command']}` on {result['host']}"
    made += f": {wall['sum_of_runs'] / 60:.1f} min of wall time summed over the runs"
    if wall["this_invocation"] is not None:
        made += (f"; its last training invocation used {result['cpu_time_s'] / 60:.1f} min of CPU time in "
                 f"{wall['this_invocation'] / 60:.1f} min of wall time")
    lines.append(made + (" (rebuilt with --report-only)." if result["rebuilt"] else "."))
    return "\n".join(lines)


def _storage(lg_file: Path | None, aux_cfg, depths: list[int]) -> dict:
    """Parameters stored per comparator: from the learngene file when a run folder has it, else
    (a report rebuilt from records alone) from the planned Aux-Net's arch, the same arithmetic."""
    from tleg_dist.convert import storage
    from tleg_dist.convert.inspect import describe

    paper = {"paper_default_depths": storage.paper_comparisons(storage.DEFAULT_DEPTHS)}
    if lg_file is not None and Path(lg_file).is_file():
        return describe(lg_file, depths) | paper
    return {"source": "the planned Aux-Net's arch (no learngene file here)",
            **storage.figures(aux_cfg.model.arch(), aux_cfg.model.depth, depths)} | paper


def _last_times(path: Path, command: str) -> tuple[float | None, float | None]:
    """(wall, cpu) of the training invocation that last wrote `path`, if it ran `command`."""
    old = read_json(path) or {}
    if old.get("command") != command:
        return None, None
    return old.get("wall_time_s", {}).get("this_invocation"), old.get("cpu_time_s")


def _cpu_time() -> float:
    import resource

    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
