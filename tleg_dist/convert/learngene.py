"""`learngene`: a learngene-stage DeepSpeed checkpoint -> the public learngene file, or a learngene
folder (file + config.json + README.md card) when --out does not end in .safetensors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tleg_dist import model_card
from tleg_dist.artifacts import checkpoints
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.convert import zero
from tleg_dist.convert import ConvertError
from tleg_dist.data.preprocessing import eval_preprocessing
from tleg_dist.model_folder import CARD, CONFIG
from tleg_dist.models.keys import aux_to_file
from tleg_dist.utils.atomic import check_output

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def run(a: argparse.Namespace) -> None:
    print(convert(a.ckpt_dir, a.out, tag=a.tag, dtype=a.dtype, force=a.force, allow_pickle=a.allow_pickle))


def convert(ckpt_dir, out, *, tag: str | None = None, dtype: str = "fp32", force: bool = False,
            allow_pickle: bool = False) -> Path:
    """The learngene file written (inside the folder when `out` is one)."""
    out = Path(out)
    as_folder = out.suffix != ".safetensors"
    # Fail before the slow part, creating nothing: a failed conversion leaves no empty --out folder.
    for path in [out / name for name in (learngene_file.FOLDER_WEIGHTS, CONFIG, CARD)] if as_folder else [out]:
        check_output(path, force, mkdir=False)
    ckpt = zero.open_checkpoint(ckpt_dir, tag, "learngene", "for a fine-tuned Des-Net use `export`")
    state = zero.consolidate(ckpt, allow_pickle)
    try:
        tensors = aux_to_file(state)
    except KeyError as e:
        raise ConvertError(f"{ckpt.tag_dir}: the module is not an Aux-Net ({e.args[0]})") from None
    where = f"{ckpt.tag_dir} (checked against the architecture in its {checkpoints.MARKER})"
    learngene_file.validate(tensors, ckpt.arch, where)
    tensors = {k: v.to(DTYPES[dtype]) for k, v in tensors.items()}
    run_config = ckpt.meta.get("config") or {}
    extra = {"source": "deepspeed-checkpoint", "source_tag": ckpt.tag_dir.name,
             "global_step": str(ckpt.meta.get("global_step", "")), "dtype": dtype,
             learngene_file.PREPROCESSING: json.dumps(eval_preprocessing(run_config.get("data"), ckpt.arch.in_chans))}
    if not as_folder:
        return learngene_file.save(out, tensors, ckpt.arch, ckpt.depth, force=force, extra=extra)
    summary = ckpt.run_summary()
    return learngene_file.save_folder(
        out, tensors, ckpt.arch, ckpt.depth, force=force, extra=extra,
        card=lambda config: model_card.learngene_card(config, run_config=run_config, summary=summary))[0]
