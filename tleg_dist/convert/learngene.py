"""`learngene`: a learngene-stage DeepSpeed checkpoint -> the public learngene file, or a learngene
folder (file + config.json + README.md card) when --out does not end in .safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path

from tleg_dist.artifacts import checkpoints, export
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.artifacts.provenance import DTYPE_NAMES
from tleg_dist.convert import ConvertError, zero
from tleg_dist.models.keys import aux_to_file
from tleg_dist.utils.atomic import check_output

DTYPES = {name: dtype for dtype, name in DTYPE_NAMES.items() if name in ("fp32", "bf16")}


def run(a: argparse.Namespace) -> None:
    print(convert(a.ckpt_dir, a.out, tag=a.tag, dtype=a.dtype, force=a.force, allow_pickle=a.allow_pickle))


def convert(ckpt_dir, out, *, tag: str | None = None, dtype: str = "fp32", force: bool = False,
            allow_pickle: bool = False) -> Path:
    """The learngene file written (inside the folder when `out` is one)."""
    # Fail before the slow part, creating nothing: a failed conversion leaves no empty --out folder.
    for path in export.learngene_outputs(out):
        check_output(path, force, mkdir=False)
    ckpt = zero.open_checkpoint(ckpt_dir, tag, "learngene", "for a fine-tuned Des-Net use `export`")
    preprocessing = ckpt.preprocessing()
    state = zero.consolidate(ckpt, allow_pickle)
    try:
        tensors = aux_to_file(state)
    except KeyError as e:
        raise ConvertError(f"{ckpt.tag_dir}: the module is not an Aux-Net ({e.args[0]})") from None
    where = f"{ckpt.tag_dir} (checked against the architecture in its {checkpoints.MARKER})"
    learngene_file.validate(tensors, ckpt.arch, where)
    tensors = {k: v.to(DTYPES[dtype]) for k, v in tensors.items()}
    return export.write_learngene(out, tensors, ckpt.arch, ckpt.depth, provenance=ckpt.provenance(),
                                  preprocessing=preprocessing, run_config=ckpt.meta.get("config") or {},
                                  summary=ckpt.run_summary(), force=force)
