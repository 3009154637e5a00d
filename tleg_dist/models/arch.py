"""The ViT architecture shared by the Aux-Net, its learngene and every Des-Net, and its shape rules.

The rules (every field > 0, heads divide the width, the patch divides the image, depth >= 1,
the named sizes) are spelt here only: recipes (config.py), files and checkpoint markers
(artifacts/) and the converters all ask this module. `to_dict` / `from_dict` are the one
serialised form of an architecture (checkpoint marker, learngene metadata, model folders).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping, get_type_hints

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


def size_fields(name: str) -> dict:
    """The fields a named size sets; ValueError listing the known names."""
    if name not in SIZES:
        raise ValueError(f"unknown size {name!r}; known: {', '.join(SIZES)}")
    return dict(SIZES[name])


def check_depth(depth: int, what: str = "depth") -> int:
    """`depth` when it is a usable number of layers; ValueError naming `what` if not."""
    if depth < 1:
        raise ValueError(f"{what} must be >= 1, got {depth}")
    return depth


def shape_problems(values: Mapping, prefix: str = "") -> list[str]:
    """What is wrong with these architecture values, each naming its field (`prefix` + name)."""
    bad = [f"{prefix}{k}={v}: must be > 0" for k, v in values.items()
           if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0]
    if bad:  # before the divisions below: a file or marker may say 0
        return bad
    p, v = prefix, values
    if v["embed_dim"] % v["num_heads"]:
        bad.append(f"{p}num_heads={v['num_heads']} does not divide {p}embed_dim={v['embed_dim']}")
    if v["img_size"] % v["patch_size"]:
        bad.append(f"{p}patch_size={v['patch_size']} does not divide {p}img_size={v['img_size']}")
    return bad


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
        bad = shape_problems(asdict(self))
        if bad:
            raise ValueError("; ".join(bad))

    @classmethod
    def from_size(cls, name: str, **overrides) -> "ViTArch":
        return cls(**{**size_fields(name), **overrides})

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    def timm_kwargs(self, depth: int, drop_path_rate: float = 0.0) -> dict:
        """Constructor arguments of the equivalent timm VisionTransformer (every field is one)."""
        return dict(self.to_dict(), depth=check_depth(depth), class_token=False, global_pool="avg",
                    drop_path_rate=drop_path_rate)

    def to_dict(self) -> dict:
        """The one serialised form: every field under its name, as JSON values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d, where: str) -> "ViTArch":
        """`to_dict`'s output read back, checked; keys that are not fields (a depth beside them) are
        ignored. ValueError "WHERE: FIELD ..." naming the first field at fault."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: expected an object of architecture fields, got {type(d).__name__}")
        for k, kind in _TYPES.items():
            v = d.get(k)
            if k not in d:
                raise ValueError(f"{where}: {k} is missing")
            if isinstance(v, bool) != (kind is bool) or not isinstance(v, (float, int) if kind is float else kind):
                raise ValueError(f"{where}: {k}={v!r} is not {_KINDS[kind]}")
        try:
            return cls(**{k: d[k] for k in _TYPES})
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None


_TYPES = get_type_hints(ViTArch)
_KINDS = {int: "an integer", float: "a number", bool: "true or false"}
# The one list of architecture fields: recipes, learngene files and checkpoints all use it.
ARCH_FIELDS = tuple(f.name for f in fields(ViTArch))
