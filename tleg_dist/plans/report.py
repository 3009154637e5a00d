"""One results writer for any plan: results.{json,md,csv,png} from the jobs' records.

The table has a row per (setting, depth) and a top-1 column per init, as the mean over seeds
(± the standard deviation when there are several); the upstream jobs (teacher, Aux-Net)
are listed above it. Analyses that belong to one study (the experiment's verdicts) live
with that study, not here.
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


def _cell(recs: list[dict]) -> str:
    vals = [r["top1"] for r in recs if r.get("top1") is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def table(records: list[dict]) -> str:
    des = [r for r in records if r.get("kind") == "des"]
    inits = sorted({r["init"] for r in des}, key=lambda i: (i not in ("learngene", "tleg"), i))  # TLEG first
    settings = sorted({r.get("setting") for r in des if r.get("setting")})
    head = (["setting"] if settings else []) + ["depth", "params"] + [f"top-1 {i} (%)" for i in inits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted({(r.get("setting") or "", r["depth"]) for r in des}):
        row = [r for r in des if (r.get("setting") or "", r["depth"]) == key]
        params = next((r["params"] for r in row if r.get("params")), None)
        cells = ([key[0]] if settings else []) + [str(key[1]), "-" if params is None else f"{params:,}"]
        cells += [_cell([r for r in row if r["init"] == i]) for i in inits]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(records: list[dict], title: str, failed: dict[str, str], blocked: list[str], planned: int) -> str:
    lines = [f"# {title}", ""] if title else []
    if len(records) < planned:
        lines += [f"**PARTIAL: {len(records)} of {planned} jobs finished.**", ""]
    for r in records:
        if r.get("kind") != "des":
            top1 = "-" if r.get("top1") is None else f"{r['top1']:.2f}%"
            lines.append(f"- {r['name']}: val top-1 {top1} after {r.get('images') or 0:,} images")
    lines += ["", table(records)]
    lines += [f"- FAILED {name}: {err.splitlines()[-1] if err else ''}" for name, err in failed.items()]
    lines += [f"- not run (an input failed): {name}" for name in blocked]
    return "\n".join(lines).rstrip() + "\n"


def plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes or CI
    import matplotlib.pyplot as plt

    des = [r for r in records if r.get("kind") == "des" and r.get("top1") is not None]
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for line in sorted({(r.get("setting") or "", r["init"]) for r in des}):
        pts = {}
        for r in des:
            if (r.get("setting") or "", r["init"]) == line:
                pts.setdefault(r["depth"], []).append(r["top1"])
        xs = sorted(pts)
        ax.plot(xs, [statistics.mean(pts[x]) for x in xs], marker="o", label="/".join(p for p in line if p))
    ax.set_xlabel("Des-Net depth (layers)")
    ax.set_ylabel("val top-1 (%)")
    ax.grid(alpha=0.3)
    if des:
        ax.legend(fontsize=7)
    ax.set_title(title or "Des-Nets by depth", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write(out_dir: Path, records: list[dict], title: str = "", failed: dict[str, str] | None = None,
          blocked: list[str] = (), planned: int | None = None) -> dict[str, Path]:
    """results.{json,md,csv,png} in out_dir; returns their paths."""
    failed, planned = failed or {}, len(records) if planned is None else planned
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"results.{ext}" for ext in ("json", "md", "csv", "png")}
    doc = {"title": title, "planned": planned, "finished": len(records), "failed": failed, "blocked": list(blocked),
           "upstream": [r for r in records if r.get("kind") != "des"],
           "des": [r for r in records if r.get("kind") == "des"]}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    for ext, text in (("json", json.dumps(doc, indent=1)), ("csv", buf.getvalue()),
                      ("md", markdown(records, title, failed, list(blocked), planned))):
        with atomic_path(paths[ext]) as tmp:
            tmp.write_text(text)
    plot(records, paths["png"], title)
    return paths
