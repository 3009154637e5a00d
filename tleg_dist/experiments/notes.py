"""experiment.json as Markdown under the plans' report: the tuning's choices, the pre-registered
endpoints, the secondary comparisons, the cost three ways, storage, ablations and provenance."""

from __future__ import annotations

from tleg_dist.plans.report import md_table

NAMES = {"depth": "L", "total_images": "training images charged to the run (own + shared upstream)",
         "wall_clock_s": "wall-clock s charged (alone, 1 thread; TLEG with its share of the Aux-Net)"}
PLOTS = {"acc_vs_depth.png": "depth", "acc_vs_wall_clock.png": "wall_clock_s"}


def _num(v, fmt: str = ".2f", sign: bool = False) -> str:
    return "-" if v is None else format(v, ("+" if sign else "") + fmt)


def _ci(t: dict, key: str = "ci95") -> str:
    ci = t.get(key)
    return "-" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _p(p) -> str:
    return "-" if p is None else f"{p:.3f}" if p >= 0.001 else "<0.001"


def tuning(table: list[dict] | None) -> list[str]:
    if not table:
        return []
    rows = [[t["setting"], t["init"], f"{t['budget_u']:g}u", f"{t['chosen']['lr']:g}", f"{t['chosen']['warmup']:g}",
             "; ".join(f"{c['lr']:g}/{c['warmup']:g}: {c['mean_val_top1']:.2f}" for c in t["candidates"])]
            for t in table]
    return ["## Tuning (validation split, tuning seed)", "",
            md_table(["setting", "init", "budget", "lr", "warmup", "candidates lr/warmup: mean val top-1"], rows)]


def primary(eps: list[dict]) -> list[str]:
    rows = [[e["name"], e["setting"], f"tleg − {e['comparator']}", e["test"] + (f" ±{e['margin']:g}" if e["margin"]
                                                                                 else ""),
             f"{len(e['seeds'])} seeds × {len(e['depths'])} depths", _num(e["diff"], sign=True), _ci(e),
             _ci(e, "ci90") if e["test"] == "equivalence" else "-", _p(e["p"]), _p(e.get("p_holm")),
             f"**{e['verdict']}**"] for e in eps]
    return ["## Primary endpoints (fixed before the reported seeds ran)", "",
            "Pooled over depths: per seed, the mean of TLEG − comparator over the depths both ran; a paired test "
            "over seeds (superiority: one-sided t-test; equivalence: TOST, shown equivalent when the 90 % interval "
            "lies inside ±margin). Holm over each family. Neither a win nor shown equivalent: inconclusive.", "",
            md_table(["endpoint", "setting", "difference", "test", "n", "mean (points)", "95 % CI", "90 % CI",
                      "p", "p (Holm)", "verdict"], rows)]


def secondary(rows: list[dict]) -> list[str]:
    out = ["## Secondary comparisons (per depth; two-sided paired t-tests, Holm within each setting)", ""]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        vs = list(dict.fromkeys(r["vs"] for r in mine))
        table = [[d] + [next((f"{r['verdict']} {_num(r['diff'], sign=True)} {_ci(r)}" for r in mine
                              if r["depth"] == d and r["vs"] == v), "-") for v in vs]
                 for d in sorted({r["depth"] for r in mine})]
        out += [f"**{setting}**: TLEG − each, verdict (Holm-adjusted p < 0.05), mean and 95 % CI", "",
                md_table(["L"] + [f"vs {v}" for v in vs], table)]
    return out


def cost(c: dict) -> list[str]:
    p, w = c.get("planned") or {}, c.get("wall_clock")
    if not p:
        return []
    ref = next(k for k in p["images"] if k not in ("aux", "tleg", "ratio"))
    rows = [[unit, f"{p[unit]['aux']:,}", f"{p[unit]['tleg']:,}", f"{p[unit][ref]:,}", f"{p[unit]['ratio']:.3f}"]
            for unit in ("images", "layer_passes")]
    if w and w["ratio"] is not None:
        rows.append(["wall-clock s (alone, 1 thread)", f"{w['aux_training_s']:.1f}", f"{w['tleg']:.1f}",
                     f"{w[ref]:.1f}", f"{w['ratio']:.3f}"])
    out = ["## Cost (measured over every depth both ran, nothing extrapolated)", "",
           md_table(["unit", "Aux-Net", "Σ tleg", f"Σ {ref}", f"(Aux + Σ tleg) ÷ Σ {ref}"], rows)]
    if w:
        one = w["one_off"]
        out.append(f"One-off, charged to no one (seed {w['seed']}): training the teacher "
                   f"{_num(one['teacher_training_s'], '.1f')} s, filling its logit cache {one['cache_fill_s']:.1f} s; "
                   f"with them the wall-clock ratio is {_num(w['ratio_with_one_off'], '.3f')}. Depths {p['depths']}.")
    else:
        out.append("Wall-clock: not measured yet (launchers/experiment.py --timing).")
    return out + [""]


def render(result: dict) -> str:
    lines = tuning(result.get("tuning")) + primary(result["endpoints"]) + secondary(result["secondary"])
    lines += cost(result["cost"])
    st = result["storage"]["storage"]
    lines += [f"Storage (parameters, as `python -m tleg_dist.convert inspect` counts them): learngene "
              f"{st['learngene']:,}; one model per depth {st['depths']} (prefin): {st['per_depth_total']:,} "
              f"({st['ratio_per_depth']:.1f}×); one {st['aux_depth']}-layer model (truncated, heur_lg): "
              f"{st['aux_model']:,} ({st['ratio_aux_model']:.1f}×).", ""]
    if result["ablations"]:
        lines += ["## Ablations (one seed)", "", md_table(
            ["ablation", "setting", "L", "init", "top-1", "main run"],
            [[a["ablation"], a["setting"], a["depth"], a["init"], f"{a['top1']:.2f}", _num(a["main_top1"])]
             for a in result["ablations"]])]
    wall, made = result["wall_time_s"], f"Produced by `{result['command']}` on {result['host']}"
    made += f": {wall['sum_of_runs'] / 3600:.2f} h of run time summed over the runs"
    if wall["this_invocation"] is not None and result["cpu_time_s"] is not None:
        made += (f"; its last training invocation used {result['cpu_time_s'] / 3600:.2f} h of CPU time in "
                 f"{wall['this_invocation'] / 3600:.2f} h of wall time")
    lines.append(made + (" (rebuilt with --report-only)." if result["rebuilt"] else "."))
    return "\n".join(lines)
