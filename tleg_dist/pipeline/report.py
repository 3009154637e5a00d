"""Results of a pipeline: JSON, a markdown table and a plot of accuracy against depth."""

from __future__ import annotations

import json
from pathlib import Path


def markdown_table(rows: list[dict]) -> str:
    inits = sorted({r["init"] for r in rows}, key=lambda s: (s != "learngene", s))
    depths = sorted({r["depth"] for r in rows})
    by = {(r["depth"], r["init"]): r for r in rows}
    head = "| depth | params | " + " | ".join(f"top-1 {i} (%)" for i in inits) + " |"
    lines = [head, "|" + "---|" * (2 + len(inits))]
    for d in depths:
        cells = [f"{by[(d, i)]['top1']:.2f}" if (d, i) in by else "-" for i in inits]
        params = next(by[(d, i)]["params"] for i in inits if (d, i) in by)
        lines.append(f"| {d} | {params:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for init in sorted({r["init"] for r in rows}):
        pts = sorted((r["depth"], r["top1"]) for r in rows if r["init"] == init)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=init)
    ax.set_xlabel("Des-Net depth")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title("TLEG init vs scratch, same fine-tuning budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(root: Path, rows: list[dict], aux: dict) -> str:
    root = Path(root)
    (root / "results.json").write_text(json.dumps({"aux": aux, "des": rows}, indent=1))
    table = markdown_table(rows)
    text = (f"Aux-Net (depth {aux['depth']}): val top-1 {aux['top1']:.2f}% after {aux['images_seen']:,} images\n\n"
            f"{table}\n")
    (root / "results.md").write_text(text)
    plot(rows, root / "results.png")
    return text
