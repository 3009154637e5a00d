"""DistillationLoss (tleg_dist/losses.py), DeiT's term, against hand computations in plain Python."""

import math

import pytest
import torch
from torch import nn

from tleg_dist.losses import DistillationLoss

STUDENT = [[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]]
TEACHER = [[1.0, 0.0, -2.0], [-0.5, 2.5, 0.3]]
LABELS = [0, 2]


class Fixed(nn.Module):
    """A 'teacher' whose logits are given, whatever the images; it records what it was called with."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.calls = torch.tensor(logits), []

    def forward(self, x):
        self.calls.append(x)
        return self.logits


class Refuses(nn.Module):
    def forward(self, x):
        raise AssertionError("the teacher must not run")


def softmax(row, tau=1.0):
    e = [math.exp(v / tau) for v in row]
    return [v / sum(e) for v in e]


def cross_entropy(rows, labels):
    return sum(-math.log(softmax(r)[y]) for r, y in zip(rows, labels)) / len(rows)


def kd_soft(student, teacher, tau):
    """DeiT: sum over the batch of KL(p_teacher || p_student) at temperature tau, x tau^2 / (batch x classes)."""
    kl = sum(pt * (math.log(pt) - math.log(ps)) for s, t in zip(student, teacher)
             for ps, pt in zip(softmax(s, tau), softmax(t, tau)))
    return kl * tau * tau / (len(student) * len(student[0]))


def loss(type, alpha=0.5, tau=1.0, teacher=TEACHER, student=STUDENT):
    crit = DistillationLoss(nn.CrossEntropyLoss(), Fixed(teacher), type, alpha, tau)
    return crit(torch.zeros(2, 1, 4, 4), torch.tensor(student), torch.tensor(LABELS)).item()


@pytest.mark.parametrize("tau", [1.0, 2.0, 3.5])
def test_soft_kd_term_is_deits_hand_computed(tau):
    assert loss("soft", alpha=1.0, tau=tau) == pytest.approx(kd_soft(STUDENT, TEACHER, tau), rel=1e-6)


def test_soft_kd_is_scaled_by_tau_squared():
    """Logits scaled by tau give the same distributions at temperature tau as the originals at 1:
    only the tau^2 factor (which keeps the gradient's size independent of tau) remains."""
    tau = 4.0
    scaled = loss("soft", alpha=1.0, tau=tau, teacher=[[v * tau for v in r] for r in TEACHER],
                  student=[[v * tau for v in r] for r in STUDENT])
    assert scaled == pytest.approx(tau * tau * loss("soft", alpha=1.0, tau=1.0), rel=1e-5)


def test_soft_kd_vanishes_when_the_student_matches_the_teacher():
    assert loss("soft", alpha=1.0, tau=2.0, student=TEACHER) == pytest.approx(0.0, abs=1e-7)


def test_hard_kd_is_cross_entropy_on_the_teachers_argmax():
    argmax = [max(range(3), key=row.__getitem__) for row in TEACHER]
    assert argmax != LABELS  # else hard distillation and the labels could not be told apart
    assert loss("hard", alpha=1.0) == pytest.approx(cross_entropy(STUDENT, argmax), rel=1e-6)
    assert loss("hard", alpha=1.0, tau=5.0) == pytest.approx(loss("hard", alpha=1.0), rel=1e-7)  # no temperature


@pytest.mark.parametrize("type", ["soft", "hard"])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_alpha_mixes_the_label_loss_and_the_kd_term(type, alpha):
    base = cross_entropy(STUDENT, LABELS)
    kd = loss(type, alpha=1.0, tau=2.0)
    assert loss(type, alpha=alpha, tau=2.0) == pytest.approx((1 - alpha) * base + alpha * kd, rel=1e-6)


def test_none_is_the_label_loss_and_never_runs_the_teacher():
    crit = DistillationLoss(nn.CrossEntropyLoss(), Refuses(), "none", alpha=0.9)
    out = crit(torch.zeros(2, 1, 4, 4), torch.tensor(STUDENT), torch.tensor(LABELS))
    assert out.item() == pytest.approx(cross_entropy(STUDENT, LABELS), rel=1e-6)
    assert DistillationLoss(nn.CrossEntropyLoss(), None)(None, torch.tensor(STUDENT), torch.tensor(LABELS)) == out


def test_teacher_sees_float_images_and_passes_no_gradient():
    teacher = Fixed(TEACHER)
    student = torch.tensor(STUDENT, dtype=torch.bfloat16, requires_grad=True)
    out = DistillationLoss(nn.CrossEntropyLoss(), teacher, "soft", 0.5, 2.0)(
        torch.zeros(2, 1, 4, 4, dtype=torch.bfloat16), student, torch.tensor(LABELS))
    assert teacher.calls[0].dtype == torch.float32 and out.dtype == torch.float32
    out.backward()
    assert student.grad is not None and not teacher.logits.requires_grad


@pytest.mark.parametrize("type", ["soft", "hard"])
def test_given_teacher_logits_replace_the_teacher(type):
    """The teacher-logit cache's path: the logits come with the batch and the teacher never runs."""
    crit = DistillationLoss(nn.CrossEntropyLoss(), None, type, 0.5, 2.0)
    given = crit(torch.zeros(2, 1, 4, 4), torch.tensor(STUDENT), torch.tensor(LABELS), torch.tensor(TEACHER))
    assert given.item() == loss(type, tau=2.0)
    assert DistillationLoss(nn.CrossEntropyLoss(), Refuses(), type)(
        None, torch.tensor(STUDENT), torch.tensor(LABELS), torch.tensor(TEACHER)).item() == loss(type, tau=1.0)


def test_bad_type_is_refused():
    with pytest.raises(ValueError, match="none, soft or hard, got 'kd'"):
        DistillationLoss(nn.CrossEntropyLoss(), Fixed(TEACHER), "kd")


def test_distillation_without_teacher_or_logits_is_refused():
    crit = DistillationLoss(nn.CrossEntropyLoss(), None, "soft")
    with pytest.raises(ValueError, match="distillation type 'soft' needs a teacher or the teacher's logits"):
        crit(torch.zeros(2, 1, 4, 4), torch.tensor(STUDENT), torch.tensor(LABELS))
