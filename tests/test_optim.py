"""The optimizer's schedule and parameter groups (tleg_dist/training/optim.py)."""

import math

import pytest
import torch
from torch import nn

from tleg_dist.models.arch import ViTArch
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.des_net import build_des_net
from tleg_dist.training.optim import lr_factor, param_groups

PEAK, MIN_LR = 1e-3, 1e-5
FLOOR = MIN_LR / PEAK


def factor(step, total=110, warmup=10, peak=PEAK, min_lr=MIN_LR):
    return lr_factor(step, total=total, warmup=warmup, peak=peak, min_lr=min_lr)


def test_warmup_rises_linearly_to_the_peak():
    assert [factor(s, warmup=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_cosine_from_the_peak_to_the_floor():
    assert factor(10) == pytest.approx(1.0)  # the first step after warmup
    assert factor(60) == pytest.approx(FLOOR + (1 - FLOOR) * 0.5)  # half-way through the decay
    assert factor(35) == pytest.approx(FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert factor(110) == pytest.approx(FLOOR)


def test_past_the_schedule_it_stays_at_the_floor():
    assert factor(111) == factor(10_000) == pytest.approx(FLOOR)


def test_without_warmup_it_starts_at_the_peak():
    assert factor(0, warmup=0) == pytest.approx(1.0)
    assert factor(0, total=1, warmup=0) == 1.0 and factor(1, total=1, warmup=0) == pytest.approx(FLOOR)


def test_a_floor_above_the_peak_holds_the_peak():
    assert factor(0, warmup=0, min_lr=2 * PEAK) == factor(100, warmup=0, min_lr=2 * PEAK) == 1.0


def test_a_schedule_no_longer_than_its_warmup_does_not_divide_by_zero():
    assert factor(10, total=10, warmup=10) == pytest.approx(1.0)
    assert factor(11, total=10, warmup=10) == pytest.approx(FLOOR)


ARCH = ViTArch(embed_dim=32, num_heads=2, patch_size=7, img_size=28, in_chans=1, num_classes=10)


def names(model, group):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in group["params"]}


@pytest.mark.parametrize("model", [AuxNet(ARCH, 2), build_des_net(ARCH, 2, 0.0)], ids=["aux_net", "des_net"])
def test_weight_matrices_decay_biases_norms_and_pos_embed_do_not(model):
    decay, no_decay = param_groups(model, 0.05)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    d, nd = names(model, decay), names(model, no_decay)
    assert d.isdisjoint(nd) and d | nd == {n for n, _ in model.named_parameters()}
    assert "pos_embed" in nd and "head.weight" in d and "head.bias" in nd and "patch_embed.proj.weight" in d
    params = dict(model.named_parameters())
    assert all(params[n].ndim >= 2 for n in d) and all(params[n].ndim <= 1 or n == "pos_embed" for n in nd)
    assert any("norm" in n for n in nd) and not any("norm" in n or n.endswith("bias") for n in d)


def test_frozen_parameters_are_left_out_and_norms_never_decay():
    model = nn.Module()
    model.fc = nn.Linear(3, 3)
    model.norm1_scale = nn.Parameter(torch.ones(3, 3))  # a 2-D norm parameter: still no decay
    model.frozen = nn.Parameter(torch.ones(3, 3), requires_grad=False)
    decay, no_decay = param_groups(model, 0.1)
    assert names(model, decay) == {"fc.weight"}
    assert names(model, no_decay) == {"fc.bias", "norm1_scale"}
