"""`export`: a fine-tuned Des-Net checkpoint -> a timm model folder (tleg_dist/model_folder.py).

    model = timm.create_model(f"local-dir:{DIR}", pretrained=True)

DIR holds config.json (timm's format, with the run's eval preprocessing in pretrained_cfg),
model.safetensors and a README.md card (recipe and data from the checkpoint's metadata, the
learngene's hash, and the metrics of RUN/summary.json when it describes the same step).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tleg_dist import model_card, model_folder
from tleg_dist.artifacts import checkpoints
from tleg_dist.convert import zero
from tleg_dist.data.preprocessing import eval_preprocessing
from tleg_dist.utils.atomic import check_output


def run(a: argparse.Namespace) -> None:
    for path in export(a.ckpt_dir, a.out, tag=a.tag, force=a.force, allow_pickle=a.allow_pickle):
        print(path)


def export(ckpt_dir, out_dir, *, tag: str | None = None, force: bool = False,
           allow_pickle: bool = False) -> list[Path]:
    out_dir = Path(out_dir)
    for name in (model_folder.WEIGHTS, model_folder.CONFIG, model_folder.CARD):  # fail before the slow part
        check_output(out_dir / name, force, mkdir=False)  # creating nothing: a failed export leaves no folder
    ckpt = zero.open_checkpoint(ckpt_dir, tag, "finetune", "for an Aux-Net use `learngene`, then `expand`")
    state = zero.consolidate(ckpt, allow_pickle)
    run_config = ckpt.meta.get("config") or {}
    model_args = ckpt.arch.timm_kwargs(ckpt.depth)
    preprocessing = eval_preprocessing(run_config.get("data"), ckpt.arch.in_chans)
    lg = (run_config.get("model") or {}).get("learngene")
    card = model_card.des_net_card(model_args, preprocessing, run_config=run_config, summary=ckpt.run_summary(),
                                   learngene=model_card.learngene_source(lg),
                                   origin=f"Exported from checkpoint {ckpt.tag_dir.name}.")
    info = {"stage": ckpt.meta["stage"], "depth": ckpt.depth, "source_tag": ckpt.tag_dir.name,
            "global_step": ckpt.meta.get("global_step")}
    return model_folder.write(out_dir, state, model_args, preprocessing=preprocessing, card=card, info=info,
                              force=force, where=f"{ckpt.tag_dir} (architecture from its {checkpoints.MARKER})")
