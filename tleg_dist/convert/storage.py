"""The storage arithmetic behind `inspect` and docs/formats.md.

b = parameters of one transformer block, s = the shared, non-expanded parameters
(patch embedding, position embedding, final norm, head). Then

    learngene           = 2b + s                 (theta_A and theta_B per block tensor)
    Des-Net of depth L  = L b + s
    one model per depth = sum over L in D of (L b + s) = (sum D) b + |D| s
    one aux-depth model = L_aux b + s            (pre-train once, transfer its layers)

Counts come from the learngene file's own shape table, so they cannot drift from it.
"""

from __future__ import annotations

from math import prod

from tleg_dist.artifacts.learngene import expected_shapes
from tleg_dist.models.arch import ViTArch
from tleg_dist.models.learngene import block_param_shapes

PAPER_SIZES = ("tiny", "small", "base")
PAPER_AUX_DEPTH = 12  # the paper's Aux-S and Aux-B (aux_deit_*_patch16_224) have 12 layers
DEFAULT_DEPTHS = tuple(range(1, 13))


def block_params(arch: ViTArch) -> int:
    return sum(prod(s) for s in block_param_shapes(arch).values())


def learngene_params(arch: ViTArch) -> int:
    return sum(prod(s) for s in expected_shapes(arch).values())


def comparison(arch: ViTArch, aux_depth: int, depths) -> dict:
    """The figures (params, and ratios to the learngene) of the formulas above, as `inspect --json` prints them."""
    depths = list(depths)
    b, learngene = block_params(arch), learngene_params(arch)
    s = learngene - 2 * b
    per_depth_total = sum(depths) * b + len(depths) * s
    aux_model = aux_depth * b + s
    return {"block": b, "shared": s, "learngene": learngene,
            "depths": depths, "per_depth_total": per_depth_total,
            "ratio_per_depth": per_depth_total / learngene, "aux_depth": aux_depth,
            "aux_model": aux_model, "ratio_aux_model": aux_model / learngene,
            "ratio_per_depth_blocks_only": sum(depths) / 2, "ratio_aux_blocks_only": aux_depth / 2}


def figures(arch: ViTArch, aux_depth: int, depths) -> dict:
    """A learngene's storage figures as `inspect --json` reports them: ours and the paper's sizes."""
    return {"arch": arch.to_dict(), "aux_depth": aux_depth, "storage": comparison(arch, aux_depth, depths),
            "paper": paper_comparisons(depths)}


def depth_list(depths) -> str:
    d = list(depths)
    return f"{d[0]}..{d[-1]}" if len(d) > 2 and d == list(range(d[0], d[-1] + 1)) else ",".join(map(str, d))


def render(c: dict, indent: str = "  ") -> str:
    """`comparison(...)` with the arithmetic written out."""
    b, s, n, sd, aux = c["block"], c["shared"], len(c["depths"]), sum(c["depths"]), c["aux_depth"]
    lines = [
        f"block b = {b:,}   shared s = {s:,}   (params)",
        f"learngene            2b + s = 2 x {b:,} + {s:,} = {c['learngene']:,}",
        f"one model per depth  (sum D) b + |D| s, D = {depth_list(c['depths'])}: "
        f"{sd} x {b:,} + {n} x {s:,} = {c['per_depth_total']:,}  -> {c['ratio_per_depth']:.2f}x the learngene",
        f"one {aux}-layer model  {aux} x {b:,} + {s:,} = {c['aux_model']:,}"
        f"  -> {c['ratio_aux_model']:.2f}x the learngene",
        f"blocks only (s left out on both sides): {sd}/2 = {sd / 2:.1f}x and {aux}/2 = {aux / 2:.1f}x",
    ]
    return "\n".join(indent + ln for ln in lines)


def paper_comparisons(depths=DEFAULT_DEPTHS) -> dict[str, dict]:
    return {name: comparison(ViTArch.from_size(name), PAPER_AUX_DEPTH, depths) for name in PAPER_SIZES}
