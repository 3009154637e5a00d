"""The learngene file: a public, self-describing safetensors format.

Tensors: `learngene.<block param>.theta_a|theta_b` and the shared tensors under timm
names. Metadata (all strings): format, format_version and the architecture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tleg_dist.models.arch import ViTArch
from tleg_dist.models.keys import SHARED_FILE_KEYS, file_key
from tleg_dist.models.learngene import block_param_shapes
from tleg_dist.utils.atomic import atomic_path, check_output
from tleg_dist.utils.errors import UserError

FORMAT = "tleg-learngene"
FORMAT_VERSION = "1"
ARCH_FIELDS = ("embed_dim", "num_heads", "mlp_ratio", "patch_size", "img_size", "in_chans", "num_classes", "qkv_bias")


class LearngeneFileError(ValueError, UserError):
    pass


@dataclass
class LearngeneFile:
    arch: ViTArch
    aux_depth: int
    tensors: dict[str, torch.Tensor]
    extra: dict[str, str]


def metadata(arch: ViTArch, aux_depth: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "aux_depth": str(aux_depth)}
    meta.update({k: json.dumps(getattr(arch, k)) for k in ARCH_FIELDS})
    meta.update(extra or {})
    return meta


def expected_shapes(arch: ViTArch) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, shape in block_param_shapes(arch).items():
        shapes[file_key(name, "a")] = shape
        shapes[file_key(name, "b")] = shape
    d = arch.embed_dim
    shapes.update({
        "patch_embed.proj.weight": (d, arch.in_chans, arch.patch_size, arch.patch_size),
        "patch_embed.proj.bias": (d,),
        "pos_embed": (1, arch.num_patches, d),
        "fc_norm.weight": (d,),
        "fc_norm.bias": (d,),
        "head.weight": (arch.num_classes, d),
        "head.bias": (arch.num_classes,),
    })
    assert set(SHARED_FILE_KEYS) <= set(shapes)
    return shapes


def validate(tensors: dict[str, torch.Tensor], arch: ViTArch, where: str) -> None:
    want = expected_shapes(arch)
    missing = sorted(set(want) - set(tensors))
    if missing:
        raise LearngeneFileError(f"{where}: missing tensors {missing}")
    unknown = sorted(set(tensors) - set(want))
    if unknown:
        raise LearngeneFileError(f"{where}: unexpected tensors {unknown}")
    for k, shape in want.items():
        if tuple(tensors[k].shape) != shape:
            raise LearngeneFileError(f"{where}: tensor {k} has shape {tuple(tensors[k].shape)}, expected {shape} for {arch}")


def save(path, tensors: dict[str, torch.Tensor], arch: ViTArch, aux_depth: int, *, force: bool = False,
         extra: dict[str, str] | None = None) -> Path:
    validate(tensors, arch, str(path))
    path = check_output(path, force)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata=metadata(arch, aux_depth, extra))
    return path


def read_metadata(path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise LearngeneFileError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise LearngeneFileError(f"{path}: not a readable safetensors file ({e})") from e


def arch_from_metadata(meta: dict[str, str], where: str) -> tuple[ViTArch, int]:
    if meta.get("format") != FORMAT:
        raise LearngeneFileError(f"{where}: not a learngene file (format={meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise LearngeneFileError(f"{where}: unsupported format_version {meta.get('format_version')!r}")
    try:
        fields = {k: json.loads(meta[k]) for k in ARCH_FIELDS}
        return ViTArch(**fields), int(meta["aux_depth"])
    except (KeyError, ValueError, TypeError) as e:
        raise LearngeneFileError(f"{where}: bad or missing architecture metadata ({e})") from e


def load(path) -> LearngeneFile:
    path = Path(path)
    meta = read_metadata(path)
    arch, aux_depth = arch_from_metadata(meta, str(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise LearngeneFileError(f"{path}: corrupt tensor data ({e})") from e
    validate(tensors, arch, str(path))
    extra = {k: v for k, v in meta.items() if k not in ARCH_FIELDS and k not in ("format", "format_version", "aux_depth")}
    return LearngeneFile(arch, aux_depth, tensors, extra)
