"""The pure model modules: the expansion rule, the Aux-Net, Des-Net initialisation.

The reference everywhere is timm's VisionTransformer: the Aux-Net must compute exactly
what a timm ViT loaded with the expanded weights computes, forward and backward.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
import torch
import torch.nn.functional as F

from tleg_dist.models.arch import SIZES, ViTArch, check_depth, size_fields
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.des_net import (HEAD_KEYS, SHARED_KEYS, build_des_net, des_state_from_learngene,
                                      load_des_state)
from tleg_dist.models.learngene import BLOCK_PARAMS, Learngene, block_param_shapes, expand, module_key

TOL = dict(rtol=1e-5, atol=1e-5)  # the bar for "computes the same function"


def parts(aux: AuxNet):
    """(theta_a, theta_b, shared) of an Aux-Net, block dicts keyed by timm names."""
    lg = aux.learngene
    theta_a = {n: lg.theta_a[module_key(n)].detach() for n in lg.shapes}
    theta_b = {n: lg.theta_b[module_key(n)].detach() for n in lg.shapes}
    state = aux.state_dict()
    shared = {k: state[k] for k in SHARED_KEYS + HEAD_KEYS}
    return theta_a, theta_b, shared


def timm_twin(aux: AuxNet, drop_path_rate: float = 0.0):
    """A timm ViT of the Aux-Net's depth holding its expanded weights (strict load)."""
    vit = build_des_net(aux.arch, aux.depth, drop_path_rate)
    theta_a, theta_b, shared = parts(aux)
    vit.load_state_dict(des_state_from_learngene(theta_a, theta_b, shared, aux.depth), strict=True)
    return vit


def images(arch: ViTArch, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, arch.in_chans, arch.img_size, arch.img_size)


# ---- the expansion rule --------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2, 3, 7, 12])
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
def test_expand_matches_formula(depth, shape, seeded):
    a, b = torch.randn(shape), torch.randn(shape)
    out = expand(a, b, depth)
    assert out.shape == (depth, *shape)
    for l in range(depth):
        torch.testing.assert_close(out[l], a + (l / depth) * b, rtol=1e-6, atol=1e-7)
    # Layer 0 is theta_A itself; theta_B never enters at full weight.
    assert torch.equal(out[0], a)


def test_expand_rejects_bad_input():
    with pytest.raises(ValueError, match="depth"):
        expand(torch.zeros(3), torch.zeros(3), 0)
    with pytest.raises(ValueError, match="shape"):
        expand(torch.zeros(3), torch.zeros(4), 2)


def test_expand_gradient(seeded):
    depth = 5
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(depth, 4, 3)
    (expand(a, b, depth) * w).sum().backward()
    torch.testing.assert_close(a.grad, w.sum(0))
    torch.testing.assert_close(b.grad, sum((l / depth) * w[l] for l in range(depth)))


def test_learngene_forward_expands_every_block_param(toy_arch, seeded, randomize):
    lg = randomize(Learngene(toy_arch))
    out = lg(4)
    assert set(out) == set(BLOCK_PARAMS)
    for name, t in out.items():
        a, b = lg.theta_a[module_key(name)], lg.theta_b[module_key(name)]
        assert torch.equal(torch.stack(t), expand(a, b, 4))


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_expand_layers_backward_matches_autograd(depth):
    """The Aux-Net's fused expand+unbind has a hand-written backward: check it against
    autograd through the plain formula, and with gradcheck in float64."""
    from tleg_dist.models.learngene import expand_layers

    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(depth, 3, 4, dtype=torch.float64)
    fused = sum((w * t).sum() for w, t in zip(weights, expand_layers(a, b, depth)))
    ga, gb = torch.autograd.grad(fused, (a, b))
    plain = sum((weights[l] * (a + l / depth * b)).sum() for l in range(depth))
    ra, rb = torch.autograd.grad(plain, (a, b))
    assert torch.allclose(ga, ra) and torch.allclose(gb, rb)
    assert torch.autograd.gradcheck(lambda x, y: expand_layers(x, y, depth), (a, b))


def test_learngene_without_qkv_bias(toy_arch):
    lg = Learngene(dataclasses.replace(toy_arch, qkv_bias=False))
    assert "attn.qkv.bias" not in lg(2)


# ---- initialisation --------------------------------------------------------------------

def test_learngene_init_follows_paper(seeded):
    arch = ViTArch.from_size("cpu-192")  # big enough for a std estimate within a few %
    lg = Learngene(arch)
    for name in lg.shapes:
        a, b = lg.theta_a[module_key(name)].detach(), lg.theta_b[module_key(name)].detach()
        if name.startswith("norm") and name.endswith(".weight"):
            assert torch.all(a == 1) and torch.all(b == 0), name
        elif name.endswith(".bias"):
            assert torch.all(a == 0) and torch.all(b == 0), name
        else:
            for t in (a, b):
                assert abs(t.std().item() - 0.02) < 0.002, (name, t.std().item())
                assert abs(t.mean().item()) < 0.002, name
                assert t.abs().max().item() <= 2.0  # trunc_normal's bounds
            assert not torch.equal(a, b), f"{name}: theta_A and theta_B drawn independently"


def test_aux_shared_init(seeded):
    aux = AuxNet(ViTArch.from_size("cpu-192"), depth=2)
    assert abs(aux.pos_embed.std().item() - 0.02) < 0.002
    assert abs(aux.head.weight.std().item() - 0.02) < 0.004
    assert torch.all(aux.head.bias == 0)
    assert torch.all(aux.fc_norm.weight == 1) and torch.all(aux.fc_norm.bias == 0)


def test_trainable_params_are_learngene_and_shared(toy_arch):
    aux = AuxNet(toy_arch, depth=6)
    names = {n for n, p in aux.named_parameters() if p.requires_grad}
    expected = {f"learngene.theta_{w}.{module_key(n)}" for n in BLOCK_PARAMS for w in "ab"}
    expected |= set(SHARED_KEYS + HEAD_KEYS)
    assert names == expected
    # The Aux-Net's size does not grow with its depth.
    assert sum(p.numel() for p in AuxNet(toy_arch, depth=12).parameters()) == \
        sum(p.numel() for p in aux.parameters())


@pytest.mark.parametrize("field", ["embed_dim", "num_heads", "patch_size", "img_size", "mlp_ratio", "num_classes"])
def test_arch_refuses_a_size_below_one_by_name(field):
    with pytest.raises(ValueError, match=f"{field}=0: must be > 0"):  # not a ZeroDivisionError
        ViTArch(**{field: 0})


@pytest.mark.parametrize("change, words", [
    ({"num_heads": "4"}, "W: num_heads='4' is not an integer"),
    ({"qkv_bias": 1}, "W: qkv_bias=1 is not true or false"),
    ({"mlp_ratio": None}, "W: mlp_ratio=None is not a number"),
    ({"img_size": 30}, "W: patch_size=4 does not divide img_size=30"),
    ({"embed_dim": 0}, "W: embed_dim=0: must be > 0"),
])
def test_arch_serialised_form_names_where_and_the_field(change, words):
    arch = ViTArch.from_size("cpu-64", mlp_ratio=2.5, qkv_bias=False)
    assert ViTArch.from_dict(arch.to_dict(), "W") == arch
    assert ViTArch.from_dict({**arch.to_dict(), "depth": 3}, "W") == arch  # a depth beside it is no field
    with pytest.raises(ValueError, match=f"^{re.escape(words)}$"):
        ViTArch.from_dict({**arch.to_dict(), **change}, "W")
    with pytest.raises(ValueError, match="^W: img_size is missing$"):
        ViTArch.from_dict({k: v for k, v in arch.to_dict().items() if k != "img_size"}, "W")


def test_shape_rules_are_spelt_once():
    assert check_depth(1) == 1
    with pytest.raises(ValueError, match="^aux depth must be >= 1, got 0$"):
        check_depth(0, "aux depth")
    assert size_fields("small")["embed_dim"] == 384
    with pytest.raises(ValueError, match="unknown size 'huge'; known: tiny, small"):
        ViTArch.from_size("huge")


def test_aux_rejects_depth_zero(toy_arch):
    with pytest.raises(ValueError, match="depth"):
        AuxNet(toy_arch, depth=0)


# ---- the Aux-Net computes timm's function ------------------------------------------------

@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("depth", [1, 2, 5])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_aux_forward_equals_timm(toy_arch, depth, in_chans, train, seeded, randomize):
    arch = dataclasses.replace(toy_arch, in_chans=in_chans)
    aux = randomize(AuxNet(arch, depth))
    vit = timm_twin(aux)
    aux.train(train), vit.train(train)
    x = images(arch)
    with torch.no_grad():
        torch.testing.assert_close(aux(x), vit(x), **TOL)


def test_aux_forward_equals_timm_with_drop_path(toy_arch, randomize):
    """Same stochastic-depth schedule and the same random draws, in the same order."""
    torch.manual_seed(0)
    aux = randomize(AuxNet(toy_arch, depth=4, drop_path_rate=0.5)).train()
    vit = timm_twin(aux, drop_path_rate=0.5).train()
    x = images(toy_arch, batch=8)
    torch.manual_seed(1)
    out_aux = aux(x)
    torch.manual_seed(1)
    out_vit = vit(x)
    torch.testing.assert_close(out_aux, out_vit, **TOL)


def test_aux_gradients_equal_timm_summed_over_layers(toy_arch, seeded, randomize):
    """dLoss/dtheta_A = sum_l g_l and dLoss/dtheta_B = sum_l (l/L) g_l, where g_l is
    the gradient of the timm ViT's layer-l weight at the expanded point."""
    depth = 4
    aux = randomize(AuxNet(toy_arch, depth))
    vit = timm_twin(aux)
    x, r = images(toy_arch), torch.randn(3, toy_arch.num_classes)
    (aux(x) * r).sum().backward()
    (vit(x) * r).sum().backward()
    vit_params = dict(vit.named_parameters())
    for name in BLOCK_PARAMS:
        g = [vit_params[f"blocks.{l}.{name}"].grad for l in range(depth)]
        want_a = sum(g)
        want_b = sum((l / depth) * g[l] for l in range(depth))
        torch.testing.assert_close(aux.learngene.theta_a[module_key(name)].grad, want_a, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(aux.learngene.theta_b[module_key(name)].grad, want_b, rtol=1e-4, atol=1e-6)
    aux_params = dict(aux.named_parameters())
    for k in SHARED_KEYS + HEAD_KEYS:
        torch.testing.assert_close(aux_params[k].grad, vit_params[k].grad, rtol=1e-4, atol=1e-6)


# ---- Des-Nets --------------------------------------------------------------------------

def test_des_net_at_aux_depth_reproduces_aux(toy_arch, seeded, randomize):
    aux = randomize(AuxNet(toy_arch, depth=3)).eval()
    des = build_des_net(toy_arch, 3).eval()
    left_fresh = load_des_state(des, des_state_from_learngene(*parts(aux), len(des.blocks)))
    assert left_fresh == []
    x = images(toy_arch)
    with torch.no_grad():
        torch.testing.assert_close(des(x), aux(x), **TOL)


def test_des_net_deeper_than_aux_uses_expansion(toy_arch, seeded, randomize):
    aux = randomize(AuxNet(toy_arch, depth=3))
    theta_a, theta_b, shared = parts(aux)
    des = build_des_net(toy_arch, 8)
    load_des_state(des, des_state_from_learngene(theta_a, theta_b, shared, len(des.blocks)))
    state = des.state_dict()
    for l in range(8):
        for name in BLOCK_PARAMS:
            torch.testing.assert_close(state[f"blocks.{l}.{name}"], theta_a[name] + (l / 8) * theta_b[name],
                                       rtol=1e-6, atol=1e-7)
    for k in SHARED_KEYS + HEAD_KEYS:
        assert torch.equal(state[k], shared[k]), k


def test_des_net_head_is_fresh_when_classes_differ(toy_arch, seeded, randomize):
    aux = randomize(AuxNet(toy_arch, depth=2))
    theta_a, theta_b, shared = parts(aux)
    other = dataclasses.replace(toy_arch, num_classes=toy_arch.num_classes + 3)
    des = build_des_net(other, 4)
    fresh = {k: v.clone() for k, v in des.state_dict().items() if k in HEAD_KEYS}
    left_fresh = load_des_state(des, des_state_from_learngene(theta_a, theta_b, shared, len(des.blocks)))
    assert sorted(left_fresh) == sorted(HEAD_KEYS)
    state = des.state_dict()
    for k in HEAD_KEYS:
        assert torch.equal(state[k], fresh[k]), f"{k} was touched"
    for k in SHARED_KEYS:
        assert torch.equal(state[k], shared[k]), k


def test_des_net_rejects_other_width(toy_arch, seeded):
    aux = AuxNet(toy_arch, depth=2)
    des = build_des_net(dataclasses.replace(toy_arch, embed_dim=16), 2)
    with pytest.raises(ValueError, match="shape"):
        load_des_state(des, des_state_from_learngene(*parts(aux), len(des.blocks)))


def heur_lg_model(arch: ViTArch, src_depth: int, depth: int, path, randomize, seed: int = 7):
    """(source state, scratch state with `seed`, the heur_lg Des-Net's state with `seed`)."""
    from safetensors.torch import save_file

    from tleg_dist.config import from_dict
    from tleg_dist.training.model_factory import build_model

    src = randomize(build_des_net(arch, src_depth)).state_dict()
    save_file({k: v.contiguous() for k, v in src.items()}, str(path))
    cfg = from_dict({"stage": "finetune",
                     "model": {**arch.to_dict(), "depth": depth, "init": "heur_lg", "pretrained": str(path)}})
    torch.manual_seed(seed)
    scratch = build_des_net(arch, depth).state_dict()
    torch.manual_seed(seed)
    return src, scratch, build_model(cfg).state_dict()


@pytest.mark.parametrize("depth, k", [(2, 1), (6, 2), (8, 2)])
def test_heur_lg_inherits_the_last_blocks(toy_arch, seeded, randomize, tmp_path, caplog, depth, k):
    with caplog.at_level(logging.INFO, logger="tleg_dist.training.model_factory"):
        src, scratch, des = heur_lg_model(toy_arch, 8, depth, tmp_path / "vit.safetensors", randomize)
    assert {n: v.shape for n, v in des.items()} == {n: v.shape for n, v in scratch.items()}
    for key, v in des.items():
        block = re.match(r"blocks\.(\d+)\.(.+)", key)
        if block is None:  # patch/pos embed, norms and (same class count) the head come along
            assert torch.equal(v, src[key]), key
        elif int(block[1]) >= depth - k:  # Des-Net block depth - k + j <- source block 8 - k + j
            assert torch.equal(v, src[f"blocks.{int(block[1]) - depth + 8}.{block[2]}"]), key
        else:  # the lower blocks keep the seeded random init
            assert torch.equal(v, scratch[key]) and not torch.equal(v, src[key]), key
    assert f"blocks {list(range(depth - k, depth))} from blocks {list(range(8 - k, 8))}" in caplog.text


def test_heur_lg_needs_enough_source_blocks(toy_arch, seeded, randomize, tmp_path):
    from tleg_dist.training.model_factory import InitError

    with pytest.raises(InitError, match="needs a ViT of >= 2 blocks for depth 8, it has 1"):
        heur_lg_model(toy_arch, 1, 8, tmp_path / "vit.safetensors", randomize)


# ---- the named sizes -------------------------------------------------------------------

CPU_SIZES = [s for s in SIZES if s.startswith("cpu-")]
PAPER_SIZES = ["tiny", "small", "base"]


@pytest.mark.parametrize("size", CPU_SIZES)
def test_cpu_sizes_forward_backward(size, seeded):
    arch = ViTArch.from_size(size)
    x, y = images(arch, batch=2), torch.tensor([0, 1])
    for model in (AuxNet(arch, depth=2, drop_path_rate=0.1), build_des_net(arch, 2, drop_path_rate=0.1)):
        out = model.train()(x)
        assert out.shape == (2, arch.num_classes)
        F.cross_entropy(out, y).backward()
        for n, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("size", PAPER_SIZES)
def test_paper_sizes_build_with_timm_shapes(size, seeded):
    arch = ViTArch.from_size(size)
    assert (arch.img_size, arch.patch_size) == (224, 16)
    aux = AuxNet(arch, depth=1)
    vit_state = build_des_net(arch, 2).state_dict()
    shapes = block_param_shapes(arch)
    assert set(shapes) == set(BLOCK_PARAMS)
    for name, shape in shapes.items():
        assert tuple(vit_state[f"blocks.1.{name}"].shape) == shape, name
        assert tuple(aux.learngene.theta_a[module_key(name)].shape) == shape, name
    aux_state = aux.state_dict()
    for k in SHARED_KEYS + HEAD_KEYS:
        assert aux_state[k].shape == vit_state[k].shape, k
    assert aux_state["pos_embed"].shape == (1, 196, arch.embed_dim)


def test_tiny_forward_shape(seeded):
    arch = ViTArch.from_size("tiny")
    with torch.no_grad():
        assert AuxNet(arch, depth=2).eval()(images(arch, batch=1)).shape == (1, 1000)
