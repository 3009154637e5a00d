"""Des-Nets: plain timm ViTs of any depth, initialised from a learngene (or a baseline's ViT)."""

from __future__ import annotations

import math
import re

import torch
from timm.models.vision_transformer import VisionTransformer

from tleg_dist.models.arch import ViTArch
from tleg_dist.models.learngene import expand


def shared_param_shapes(arch: ViTArch) -> dict[str, tuple[int, ...]]:
    """The tensors outside the blocks, with their shapes: the same names in the Aux-Net, the learngene
    file and every Des-Net (the head's depend on the class count)."""
    d = arch.embed_dim
    return {
        "patch_embed.proj.weight": (d, arch.in_chans, arch.patch_size, arch.patch_size),
        "patch_embed.proj.bias": (d,),
        "pos_embed": (1, arch.num_patches, d),
        "fc_norm.weight": (d,),
        "fc_norm.bias": (d,),
        "head.weight": (arch.num_classes, d),
        "head.bias": (arch.num_classes,),
    }


HEAD_KEYS = ("head.weight", "head.bias")
SHARED_KEYS = tuple(k for k in shared_param_shapes(ViTArch()) if k not in HEAD_KEYS)


def build_des_net(arch: ViTArch, depth: int, drop_path_rate: float = 0.0) -> VisionTransformer:
    return VisionTransformer(**arch.timm_kwargs(depth, drop_path_rate))


def des_state_from_learngene(
    theta_a: dict[str, torch.Tensor],
    theta_b: dict[str, torch.Tensor],
    shared: dict[str, torch.Tensor],
    depth: int,
) -> dict[str, torch.Tensor]:
    """A timm state dict (blocks + whatever shared tensors are given) for `depth` layers."""
    state = dict(shared)
    for name, a in theta_a.items():  # the block parameters the arch has (no attn.qkv.bias without qkv_bias)
        for i, w in enumerate(expand(a, theta_b[name], depth).unbind(0)):
            state[f"blocks.{i}.{name}"] = w.clone()
    return state


def heur_lg_state(vit_state: dict[str, torch.Tensor], depth: int,
                  blocks_only: bool = False) -> tuple[dict[str, torch.Tensor], int, int]:
    """Heuristic-Learngene, the paper's baseline that inherits "a few high layers": a ViT's last
    k = ceil(depth / 4) blocks become the Des-Net's last k (source block S - k + j -> block depth - k + j);
    the Des-Net's lower blocks are left out, to stay at their fresh init. The non-block tensors (patch
    and position embedding, final norm, head) come too, unless `blocks_only` (heur_lg_paper: as the
    original method, where everything but those high blocks starts at random).

    Returns (that state, k, the source depth S)."""
    blocks = [re.match(r"blocks\.(\d+)\.(.+)", key) for key in vit_state]
    src_depth = 1 + max((int(b[1]) for b in blocks if b), default=-1)
    k = math.ceil(depth / 4)
    if src_depth < k:
        raise ValueError(f"heur_lg needs a ViT of >= {k} blocks for depth {depth}, it has {src_depth}")
    state = {} if blocks_only else {key: v for key, v in vit_state.items() if not key.startswith("blocks.")}
    for b, v in zip(blocks, vit_state.values()):
        if b and int(b[1]) >= src_depth - k:
            state[f"blocks.{int(b[1]) - src_depth + depth}.{b[2]}"] = v
    return state, k, src_depth


@torch.no_grad()
def load_des_state(model: VisionTransformer, state: dict[str, torch.Tensor]) -> list[str]:
    """Load an expanded learngene (`des_state_from_learngene`) or a ViT's state into `model`;
    returns the keys left at their fresh init.

    The head is copied only when its shape matches (same class count); otherwise it
    keeps timm's fresh initialisation. Any other mismatch is an error.
    """
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k not in HEAD_KEYS or (k in own and v.shape == own[k].shape)}
    for k, v in state.items():
        if k not in own:
            raise KeyError(f"tensor {k!r} has no place in the Des-Net")
        if own[k].shape != v.shape:
            raise ValueError(f"tensor {k!r} has shape {tuple(v.shape)}, Des-Net expects {tuple(own[k].shape)}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    return list(missing)
