"""DeiT's distillation loss, self-contained (after facebookresearch/deit losses.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DistillationLoss(nn.Module):
    """(1 - alpha) * base(student, labels) + alpha * KD(student, teacher).

    `type='none'` returns the base loss and never calls the teacher. The teacher's logits of the
    batch may be given (read from the teacher-logit cache); then the teacher does not run, and
    may be None.
    """

    def __init__(self, base: nn.Module, teacher: nn.Module | None, type: str = "none",
                 alpha: float = 0.5, tau: float = 1.0):
        super().__init__()
        if type not in ("none", "soft", "hard"):
            raise ValueError(f"distillation type must be none, soft or hard, got {type!r}")
        self.base, self.type, self.alpha, self.tau = base, type, alpha, tau
        self.teacher = teacher

    def forward(self, inputs: torch.Tensor, outputs: torch.Tensor, labels: torch.Tensor,
                teacher_logits: torch.Tensor | None = None) -> torch.Tensor:
        outputs = outputs.float()
        base = self.base(outputs, labels)
        if self.type == "none":
            return base
        if teacher_logits is not None:
            t = teacher_logits.float()
        elif self.teacher is None:
            raise ValueError(f"distillation type {self.type!r} needs a teacher or the teacher's logits")
        else:
            with torch.no_grad():
                t = self.teacher(inputs.float()).float()
        if self.type == "soft":  # KL(teacher_tau || student_tau) * tau^2 / numel, exactly DeiT's term
            kd = F.kl_div(F.log_softmax(outputs / self.tau, dim=1), F.log_softmax(t / self.tau, dim=1),
                          reduction="sum", log_target=True) * (self.tau * self.tau) / outputs.numel()
        else:
            kd = F.cross_entropy(outputs, t.argmax(dim=1))
        return (1 - self.alpha) * base + self.alpha * kd
