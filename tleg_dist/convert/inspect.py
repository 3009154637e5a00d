"""`inspect`: what a file is, its architecture, parameter count and size on disk.

For a learngene it also prints the storage comparison (see storage.py) for the file's
own sizes and for the paper's Tiny/Small/Base, with the arithmetic written out.
Only headers and JSON are read: no tensor data, no pickle.
"""

from __future__ import annotations

import argparse
import json
from math import prod
from pathlib import Path

from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.artifacts import model_folder
from tleg_dist.convert import ConvertError, storage
from tleg_dist.models.arch import check_depth
from tleg_dist.utils.jsonio import read_json


def run(a: argparse.Namespace) -> None:
    info = describe(a.path, a.depths)
    print(json.dumps(info, indent=1) if a.json else render(info))


def _disk_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _header(weights: Path, where: Path) -> tuple[dict, dict]:
    """A safetensors file's metadata, and what `inspect` says of it (`where`: the file or its folder)."""
    def read(f):
        shapes = [f.get_slice(k).get_shape() for k in f.keys()]
        return f.metadata() or {}, shapes, {str(f.get_slice(k).get_dtype()) for k in f.keys()}

    meta, shapes, dtypes = learngene_file.read_safetensors(weights, read, ConvertError)
    return meta, {"path": str(where), "size_bytes": _disk_size(where), "tensors": len(shapes),
                  "params": sum(prod(s) for s in shapes), "dtypes": sorted(dtypes)}


def describe(path, depths=storage.DEFAULT_DEPTHS) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConvertError(f"{path}: no such file or directory")
    try:
        for d in depths:
            check_depth(d, "--depths")
    except ValueError as e:
        raise ConvertError(str(e)) from None
    if path.is_dir():
        if (path / model_folder.CONFIG).is_file() and (path / model_folder.WEIGHTS).is_file():
            return _describe_model_folder(path)
        if (path / model_folder.CONFIG).is_file() and (path / learngene_file.FOLDER_WEIGHTS).is_file():
            return describe(path / learngene_file.FOLDER_WEIGHTS, depths)  # a learngene folder, not a run
        return _describe_checkpoint(path)
    meta, info = _header(path, path)
    if meta.get("format") == learngene_file.FORMAT:
        arch, aux_depth = learngene_file.arch_from_metadata(meta, str(path))
        info |= {"format": learngene_file.FORMAT, "format_version": learngene_file.FORMAT_VERSION,
                 **storage.figures(arch, aux_depth, depths)}
        comp = info["storage"]
        if info["params"] != comp["learngene"]:
            info["warning"] = f"file holds {info['params']:,} params, the format expects {comp['learngene']:,}"
        return info
    info["format"] = meta.get("format", "safetensors (no tleg format metadata)")
    return info


def _describe_model_folder(path: Path) -> dict:
    _, info = _header(path / model_folder.WEIGHTS, path)
    config = read_json(path / model_folder.CONFIG, ConvertError)
    if not isinstance(config, dict) or not isinstance(config.get("model_args"), dict):
        raise ConvertError(f"{path / model_folder.CONFIG}: not a model folder's config ('model_args' is missing)")
    tleg = config.get("tleg") if isinstance(config.get("tleg"), dict) else {}
    return info | {"format": tleg.get("format", "timm pretrained folder"), "stage": tleg.get("stage"),
                   "architecture": config.get("architecture"), "timm_kwargs": config["model_args"]}


def _describe_checkpoint(path: Path) -> dict:
    from tleg_dist.convert import zero  # reads only the checkpoint marker: no torch.load here

    ckpt = zero.open_checkpoint(path)
    m = ckpt.meta
    return {"path": str(ckpt.tag_dir), "format": "deepspeed-checkpoint", "size_bytes": _disk_size(ckpt.tag_dir),
            "stage": m["stage"], "arch": ckpt.arch.to_dict() if ckpt.arch else None, "depth": ckpt.depth,
            "global_step": m.get("global_step"), "epoch": m.get("epoch"), "zero_stage": m.get("zero_stage"),
            "bf16": m.get("bf16"), "world_size": m.get("world_size"),
            "files": sorted(f.name for f in ckpt.tag_dir.iterdir() if f.is_file())}


def render(info: dict) -> str:
    lines = [f"{info['path']}", f"  format: {info['format']}"]
    for key in ("format_version", "stage", "architecture", "aux_depth", "depth", "global_step", "zero_stage",
                "bf16", "world_size", "dtypes"):
        if info.get(key) is not None:
            lines.append(f"  {key}: {info[key]}")
    if info.get("arch"):
        lines.append("  arch: " + ", ".join(f"{k}={v}" for k, v in info["arch"].items()))
    if info.get("timm_kwargs"):
        lines.append(f"  timm kwargs: {json.dumps(info['timm_kwargs'])}")
    if "params" in info:
        lines.append(f"  parameters: {info['params']:,} in {info['tensors']} tensors")
    lines.append(f"  size on disk: {info['size_bytes']:,} bytes ({info['size_bytes'] / 2**20:.2f} MiB)")
    if info.get("warning"):
        lines.append(f"  WARNING: {info['warning']}")
    if "storage" in info:
        lines.append("  storage to initialise Des-Nets (params), this file's architecture:")
        lines.append(storage.render(info["storage"], "    "))
        for name, comp in info["paper"].items():
            lines.append(f"  the paper's {name.capitalize()} (224 px, patch 16, 1000 classes, "
                         f"aux depth {storage.PAPER_AUX_DEPTH}):")
            lines.append(storage.render(comp, "    "))
    return "\n".join(lines)
