"""Two PNGs: top-1 against depth (one line per init), and top-1 against training images."""

from __future__ import annotations

from pathlib import Path

from tleg_dist.plans.experiment import INIT_ORDER
from tleg_dist.experiments.summary import SCRATCH_CURVE

LABELS = {"tleg": "TLEG", "scratch": "scratch (same fine-tuning budget)",
          "scratch_long": "scratch (TLEG's total budget)", "scratch_2x": "scratch (2x TLEG's total)",
          "truncated": "truncated pre-trained"}
MARKERS = {"tleg": "*", "scratch": "o", "scratch_long": "s", "scratch_2x": "D", "truncated": "^"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(plt, n: int):
    # Constrained layout leaves room for a legend outside the axes, so it never hides data.
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n + 2.4, 3.8), dpi=110, squeeze=False, layout="constrained")
    return fig, axes[0]


def accuracy_vs_depth(cells: list[dict], titles: dict[str, str], path: Path) -> None:
    plt = _plt()
    settings = list(dict.fromkeys(c["setting"] for c in cells))
    fig, axes = _axes(plt, len(settings))
    for ax, s in zip(axes, settings):
        for init in INIT_ORDER:
            pts = [c for c in cells if c["setting"] == s and c["init"] == init]
            if pts:
                ax.errorbar([c["depth"] for c in pts], [c["top1_mean"] for c in pts],
                            yerr=[c["top1_std"] for c in pts], marker=MARKERS[init], capsize=3,
                            label=LABELS[init], lw=2 if init == "tleg" else 1)
        ax.set(xlabel="descendant depth L", ylabel="val top-1 (%), mean ± std over seeds", title=titles.get(s, s))
        ax.set_xticks(sorted({c["depth"] for c in cells if c["setting"] == s}))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside right upper")
    fig.savefig(path)
    plt.close(fig)


def accuracy_vs_cost(cells: list[dict], titles: dict[str, str], path: Path) -> None:
    """x: training images charged to one descendant (its own + its share of the Aux-Net's).

    Dashed lines join random init at growing budgets for one depth; TLEG's star is to be
    read against the dashed line of its own colour.
    """
    plt = _plt()
    settings = list(dict.fromkeys(c["setting"] for c in cells))
    depths = sorted({c["depth"] for c in cells})
    colours = {d: plt.cm.viridis(i / max(1, len(depths) - 1)) for i, d in enumerate(depths)}
    fig, axes = _axes(plt, len(settings))
    for ax, s in zip(axes, settings):
        for d in depths:
            mine = {c["init"]: c for c in cells if c["setting"] == s and c["depth"] == d}
            curve = [mine[i] for i in SCRATCH_CURVE if i in mine]
            if len(curve) > 1:
                ax.plot([c["total_images"] for c in curve], [c["top1_mean"] for c in curve], "--",
                        color=colours[d], lw=1)
            for init, c in mine.items():
                ax.errorbar(c["total_images"], c["top1_mean"], yerr=c["top1_std"], marker=MARKERS[init],
                            color=colours[d], ms=11 if init == "tleg" else 6, capsize=2, ls="none")
        ax.set_xscale("log")
        kilo = plt.FuncFormatter(lambda v, _: f"{v / 1000:g}k")
        ax.xaxis.set_major_formatter(kilo)
        ax.xaxis.set_minor_formatter(kilo)
        ax.tick_params(axis="x", which="both", labelsize=7)
        ax.set(xlabel="training images charged to the descendant (log)", ylabel="val top-1 (%)",
               title=titles.get(s, s))
        ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], color="gray", marker=MARKERS[i], ls="none", label=LABELS[i])
               for i in INIT_ORDER if any(c["init"] == i for c in cells)]
    handles += [plt.Line2D([], [], color=colours[d], lw=3, label=f"depth {d}") for d in depths]
    fig.legend(handles=handles, fontsize=7, loc="outside right upper")
    fig.savefig(path)
    plt.close(fig)
