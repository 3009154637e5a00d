"""Artefacts written at the end of a stage (gathering ZeRO-3 partitions first), by artifacts/export.py:

    teacher    RUN/teacher.safetensors
    learngene  RUN/learngene/{learngene.safetensors, config.json, README.md}: tleg_dist.load_learngene(...)
    finetune   RUN/model/{model.safetensors, config.json, README.md}: timm.create_model("local-dir:RUN/model")

Returns what summary.json lists under "files" (artifacts/run_folder.py names the keys).
"""

from __future__ import annotations

from pathlib import Path

import deepspeed

from tleg_dist.artifacts import export
from tleg_dist.artifacts import run_folder as rf
from tleg_dist.artifacts.checkpoints import PREPROCESSING, tag_for
from tleg_dist.artifacts.provenance import TRAINER, Provenance
from tleg_dist.config import RunConfig
from tleg_dist.models.keys import aux_to_file


def export_final(cfg: RunConfig, engine, meta: dict, out: Path, is_main: bool, summary: dict) -> dict:
    """`meta`: the checkpoint marker's fields, whose eval preprocessing (timm pretrained_cfg fields, as
    the data recorded it when the run trained) the exported files carry."""
    module = engine.module
    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        if not is_main:
            return {}
        state = {k: v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}
    arch = cfg.model.arch()
    if cfg.stage == "teacher":
        path = export.write_teacher(out / rf.TEACHER_WEIGHTS, state, model=cfg.distill.teacher.model,
                                    num_classes=arch.num_classes, in_chans=arch.in_chans, force=True)
        return {rf.WEIGHTS: str(path)}
    # The trainer saves a checkpoint at its last step: these are that tag's weights, as `convert` would read them.
    step = summary["global_step"]
    provenance = Provenance(TRAINER, tag_for(step), step, summary.get("val_top1"))
    common = dict(provenance=provenance, preprocessing=meta[PREPROCESSING], run_config=meta["config"], summary=summary,
                  force=True)
    if cfg.stage == "learngene":
        file = export.write_learngene(out / rf.LEARNGENE_FOLDER, aux_to_file(state), arch, cfg.model.depth, **common)
        return {rf.LEARNGENE: str(file), rf.FOLDER: str(file.parent)}
    lg = cfg.model.learngene if cfg.model.init == "learngene" else None
    files = export.write_model(out / rf.MODEL_FOLDER, state, arch, cfg.model.depth, stage=cfg.stage, learngene=lg,
                               **common)
    return {rf.MODEL: str(files[0].parent), rf.WEIGHTS: str(files[0])}
