"""One results writer for any plan: results.{json,md,csv} and plots from the jobs' records.

Des-Nets (kind "des") are tabulated a row per depth and a top-1 column per init, as the mean
over seeds (± the standard deviation when there are several). Records with a "setting" label
get one section per setting: its upstream jobs (teacher, Aux-Net) and its table. A plot is
top-1 against a chosen record field (depth by default; any other, e.g. total_images, on a
log axis), one panel per setting and one line per init. A plan adds its own numbers as
Markdown `notes` and its own display `names`; what the numbers mean belongs in its docs.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from tleg_dist.utils.atomic import atomic_path

COLUMNS = ("name", "setting", "depth", "init", "seed", "params", "top1", "top5", "val_loss", "images",
           "global_step", "time_s", "attempts", "run_dir")
MARKERS = "o*s^Dvp"


def md_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows]) + "\n"


def mean_std(vals: list[float]) -> tuple[float, float]:
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def _cell(recs: list[dict]) -> str:
    vals = [r["top1"] for r in recs if r.get("top1") is not None]
    if not vals:
        return "-"
    m, s = mean_std(vals)
    return f"{m:.2f}" if len(vals) == 1 else f"{m:.2f} ± {s:.2f}"


def _des(records: list[dict], setting: str | None = None) -> list[dict]:
    """The Des-Nets that make the cells: not the runs of an ablation (label "ablation"), which
    differ in more than their init and seed; a plan reports those in its notes."""
    return [r for r in records if r.get("kind") == "des" and not r.get("ablation")
            and setting in (None, r.get("setting"))]


def cells(records: list[dict]) -> dict[tuple, list[dict]]:
    """Those Des-Nets by (setting, depth, init), in plan order: a cell's runs differ only in seed."""
    out: dict[tuple, list[dict]] = {}
    for r in _des(records):
        out.setdefault((r.get("setting"), r["depth"], r["init"]), []).append(r)
    return out


def _inits(des: list[dict]) -> list[str]:
    seen = list(dict.fromkeys(r["init"] for r in des))  # plan order, TLEG first
    return sorted(seen, key=lambda i: (i not in ("learngene", "tleg"), seen.index(i)))


def _settings(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["setting"] for r in records if r.get("setting")))


def table(records: list[dict], setting: str | None = None, names: dict[str, str] | None = None) -> str:
    """Des-Nets of one setting (or all, with a setting column when there are several)."""
    names, des = names or {}, _des(records, setting)
    inits = _inits(des)
    col = setting is None and bool(_settings(des))
    head = (["setting"] if col else []) + [names.get("depth", "depth"), "params"]
    rows = []
    for key in sorted({(r.get("setting") or "", r["depth"]) for r in des}):
        row = [r for r in des if (r.get("setting") or "", r["depth"]) == key]
        params = next((r["params"] for r in row if r.get("params")), None)
        rows.append(([key[0]] if col else []) + [key[1], "-" if params is None else f"{params:,}"]
                    + [_cell([r for r in row if r["init"] == i]) for i in inits])
    return md_table(head + [f"top-1 {names.get(i, i)} (%)" for i in inits], rows)


def _upstream(records: list[dict]) -> list[str]:
    return [f"- {r['name']}: val top-1 {'-' if r.get('top1') is None else format(r['top1'], '.2f') + '%'} "
            f"after {r.get('images') or 0:,} images" for r in records if r.get("kind") != "des"]


def markdown(records: list[dict], title: str, failed: dict[str, str], blocked: list[str], planned: int,
             names: dict[str, str] | None = None, notes: str = "") -> str:
    lines = [f"# {title}", ""] if title else []
    if len(records) < planned:
        lines += [f"**PARTIAL: {len(records)} of {planned} runs finished; the tables cover only those.**", ""]
    for s in _settings(records) or [None]:  # None: a plan without settings, one table
        mine = [r for r in records if s in (None, r.get("setting"))]
        lines += ([f"## Setting `{s}`", ""] if s else []) + [*_upstream(mine), "", table(mine, s, names).rstrip(), ""]
    lines += [f"- FAILED {name}: {err.splitlines()[-1] if err else ''}" for name, err in failed.items()]
    lines += [f"- not run (an input failed): {name}" for name in blocked]
    return "\n".join(lines).rstrip() + "\n" + (f"\n{notes.strip()}\n" if notes.strip() else "")


def plot(records: list[dict], path: Path, title: str = "", x: str = "depth",
         names: dict[str, str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes or CI
    import matplotlib.pyplot as plt

    names = names or {}
    des = [r for r in _des(records) if r.get("top1") is not None and r.get(x) is not None]
    settings = _settings(des) or [None]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.6 * len(settings) + 2, 3.8), dpi=110, squeeze=False,
                             layout="constrained")  # leaves room for a legend outside the axes
    by = cells(des)
    for ax, s in zip(axes[0], settings):
        for k, init in enumerate(_inits(des)):
            line = sorted(((d, rs) for (s2, d, i), rs in by.items() if (s2, i) == (s, init)), key=lambda p: p[0])
            stats = [(mean_std([r[x] for r in rs])[0], *mean_std([r["top1"] for r in rs])) for _, rs in line]
            if stats:
                xs, ys, err = zip(*stats)
                # Colour and marker by init, not by order in the panel: a panel without one init
                # (a setting that leaves it out) must not shift the others' colours.
                ax.errorbar(xs, ys, yerr=err, marker=MARKERS[k % len(MARKERS)], color=f"C{k % 10}", capsize=3,
                            label=names.get(init, init), lw=2 if init in ("learngene", "tleg") else 1)
        if x == "depth":
            ax.set_xticks(sorted({r["depth"] for r in _des(des, s)}))
        else:  # budgets in images span orders of magnitude
            ax.set_xscale("log")
        ax.set(xlabel=names.get(x, x), ylabel="val top-1 (%), mean ± std", title=s or title or "Des-Nets")
        ax.grid(alpha=0.3, which="both")
    if des:
        fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=7, loc="outside right upper")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write(out_dir: Path, records: list[dict], title: str = "", failed: dict[str, str] | None = None,
          blocked: list[str] = (), planned: int | None = None, *, names: dict[str, str] | None = None,
          notes: str = "", plots: dict[str, str] | None = None) -> dict[str, Path]:
    """results.{json,md,csv} and the plots ({file name: x field}, default results.png against depth)
    in out_dir; returns their paths (the first plot also as "png")."""
    failed, planned = failed or {}, len(records) if planned is None else planned
    plots = plots or {"results.png": "depth"}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"results.{ext}" for ext in ("json", "md", "csv")}
    doc = {"title": title, "planned": planned, "finished": len(records), "failed": failed, "blocked": list(blocked),
           "upstream": [r for r in records if r.get("kind") != "des"], "des": _des(records),
           "ablations": [r for r in records if r.get("kind") == "des" and r.get("ablation")]}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    for ext, text in (("json", json.dumps(doc, indent=1, default=str)), ("csv", buf.getvalue()),
                      ("md", markdown(records, title, failed, list(blocked), planned, names, notes))):
        with atomic_path(paths[ext]) as tmp:
            tmp.write_text(text)
    for name, x in plots.items():
        paths[name] = out_dir / name
        plot(records, paths[name], title, x, names)
    paths["png"] = paths[next(iter(plots))]
    return paths
