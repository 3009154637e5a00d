"""The model each stage trains: teacher CNN, Aux-Net, or an initialised Des-Net."""

from __future__ import annotations

import logging

import torch
from torch import nn

from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.config import RunConfig
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.des_net import HEAD_KEYS, build_des_net, heur_lg_state, load_des_state
from tleg_dist.teacher import create_teacher_model, load_state_file
from tleg_dist.utils.errors import UserError

log = logging.getLogger(__name__)


class InitError(ValueError, UserError):
    pass


def _load_init(model: nn.Module, state: dict, source: str, fresh_head: bool,
               fresh_ok: tuple[str, ...] = ()) -> list[str]:
    """`state`'s tensors that `model` has (a deeper ViT's extra blocks are left out); the keys left fresh.
    Keys starting with a `fresh_ok` prefix may stay fresh on purpose (heur_lg's lower blocks)."""
    own = model.state_dict()
    try:
        fresh = load_des_state(model, {k: v for k, v in state.items()
                                       if k in own and not (fresh_head and k in HEAD_KEYS)})
    except ValueError as e:
        raise InitError(f"{source}: {e}") from None
    missing = [k for k in fresh if k not in HEAD_KEYS and not k.startswith(fresh_ok)]
    if missing:
        raise InitError(f"{source} lacks {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    return fresh


def _heur_lg(model: nn.Module, m) -> None:
    """heur_lg: those blocks and the ViT's shared parts (stem, position embedding, final norm, head);
    heur_lg_paper: the blocks only, everything else at its fresh init, as the original method."""
    paper = m.init == "heur_lg_paper"
    try:
        state, k, src_depth = heur_lg_state(load_state_file(m.pretrained), m.depth, blocks_only=paper)
    except ValueError as e:
        raise InitError(f"model.pretrained {m.pretrained}: {e}") from None
    fresh_ok = tuple(f"blocks.{i}." for i in range(m.depth - k))
    if paper:  # every key outside the inherited blocks may stay fresh
        fresh_ok += tuple(key for key in model.state_dict() if not key.startswith("blocks."))
    fresh = _load_init(model, state, f"model.pretrained {m.pretrained}", m.fresh_head, fresh_ok)
    log.info("Des-Net depth %d initialised by %s: blocks %s from blocks %s of %s (depth %d), the %d below random; "
             "fresh: %s", m.depth, m.init, list(range(m.depth - k, m.depth)), list(range(src_depth - k, src_depth)),
             m.pretrained, src_depth, m.depth - k, [key for key in fresh if not key.startswith("blocks.")] or "none")


def build_model(cfg: RunConfig) -> nn.Module:
    m = cfg.model
    if cfg.stage == "teacher":
        return create_teacher_model(cfg.distill.teacher, m.num_classes, m.in_chans)
    if cfg.stage == "learngene":
        return AuxNet(m.arch(), m.depth, m.drop_path_rate)
    model = build_des_net(m.arch(), m.depth, m.drop_path_rate)
    if m.init == "truncated":  # the first L blocks (and shared parts) of a deeper pretrained plain ViT
        fresh = _load_init(model, load_state_file(m.pretrained), f"model.pretrained {m.pretrained}", m.fresh_head)
        log.info("Des-Net depth %d initialised from the first %d blocks of %s; fresh: %s",
                 m.depth, m.depth, m.pretrained, fresh or "none")
    elif m.init in ("heur_lg", "heur_lg_paper"):  # the last ceil(L/4) blocks of a pretrained plain ViT
        _heur_lg(model, m)
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
