"""Key adapters between the Aux-Net, the learngene file and timm Des-Nets, both ways."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.des_net import build_des_net, des_state_from_learngene
from tleg_dist.models.keys import (SHARED_FILE_KEYS, aux_key, aux_to_file, file_key, file_to_aux,
                                   split_file_tensors)
from tleg_dist.models.learngene import BLOCK_PARAMS, expand


def test_file_key_names_follow_the_public_format():
    assert file_key("attn.qkv.weight", "a") == "learngene.attn.qkv.weight.theta_a"
    assert file_key("norm1.bias", "b") == "learngene.norm1.bias.theta_b"
    assert aux_key("attn.qkv.weight", "b") == "learngene.theta_b.attn_qkv_weight"
    assert set(SHARED_FILE_KEYS) == {"patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed",
                                     "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_aux_to_file_to_aux_is_identity(toy_arch, qkv_bias, seeded, randomize):
    arch = dataclasses.replace(toy_arch, qkv_bias=qkv_bias)
    aux_state = randomize(AuxNet(arch, depth=3)).state_dict()
    tensors = aux_to_file(aux_state)
    expected = {file_key(n, w) for n in BLOCK_PARAMS for w in "ab"} | set(SHARED_FILE_KEYS)
    if not qkv_bias:
        expected -= {file_key("attn.qkv.bias", "a"), file_key("attn.qkv.bias", "b")}
    assert set(tensors) == expected
    back = file_to_aux(tensors)
    assert set(back) == set(aux_state)
    for k, v in aux_state.items():
        assert torch.equal(back[k], v), k
    # ... and it loads strictly into a fresh Aux-Net.
    fresh = AuxNet(arch, depth=3)
    fresh.load_state_dict(back, strict=True)


def test_file_to_aux_to_file_is_identity(toy_arch, seeded, randomize):
    tensors = aux_to_file(randomize(AuxNet(toy_arch, depth=2)).state_dict())
    again = aux_to_file(file_to_aux(tensors))
    assert set(again) == set(tensors)
    assert all(torch.equal(again[k], tensors[k]) for k in tensors)


def test_aux_to_file_rejects_unknown_keys(toy_arch):
    state = dict(AuxNet(toy_arch, depth=2).state_dict())
    state["blocks.0.attn.qkv.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="blocks.0.attn.qkv.weight"):
        aux_to_file(state)


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_file_to_des_via_expand(toy_arch, depth, seeded, randomize):
    tensors = aux_to_file(randomize(AuxNet(toy_arch, depth=3)).state_dict())
    theta_a, theta_b, shared = split_file_tensors(tensors)
    assert set(theta_a) == set(theta_b) == set(BLOCK_PARAMS)
    state = des_state_from_learngene(theta_a, theta_b, shared, depth)
    des = build_des_net(toy_arch, depth)
    des.load_state_dict(state, strict=True)  # every timm key, nothing else
    for name in BLOCK_PARAMS:
        want = expand(tensors[file_key(name, "a")], tensors[file_key(name, "b")], depth)
        for l in range(depth):
            assert torch.equal(state[f"blocks.{l}.{name}"], want[l]), (l, name)
    for k in SHARED_FILE_KEYS:
        assert torch.equal(state[k], tensors[k]), k


def test_des_state_tensors_do_not_alias(toy_arch, seeded):
    """Each layer's tensor is its own copy: safetensors refuses shared storage."""
    theta_a, theta_b, shared = split_file_tensors(aux_to_file(AuxNet(toy_arch, depth=2).state_dict()))
    state = des_state_from_learngene(theta_a, theta_b, shared, 3)
    ptrs = [state[f"blocks.{l}.mlp.fc1.weight"].data_ptr() for l in range(3)]
    assert len(set(ptrs)) == 3
