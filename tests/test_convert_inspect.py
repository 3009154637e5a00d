"""`convert inspect` and the storage arithmetic, against counts done by hand here."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.convert import main, storage
from tleg_dist.convert.inspect import describe
from tleg_dist.models.arch import ViTArch
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.keys import aux_to_file

# toy_arch (conftest): embed 32, 4 heads, mlp 2.0 -> hidden 64, 8 px / patch 4 -> 4 tokens, 1 channel, 5 classes.
TOY_BLOCK = (2 * 32) + (32 * 96 + 96) + (32 * 32 + 32) + (2 * 32) + (32 * 64 + 64) + (64 * 32 + 32)  # 8544
TOY_SHARED = (32 * 1 * 4 * 4 + 32) + (4 * 32) + (2 * 32) + (5 * 32 + 5)  # patch, pos, fc_norm, head = 901
# ViT-S/16 at 224 px, 1000 classes, no class token: 196 tokens, hidden 1536.
S_BLOCK = 2 * 384 + (384 * 1152 + 1152) + (384 * 384 + 384) + 2 * 384 + (384 * 1536 + 1536) + (1536 * 384 + 384)
S_SHARED = (384 * 3 * 16 * 16 + 384) + 196 * 384 + 2 * 384 + (1000 * 384 + 1000)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_arithmetic_equals_hand_count_and_timm(toy_arch):
    assert (TOY_BLOCK, TOY_SHARED, S_BLOCK, S_SHARED) == (8544, 901, 1_774_464, 756_328)
    assert storage.block_params(toy_arch) == TOY_BLOCK
    assert storage.learngene_params(toy_arch) == 2 * TOY_BLOCK + TOY_SHARED
    assert n_params(AuxNet(toy_arch, 3)) == 2 * TOY_BLOCK + TOY_SHARED  # the learngene is the Aux-Net's params
    small = ViTArch.from_size("small")
    assert storage.learngene_params(small) == 2 * S_BLOCK + S_SHARED
    for depth in (1, 12):
        with torch.device("meta"):
            assert n_params(VisionTransformer(**toy_arch.timm_kwargs(depth))) == depth * TOY_BLOCK + TOY_SHARED
            assert n_params(VisionTransformer(**small.timm_kwargs(depth))) == depth * S_BLOCK + S_SHARED


def test_storage_comparison_figures(toy_arch):
    c = storage.comparison(toy_arch, aux_depth=3, depths=(1, 2, 3, 4))
    lg = 2 * TOY_BLOCK + TOY_SHARED
    per_depth = (1 + 2 + 3 + 4) * TOY_BLOCK + 4 * TOY_SHARED
    assert (c["learngene"], c["per_depth_total"], c["aux_model"]) == (lg, per_depth, 3 * TOY_BLOCK + TOY_SHARED)
    assert c["ratio_per_depth"] == pytest.approx(per_depth / lg) and c["ratio_aux_model"] == pytest.approx(
        (3 * TOY_BLOCK + TOY_SHARED) / lg)
    s = storage.paper_comparisons()["small"]  # depths 1..12, aux depth 12
    assert s["per_depth_total"] == 78 * S_BLOCK + 12 * S_SHARED
    assert s["ratio_aux_model"] == pytest.approx((12 * S_BLOCK + S_SHARED) / (2 * S_BLOCK + S_SHARED))


def test_inspect_learngene(toy_arch, tmp_path, capsys, seeded):
    path = tmp_path / "lg.safetensors"
    learngene_file.save(path, aux_to_file(AuxNet(toy_arch, 3).state_dict()), toy_arch, 3)
    info = describe(path, depths=(2, 5))
    assert info["format"] == "tleg-learngene" and info["aux_depth"] == 3
    assert info["params"] == 2 * TOY_BLOCK + TOY_SHARED and info["size_bytes"] == path.stat().st_size
    assert info["storage"]["per_depth_total"] == 7 * TOY_BLOCK + 2 * TOY_SHARED
    assert info["paper"]["small"]["learngene"] == 2 * S_BLOCK + S_SHARED
    assert main(["inspect", str(path), "--depths", "2", "5"]) == 0
    text = capsys.readouterr().out
    lg = 2 * TOY_BLOCK + TOY_SHARED
    assert f"parameters: {lg:,} in 31 tensors" in text
    assert f"2 x {TOY_BLOCK:,} + {TOY_SHARED:,} = {lg:,}" in text  # the arithmetic is shown
    assert f"-> {(7 * TOY_BLOCK + 2 * TOY_SHARED) / lg:.2f}x" in text
    assert "the paper's Small" in text and f"{2 * S_BLOCK + S_SHARED:,}" in text
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == lg


def test_inspect_des_net_export_and_checkpoint(toy_arch, tmp_path, seeded):
    lg = tmp_path / "lg.safetensors"
    learngene_file.save(lg, aux_to_file(AuxNet(toy_arch, 3).state_dict()), toy_arch, 3)
    des = tmp_path / "des"
    assert main(["expand", str(lg), "--depth", "5", "--out", str(des)]) == 0
    info = describe(des)
    assert info["format"] == "tleg-export" and info["architecture"] == "vit_small_patch16_224"
    assert info["params"] == 5 * TOY_BLOCK + TOY_SHARED and info["timm_kwargs"]["depth"] == 5
    assert info["stage"] == "expanded"
    # A bare state dict: counted from its header, described as what it is (a .json beside it says nothing).
    kwargs = toy_arch.timm_kwargs(2)
    save_file(VisionTransformer(**kwargs).state_dict(), str(tmp_path / "weights.safetensors"))
    (tmp_path / "weights.json").write_text(json.dumps(kwargs))
    info = describe(tmp_path / "weights.safetensors")
    assert "timm_kwargs" not in info and info["params"] == 2 * TOY_BLOCK + TOY_SHARED
    assert info["format"] == "safetensors (no tleg format metadata)"
    lg_dir = tmp_path / "lg_dir"
    learngene_file.save_folder(lg_dir, learngene_file.load(lg).tensors, toy_arch, 3, card=lambda c: "")
    assert describe(lg_dir)["format"] == "tleg-learngene" and describe(lg_dir)["aux_depth"] == 3
    tag_dir = tmp_path / "run" / "checkpoints" / "step_00000007"
    tag_dir.mkdir(parents=True)
    (tag_dir / "mp_rank_00_model_states.pt").write_bytes(b"never unpickled by inspect")
    meta = {"format": "tleg-checkpoint", "format_version": "1", "stage": "finetune", "arch": toy_arch.to_dict(),
            "depth": 2, "global_step": 7, "zero_stage": 2, "world_size": 2}
    (tag_dir / "tleg_meta.json").write_text(json.dumps(meta))
    info = describe(tmp_path / "run")
    assert info["stage"] == "finetune" and info["global_step"] == 7 and info["path"] == str(tag_dir)


def test_inspect_errors(tmp_path, capsys):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 100)
    assert main(["inspect", str(junk)]) == 1
    assert str(junk) in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "nope")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    assert main(["inspect", str(tmp_path / "d")]) == 1
    assert "not a DeepSpeed checkpoint" in capsys.readouterr().err


def test_checkpoint_marker_with_a_zero_in_its_architecture(toy_arch, tmp_path, capsys):
    """One line naming the marker, not a ZeroDivisionError traceback from ViTArch."""
    tag_dir = tmp_path / "run" / "checkpoints" / "step_00000007"
    tag_dir.mkdir(parents=True)
    meta = {"format": "tleg-checkpoint", "format_version": "1", "stage": "learngene",
            "arch": {**toy_arch.to_dict(), "num_heads": 0}, "depth": 2, "global_step": 7}
    (tag_dir / "tleg_meta.json").write_text(json.dumps(meta))
    assert main(["inspect", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert str(tag_dir / "tleg_meta.json") in err and "bad architecture metadata" in err, err
