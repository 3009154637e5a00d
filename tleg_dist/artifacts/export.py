"""The one writer of exported artefacts: learngene files and folders, model folders, teacher weights.

The trainer's end-of-stage export (training/exports.py) and every `convert` command call these
functions, so the same weights give the same files whoever writes them:

    write_learngene   LG.safetensors, or a learngene folder {learngene.safetensors, config.json, README.md}
    write_model       a timm model folder {model.safetensors, config.json, README.md} (artifacts/model_folder.py)
    write_teacher     a teacher's state dict, its timm name and shape in the metadata

Each takes a `Provenance` (where the weights come from) and the eval preprocessing as timm
pretrained_cfg fields, which the caller is given (the trainer by its data, a converter by the
checkpoint marker), never re-derived here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from tleg_dist.artifacts import cards
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.artifacts import model_folder
from tleg_dist.artifacts.provenance import Provenance
from tleg_dist.models.arch import ViTArch
from tleg_dist.utils.atomic import atomic_path, check_output

LEARNGENE_SUFFIX = ".safetensors"  # a learngene --out with it is a file; without, a folder


def default_preprocessing(in_chans: int) -> dict:
    """The eval preprocessing assumed for a learngene that records none (written before runs recorded
    it): timm's ImageNet defaults; a grey model gets the mean over the three channels."""
    from timm.data import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    mean, std = list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD)
    if in_chans != 3:
        mean, std = [sum(mean) / 3] * in_chans, [sum(std) / 3] * in_chans
    return {"interpolation": "bicubic", "crop_pct": DEFAULT_CROP_PCT, "crop_mode": "center", "mean": mean, "std": std}


def learngene_outputs(out) -> list[Path]:
    """The files `write_learngene(out, ...)` writes: to check before a slow conversion."""
    out = Path(out)
    return [out] if out.suffix == LEARNGENE_SUFFIX else [out / name for name in learngene_file.FOLDER_FILES]


def write_learngene(out, tensors: dict[str, torch.Tensor], arch: ViTArch, aux_depth: int, *,
                    provenance: Provenance, preprocessing: dict, run_config: dict | None = None,
                    summary: dict | None = None, force: bool = False) -> Path:
    """The learngene file (`out` ends in .safetensors) or folder (else, with a card); returns the file."""
    out = Path(out)
    preprocessing = model_folder.check_preprocessing(preprocessing, arch.in_chans, str(out))
    extra = {**provenance.metadata(tensors), learngene_file.PREPROCESSING: json.dumps(preprocessing)}
    if out.suffix == LEARNGENE_SUFFIX:
        return learngene_file.save(out, tensors, arch, aux_depth, force=force, extra=extra)
    return learngene_file.save_folder(
        out, tensors, arch, aux_depth, force=force, extra=extra,
        card=lambda config: cards.learngene_card(config, run_config=run_config, summary=summary))[0]


def write_model(folder, state: dict[str, torch.Tensor], arch: ViTArch, depth: int, *, stage: str,
                provenance: Provenance, preprocessing: dict, run_config: dict | None = None,
                summary: dict | None = None, learngene=None, origin: str = "", force: bool = False,
                where: str = "state") -> list[Path]:
    """A timm model folder of the Des-Net `state`. `learngene`: the file or folder it was initialised
    (or expanded) from, named with its hash in the card and config.json; `where` names `state` in errors."""
    source = cards.learngene_source(learngene)
    preprocessing = model_folder.check_preprocessing(preprocessing, arch.in_chans, where)
    card = cards.des_net_card(arch, depth, preprocessing, run_config=run_config, summary=summary,
                              learngene=source, origin=origin)
    info = {"stage": stage, "depth": depth, **provenance.record(state), "learngene": source}
    return model_folder.write(folder, state, arch, depth, preprocessing=preprocessing, card=card, info=info,
                              force=force, where=where)


def write_teacher(path, state: dict[str, torch.Tensor], *, model: str, num_classes: int, in_chans: int,
                  force: bool = False) -> Path:
    """A teacher's state dict; the metadata says which timm model it belongs to and its shape."""
    path = check_output(path, force)
    meta = {"stage": "teacher", "model": model, "num_classes": str(num_classes), "in_chans": str(in_chans)}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=meta)
    return path
