"""A sweep's result records as one table (markdown, CSV, JSON) and one plot."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tleg_dist.utils.atomic import atomic_path

COLUMNS = ("depth", "params", "top1", "top5", "val_loss", "global_step", "time_s", "attempts", "seed")


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key == "params":
        return f"{v / 1e6:.3f}M"
    if isinstance(v, float):
        return f"{v:.2f}" if key in ("top1", "top5", "time_s") else f"{v:.4f}"
    return str(v)


def markdown(records: list[dict], title: str = "") -> str:
    head = ["depth", "params", "top1 (%)", "top5 (%)", "val loss", "steps", "time (s)", "attempts", "seed"]
    lines = [f"# {title}", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        lines.append("| " + " | ".join(_fmt(k, r.get(k)) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def to_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*COLUMNS, "run_dir"], extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    return buf.getvalue()


def plot(records: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes or CI
    import matplotlib.pyplot as plt

    done = [r for r in records if r.get("top1") is not None]
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    ax.plot([r["depth"] for r in done], [r["top1"] for r in done], "o-", color="tab:blue")
    for r in done:
        ax.annotate(_fmt("params", r.get("params")), (r["depth"], r["top1"]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xlabel("Des-Net depth (layers)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_xticks(sorted({r["depth"] for r in done}))
    ax.grid(alpha=0.3)
    ax.set_title(title or "Des-Nets initialised from one learngene", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_all(records: list[dict], out_dir: Path, title: str = "") -> dict[str, Path]:
    """results.{md,csv,json,png} in out_dir, records sorted by depth."""
    records = sorted(records, key=lambda r: r["depth"])
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"results.{ext}" for ext in ("md", "csv", "json", "png")}
    for ext, text in (("md", markdown(records, title)), ("csv", to_csv(records)),
                      ("json", json.dumps(records, indent=1))):
        with atomic_path(paths[ext]) as tmp:
            tmp.write_text(text)
    plot(records, paths["png"], title)
    return paths
