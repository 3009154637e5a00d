"""The Aux-Net: a ViT whose every layer is expanded from one learngene.

It computes exactly what timm's VisionTransformer(class_token=False, global_pool='avg',
qkv_bias=True, LayerNorm eps 1e-6, fused attention) computes with the expanded weights,
so a Des-Net expanded at the Aux-Net's own depth is the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, drop_path, trunc_normal_
from torch import nn

from tleg_dist.models.arch import ViTArch, check_depth
from tleg_dist.models.learngene import Learngene

LN_EPS = 1e-6  # timm's ViT default


class AuxNet(nn.Module):
    def __init__(self, arch: ViTArch, depth: int, drop_path_rate: float = 0.0):
        super().__init__()
        self.arch, self.depth = arch, check_depth(depth, "aux depth")
        self.num_heads = arch.num_heads
        self.patch_embed = PatchEmbed(arch.img_size, arch.patch_size, arch.in_chans, arch.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, arch.num_patches, arch.embed_dim))
        self.learngene = Learngene(arch)
        self.fc_norm = nn.LayerNorm(arch.embed_dim, eps=LN_EPS)
        self.head = nn.Linear(arch.embed_dim, arch.num_classes)
        # Same stochastic-depth schedule as timm: linear in the layer index.
        self.drop_path_rates = torch.linspace(0, drop_path_rate, depth).tolist()
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def _block(self, x: torch.Tensor, w: dict[str, torch.Tensor], dpr: float) -> torch.Tensor:
        B, N, D = x.shape
        h = F.layer_norm(x, (D,), w["norm1.weight"], w["norm1.bias"], LN_EPS)
        qkv = F.linear(h, w["attn.qkv.weight"], w.get("attn.qkv.bias"))
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        h = F.scaled_dot_product_attention(q, k, v)
        h = F.linear(h.transpose(1, 2).reshape(B, N, D), w["attn.proj.weight"], w["attn.proj.bias"])
        x = x + drop_path(h, dpr, self.training)
        h = F.layer_norm(x, (D,), w["norm2.weight"], w["norm2.bias"], LN_EPS)
        h = F.linear(F.gelu(F.linear(h, w["mlp.fc1.weight"], w["mlp.fc1.bias"])), w["mlp.fc2.weight"], w["mlp.fc2.bias"])
        return x + drop_path(h, dpr, self.training)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        layers = self.learngene(self.depth)  # name -> per-layer tensors
        x = self.patch_embed(x) + self.pos_embed
        for i in range(self.depth):
            x = self._block(x, {name: t[i] for name, t in layers.items()}, self.drop_path_rates[i])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=1)
        return self.head(self.fc_norm(x))
