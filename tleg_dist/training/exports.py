"""Artefacts written at the end of a stage (gathering ZeRO-3 partitions first)."""

from __future__ import annotations

import json
from pathlib import Path

import deepspeed
from safetensors.torch import save_file

from tleg_dist import learngene_file
from tleg_dist.config import RunConfig
from tleg_dist.models.arch import ViTArch
from tleg_dist.models.keys import aux_to_file
from tleg_dist.training.model_factory import export_state
from tleg_dist.utils.atomic import atomic_path


def export_final(cfg: RunConfig, engine, meta: dict, out: Path, is_main: bool, summary: dict) -> dict:
    module = engine.module
    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        state = export_state(module) if is_main else None
    if not is_main:
        return {}
    arch = ViTArch(**meta["arch"])
    if cfg.stage == "learngene":
        path = learngene_file.save(out / "learngene.safetensors", aux_to_file(state), arch, cfg.model.depth,
                                   force=True, extra={"val_top1": f"{summary.get('val_top1', float('nan')):.4f}",
                                                      "global_step": str(summary["global_step"])})
        return {"learngene": str(path)}
    name = "teacher" if cfg.stage == "teacher" else "final"
    with atomic_path(out / f"{name}.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"stage": cfg.stage})
    if cfg.stage == "teacher":
        info = {"model": cfg.distill.teacher.model, "num_classes": arch.num_classes, "in_chans": arch.in_chans}
    else:
        info = arch.timm_kwargs(cfg.model.depth)
    (out / f"{name}.json").write_text(json.dumps(info, indent=1))
    return {"weights": str(out / f"{name}.safetensors"), "config": str(out / f"{name}.json")}
