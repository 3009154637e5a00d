"""The ViT architecture shared by the Aux-Net, its learngene and every Des-Net."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# Named widths. The paper's sizes are 224 px / patch 16; the cpu-* sizes fit 28x28
# Fashion-MNIST (patch 4 -> 49 tokens) so that the whole method runs on 2 cores.
SIZES: dict[str, dict] = {
    "tiny": dict(embed_dim=192, num_heads=3, img_size=224, patch_size=16, in_chans=3, num_classes=1000),
    "small": dict(embed_dim=384, num_heads=6, img_size=224, patch_size=16, in_chans=3, num_classes=1000),
    "base": dict(embed_dim=768, num_heads=12, img_size=224, patch_size=16, in_chans=3, num_classes=1000),
    "cpu-64": dict(embed_dim=64, num_heads=4, img_size=28, patch_size=4, in_chans=1, num_classes=10),
    "cpu-128": dict(embed_dim=128, num_heads=4, img_size=28, patch_size=4, in_chans=1, num_classes=10),
    "cpu-192": dict(embed_dim=192, num_heads=6, img_size=28, patch_size=4, in_chans=1, num_classes=10),
}


@dataclass(frozen=True)
class ViTArch:
    """Everything but the depth: a learngene fixes these, a Des-Net adds a depth."""

    embed_dim: int = 64
    num_heads: int = 4
    mlp_ratio: float = 4.0
    patch_size: int = 4
    img_size: int = 28
    in_chans: int = 1
    num_classes: int = 10
    qkv_bias: bool = True

    def __post_init__(self):
        bad = [f"{k}={v}" for k, v in asdict(self).items() if not isinstance(v, bool) and v <= 0]
        if bad:  # before the divisions below: a file or marker may say 0
            raise ValueError(f"{', '.join(bad)}: must be > 0")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size={self.img_size} is not divisible by patch_size={self.patch_size}")

    @classmethod
    def from_size(cls, name: str, **overrides) -> "ViTArch":
        if name not in SIZES:
            raise ValueError(f"unknown model size {name!r}; known: {', '.join(SIZES)}")
        return cls(**{**SIZES[name], **overrides})

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    def timm_kwargs(self, depth: int, drop_path_rate: float = 0.0) -> dict:
        """Constructor arguments of the equivalent timm VisionTransformer (every field is one)."""
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        return dict(asdict(self), depth=depth, class_token=False, global_pool="avg", drop_path_rate=drop_path_rate)

    def to_dict(self) -> dict:
        return asdict(self)


# The one list of architecture fields: recipes, learngene files and checkpoints all use it.
ARCH_FIELDS = tuple(f.name for f in fields(ViTArch))
