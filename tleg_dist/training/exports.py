"""Artefacts written at the end of a stage (gathering ZeRO-3 partitions first).

    finetune   RUN/model/{config.json, model.safetensors, README.md}: timm.create_model("local-dir:RUN/model")
    learngene  RUN/learngene/{learngene.safetensors, config.json, README.md}: tleg_dist.load_learngene(...)
    teacher    RUN/teacher.safetensors + teacher.json

RUN/learngene.safetensors is the folder's file under its old name (a hard link: no extra disk).
RUN/final.safetensors + final.json (the timm state dict and constructor arguments) are the
pre-folder layout, deprecated: kept, as a link and a small JSON, for tools that still read them.
"""

from __future__ import annotations

import json
from pathlib import Path

import deepspeed
from safetensors.torch import save_file

from tleg_dist import model_card, model_folder
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.artifacts import run_folder as rf
from tleg_dist.config import RunConfig
from tleg_dist.models.keys import aux_to_file
from tleg_dist.utils.atomic import atomic_path, link_or_copy


def export_final(cfg: RunConfig, engine, meta: dict, out: Path, is_main: bool, summary: dict) -> dict:
    module = engine.module
    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        if not is_main:
            return {}
        state = {k: v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}
    arch = cfg.model.arch()
    if cfg.stage == "teacher":
        with atomic_path(out / rf.TEACHER_WEIGHTS) as tmp:
            save_file(state, str(tmp), metadata={"stage": cfg.stage})
        info = {"model": cfg.distill.teacher.model, "num_classes": arch.num_classes, "in_chans": arch.in_chans}
        (out / rf.TEACHER_CONFIG).write_text(json.dumps(info, indent=1))
        return {"weights": str(out / rf.TEACHER_WEIGHTS), "config": str(out / rf.TEACHER_CONFIG)}
    run_config, preprocessing = meta["config"], meta["preprocessing"]  # recorded by the trainer (setup.py)
    if cfg.stage == "learngene":
        extra = {"val_top1": f"{summary.get('val_top1', float('nan')):.4f}", "global_step": str(summary["global_step"]),
                 learngene_file.PREPROCESSING: json.dumps(preprocessing)}
        files = learngene_file.save_folder(
            out / rf.LEARNGENE_FOLDER, aux_to_file(state), arch, cfg.model.depth, force=True, extra=extra,
            card=lambda config: model_card.learngene_card(config, run_config=run_config, summary=summary))
        link_or_copy(files[0], out / rf.LEARNGENE_FILE)
        return {"learngene": str(out / rf.LEARNGENE_FILE), "folder": str(files[0].parent)}
    model_args = arch.timm_kwargs(cfg.model.depth)
    lg = cfg.model.learngene if cfg.model.init == "learngene" else None
    card = model_card.des_net_card(model_args, preprocessing, run_config=run_config, summary=summary,
                                   learngene=model_card.learngene_source(lg))
    files = model_folder.write(out / rf.MODEL_FOLDER, state, model_args, preprocessing=preprocessing, card=card, force=True,
                               info={"stage": cfg.stage, "depth": cfg.model.depth,
                                     "global_step": summary["global_step"]})
    link_or_copy(files[0], out / rf.LEGACY_WEIGHTS)
    (out / rf.LEGACY_CONFIG).write_text(json.dumps(model_args, indent=1))
    return {"model": str(files[0].parent), "weights": str(out / rf.LEGACY_WEIGHTS), "config": str(out / rf.LEGACY_CONFIG)}
