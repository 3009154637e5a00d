"""`export`: a fine-tuned Des-Net checkpoint -> a timm model folder (artifacts/model_folder.py).

    model = timm.create_model(f"local-dir:{DIR}", pretrained=True)

DIR holds config.json (timm's format, with the run's recorded eval preprocessing in
pretrained_cfg), model.safetensors and a README.md card (recipe and data from the checkpoint's
metadata, the learngene's hash, and the metrics of RUN/summary.json when it describes the same step).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tleg_dist.artifacts import checkpoints, export as writer, model_folder
from tleg_dist.convert import zero
from tleg_dist.utils.atomic import check_output


def run(a: argparse.Namespace) -> None:
    for path in export(a.ckpt_dir, a.out, tag=a.tag, force=a.force, allow_pickle=a.allow_pickle):
        print(path)


def export(ckpt_dir, out_dir, *, tag: str | None = None, force: bool = False,
           allow_pickle: bool = False) -> list[Path]:
    out_dir = Path(out_dir)
    for name in model_folder.FILES:  # fail before the slow part
        check_output(out_dir / name, force, mkdir=False)  # creating nothing: a failed export leaves no folder
    ckpt = zero.open_checkpoint(ckpt_dir, tag, "finetune", "for an Aux-Net use `learngene`, then `expand`")
    preprocessing = ckpt.preprocessing()
    state = zero.consolidate(ckpt, allow_pickle)
    run_config = ckpt.meta.get("config") or {}
    model = run_config.get("model") or {}
    return writer.write_model(
        out_dir, state, ckpt.arch, ckpt.depth, stage=ckpt.meta["stage"], provenance=ckpt.provenance(),
        preprocessing=preprocessing, run_config=run_config, summary=ckpt.run_summary(),
        learngene=model.get("learngene") if model.get("init") == "learngene" else None,
        origin=f"Exported from checkpoint {ckpt.tag_dir.name}.", force=force,
        where=f"{ckpt.tag_dir} (architecture from its {checkpoints.MARKER})")
