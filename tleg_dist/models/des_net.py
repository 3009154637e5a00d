"""Des-Nets: plain timm ViTs of any depth, initialised from a learngene."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer

from tleg_dist.models.arch import ViTArch
from tleg_dist.models.learngene import expand

SHARED_KEYS = ("patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed",
               "fc_norm.weight", "fc_norm.bias")
HEAD_KEYS = ("head.weight", "head.bias")


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
