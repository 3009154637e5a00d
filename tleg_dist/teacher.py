"""The frozen teacher: any timm model, weights from a local file (never unpickled code)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from tleg_dist.config import TeacherConfig
from tleg_dist.utils.errors import UserError


class TeacherError(ValueError, UserError):
    pass


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """safetensors, or a torch file read with weights_only=True (refuses pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises several unrelated types for bad files
            raise TeacherError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for unsafe payloads, RuntimeError for truncation
        raise TeacherError(f"{path}: refused or unreadable as a weights-only torch file ({e})") from e
    for key in ("model", "state_dict", "module"):  # common wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise TeacherError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def create_teacher_model(cfg: TeacherConfig, num_classes: int, in_chans: int) -> nn.Module:
    try:
        return timm.create_model(cfg.model, pretrained=cfg.pretrained, num_classes=num_classes,
                                 in_chans=in_chans, **cfg.kwargs)
    except RuntimeError as e:
        raise TeacherError(f"distill.teacher.model: cannot create {cfg.model!r} ({e})") from e


def build_teacher(cfg: TeacherConfig, num_classes: int, in_chans: int) -> nn.Module:
    """A frozen eval-mode teacher. A checkpoint that does not fit fails here, before training."""
    model = create_teacher_model(cfg, num_classes, in_chans)
    if cfg.checkpoint is not None:
        state = load_state_file(cfg.checkpoint)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            details = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
            more = f"; ... {len(details) - 3} more" if len(details) > 3 else ""
            raise TeacherError(
                f"distill.teacher.checkpoint {cfg.checkpoint} does not match teacher {cfg.model!r} "
                f"(num_classes={num_classes}, in_chans={in_chans}): {'; '.join(details[:3]) or e}{more}"
            ) from e
    elif not cfg.pretrained:
        raise TeacherError("distill.teacher needs a checkpoint file or pretrained: true")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
