"""The learngene: two tensors per block parameter, and the one expansion rule.

Layer l (0-based) of an L-layer model gets  theta_l = theta_A + (l / L) * theta_B.
`expand` is the only implementation of that rule in the project: the Aux-Net's
forward, Des-Net initialisation and the converters all call it.
"""

from __future__ import annotations

import torch
from torch import nn

from tleg_dist.models.arch import ViTArch, check_depth


def block_param_shapes(arch: ViTArch) -> dict[str, tuple[int, ...]]:
    """Block parameters under their timm names (inside `blocks.<i>.`), with their shapes."""
    d, h = arch.embed_dim, arch.mlp_hidden
    shapes = {
        "norm1.weight": (d,),
        "norm1.bias": (d,),
        "attn.qkv.weight": (3 * d, d),
        "attn.qkv.bias": (3 * d,),
        "attn.proj.weight": (d, d),
        "attn.proj.bias": (d,),
        "norm2.weight": (d,),
        "norm2.bias": (d,),
        "mlp.fc1.weight": (h, d),
        "mlp.fc1.bias": (h,),
        "mlp.fc2.weight": (d, h),
        "mlp.fc2.bias": (d,),
    }
    if not arch.qkv_bias:
        del shapes["attn.qkv.bias"]
    return shapes


BLOCK_PARAMS = tuple(block_param_shapes(ViTArch(qkv_bias=True)))  # every name an arch may have


def coefficients(depth: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """l / L for l = 0..L-1: where each layer sits between theta_A and theta_A + theta_B.

    Made on `device` by a kernel: a tensor built from a Python list would be a blocking host copy.
    """
    check_depth(depth)
    return torch.arange(depth, device=device, dtype=torch.float64).div_(depth).to(dtype)


def fractions(depth: int) -> list[float]:
    """`coefficients` as Python floats (float64 l / L, the values it rounds), for the backward."""
    return [layer / depth for layer in range(depth)]


def expand(theta_a: torch.Tensor, theta_b: torch.Tensor, depth: int) -> torch.Tensor:
    """All `depth` layers at once: out[l] = theta_a + (l / depth) * theta_b, stacked on dim 0.

    One fused broadcast op per tensor rather than a loop over layers.
    """
    if theta_a.shape != theta_b.shape:
        raise ValueError(f"theta_a {tuple(theta_a.shape)} and theta_b {tuple(theta_b.shape)} differ in shape")
    coef = coefficients(depth, theta_a.dtype, theta_a.device).view(depth, *([1] * theta_a.dim()))
    return torch.addcmul(theta_a.unsqueeze(0), coef, theta_b.unsqueeze(0))


class _ExpandLayers(torch.autograd.Function):
    """expand() then unbind, with a backward that never materialises the stacked gradient.

    d out[l] / d theta_a = 1 and d out[l] / d theta_b = l/L, so the gradients are running
    sums over the layers' gradients. Autograd's own backward of expand+unbind would first
    stack the L layer gradients into a new (L, ...) buffer and then reduce it twice. Nothing
    is saved for backward but the depth, which also suits ZeRO-3's released parameters.
    The backward touches no tensor but the gradients (Python-float coefficients, which kernels
    round to float32 as they would a float32 tensor's values): no host read.
    """

    @staticmethod
    def forward(ctx, theta_a, theta_b, depth):
        ctx.depth = depth
        return expand(theta_a, theta_b, depth).unbind(0)

    @staticmethod
    def backward(ctx, *grads):
        coef = fractions(ctx.depth)
        ga = gb = None
        for c, g in zip(coef, grads):
            if g is None:
                continue
            ga = g.clone() if ga is None else ga.add_(g)
            if c:
                gb = g.mul(c) if gb is None else gb.add_(g, alpha=c)
        if gb is None and ga is not None:
            gb = torch.zeros_like(ga)
        return ga, gb, None


def expand_layers(theta_a: torch.Tensor, theta_b: torch.Tensor, depth: int) -> tuple[torch.Tensor, ...]:
    """The `depth` expanded layer tensors as a tuple (the Aux-Net's training path)."""
    if torch.compiler.is_compiling():
        # The compiler fuses autograd's own backward of expand+unbind (no stacked gradient is
        # materialised); the hand-written one compiles slower (benchmarks/aux_overhead.py --compile,
        # docs/performance.md).
        return expand(theta_a, theta_b, depth).unbind(0)
    return _ExpandLayers.apply(theta_a, theta_b, depth)


def module_key(name: str) -> str:
    """Parameter names may not contain dots: 'attn.qkv.weight' -> 'attn_qkv_weight'."""
    return name.replace(".", "_")


class Learngene(nn.Module):
    """theta_A and theta_B for every block parameter, initialised as the paper's code.

    Linear weights: trunc_normal(std=0.02) for both A and B, biases 0.
    LayerNorm: A weight 1, A bias 0; B all 0 (so every layer starts as a plain LN).
    """

    def __init__(self, arch: ViTArch):
        super().__init__()
        self.shapes = block_param_shapes(arch)
        self.theta_a = nn.ParameterDict()
        self.theta_b = nn.ParameterDict()
        for name, shape in self.shapes.items():
            self.theta_a[module_key(name)] = nn.Parameter(torch.empty(shape))
            self.theta_b[module_key(name)] = nn.Parameter(torch.empty(shape))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for name in self.shapes:
            a, b = self.theta_a[module_key(name)], self.theta_b[module_key(name)]
            if name.startswith("norm") and name.endswith("weight"):
                a.fill_(1.0)
                b.zero_()
            elif name.endswith("bias"):
                a.zero_()
                b.zero_()
            else:
                nn.init.trunc_normal_(a, std=0.02)
                nn.init.trunc_normal_(b, std=0.02)

    def forward(self, depth: int) -> dict[str, tuple[torch.Tensor, ...]]:
        """Expanded weights of all `depth` layers: name -> one tensor per layer.

        Doing this inside a module's forward lets ZeRO-3 gather the partitioned
        parameters through its usual module hooks.
        """
        return {
            name: expand_layers(self.theta_a[module_key(name)], self.theta_b[module_key(name)], depth)
            for name in self.shapes
        }
