"""The model each stage trains: teacher CNN, Aux-Net, or an initialised Des-Net."""

from __future__ import annotations

import logging

import torch
from torch import nn

from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.config import RunConfig
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.des_net import HEAD_KEYS, build_des_net, load_des_state
from tleg_dist.teacher import create_teacher_model, load_state_file
from tleg_dist.utils.errors import UserError

log = logging.getLogger(__name__)


class InitError(ValueError, UserError):
    pass


def _load_init(model: nn.Module, state: dict, source: str, fresh_head: bool) -> list[str]:
    """`state`'s tensors that `model` has (a deeper ViT's extra blocks are left out); the keys left fresh."""
    own = model.state_dict()
    try:
        fresh = load_des_state(model, {k: v for k, v in state.items()
                                       if k in own and not (fresh_head and k in HEAD_KEYS)})
    except ValueError as e:
        raise InitError(f"{source}: {e}") from None
    missing = [k for k in fresh if k not in HEAD_KEYS]
    if missing:
        raise InitError(f"{source} lacks {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    return fresh


def build_model(cfg: RunConfig) -> nn.Module:
    m = cfg.model
    if cfg.stage == "teacher":
        return create_teacher_model(cfg.distill.teacher, m.num_classes, m.in_chans)
    if cfg.stage == "learngene":
        return AuxNet(m.arch(), m.depth, m.drop_path_rate)
    model = build_des_net(m.arch(), m.depth, m.drop_path_rate)
    if m.init == "truncated":  # the first L blocks (and shared parts) of a deeper pretrained plain ViT
        _load_init(model, load_state_file(m.pretrained), f"model.pretrained {m.pretrained}", m.fresh_head)
    elif m.init == "learngene":
        lg = learngene_file.load(m.learngene)
        try:
            lg.check_fits(m.arch())
        except learngene_file.LearngeneFileError as e:  # a sound file, but not for this recipe's model
            raise InitError(str(e)) from None
        fresh = _load_init(model, lg.des_state(m.depth), f"learngene {m.learngene}", m.fresh_head)
        log.info("Des-Net depth %d initialised from %s (aux depth %d); fresh: %s",
                 m.depth, m.learngene, lg.aux_depth, fresh or "none")
    return model


def compile_engine(engine, cfg: RunConfig, zero_stage: int) -> None:
    """model.compile: torch.compile through DeepSpeed, which compiles the module in place (same keys)."""
    if zero_stage == 3 and isinstance(engine.module, AuxNet):
        # ZeRO-3 gathers the learngene in the Learngene module's hooks, which dynamo cannot trace
        # (it sees the empty partitions): the expansion runs eagerly, everything after it compiles.
        learngene = engine.module.learngene
        learngene.forward = torch.compiler.disable(learngene.forward)
    engine.compile(compile_kwargs={"mode": cfg.model.compile.mode})


@torch.no_grad()
def export_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
