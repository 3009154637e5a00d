"""The model each stage trains: teacher CNN, Aux-Net, or an initialised Des-Net."""

from __future__ import annotations

import logging

import torch
from torch import nn

from tleg_dist import learngene_file
from tleg_dist.config import RunConfig
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.des_net import HEAD_KEYS, build_des_net, init_des_net_from_learngene
from tleg_dist.models.keys import split_file_tensors
from tleg_dist.teacher import create_teacher_model, load_state_file
from tleg_dist.utils.errors import UserError

log = logging.getLogger(__name__)

# A learngene fixes everything but depth and classes; these must agree with the recipe.
MUST_MATCH = ("embed_dim", "num_heads", "mlp_ratio", "patch_size", "img_size", "in_chans", "qkv_bias")


class InitError(ValueError, UserError):
    pass


def check_compatible(file_arch, want_arch, path) -> None:
    bad = [f"{k}: file has {getattr(file_arch, k)}, recipe wants {getattr(want_arch, k)}"
           for k in MUST_MATCH if getattr(file_arch, k) != getattr(want_arch, k)]
    if bad:
        raise InitError(f"learngene {path} does not fit model: " + "; ".join(bad))


def init_truncated(model: nn.Module, path, fresh_head: bool = False) -> None:
    """The first L blocks (and shared parts) of a deeper pretrained plain ViT."""
    state = load_state_file(path)
    own = model.state_dict()
    take = {k: v for k, v in state.items()
            if k in own and (k not in HEAD_KEYS or (not fresh_head and v.shape == own[k].shape))}
    for k, v in take.items():
        if v.shape != own[k].shape:
            raise InitError(f"model.pretrained {path}: {k} has shape {tuple(v.shape)}, model wants {tuple(own[k].shape)}")
    missing = [k for k in own if k not in take and k not in HEAD_KEYS]
    if missing:
        raise InitError(f"model.pretrained {path} lacks {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    model.load_state_dict(take, strict=False)


def build_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    m = cfg.model
    if cfg.stage == "teacher":
        return create_teacher_model(cfg.distill.teacher, num_classes, m.in_chans)
    arch = m.arch().__class__(**{**m.arch().to_dict(), "num_classes": num_classes})
    if cfg.stage == "learngene":
        return AuxNet(arch, m.depth, m.drop_path_rate)
    model = build_des_net(arch, m.depth, m.drop_path_rate)
    if m.init == "learngene":
        lg = learngene_file.load(m.learngene)
        check_compatible(lg.arch, arch, m.learngene)
        theta_a, theta_b, shared = split_file_tensors(lg.tensors)
        if m.fresh_head:
            shared = {k: v for k, v in shared.items() if k not in HEAD_KEYS}
        fresh = init_des_net_from_learngene(model, theta_a, theta_b, shared)
        log.info("Des-Net depth %d initialised from %s (aux depth %d); fresh: %s",
                 m.depth, m.learngene, lg.aux_depth, fresh or "none")
    elif m.init == "truncated":
        init_truncated(model, m.pretrained, m.fresh_head)
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
