"""artifacts/export.py, the one writer: the same provenance keys whoever writes a learngene or a model
folder, cards that take the architecture from its one serialised form, and timm's loader reading back
the recorded preprocessing (no DeepSpeed)."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors import safe_open

from tleg_dist.artifacts import export
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.artifacts.provenance import CHECKPOINT, TRAINER, Provenance
from tleg_dist.convert import main
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.keys import aux_to_file

PRE = {"interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center", "mean": [0.3], "std": [0.2]}


@pytest.fixture
def tensors(toy_arch, seeded):
    return aux_to_file(AuxNet(toy_arch, 3).state_dict())


def header(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_trainer_and_converter_write_the_same_learngene_keys(tmp_path, tensors, toy_arch):
    """A trainer's export knows its val top-1; a converter without the run's summary does not: same keys."""
    ours = Provenance(TRAINER, "step_00000004", 4, 61.25)
    theirs = Provenance(CHECKPOINT, "step_00000004", 4, None)
    files = [export.write_learngene(tmp_path / name, tensors, toy_arch, 3, provenance=p, preprocessing=PRE)
             for name, p in (("a", ours), ("b", theirs))]
    metas = [header(f) for f in files]
    assert metas[0].keys() == metas[1].keys() >= {"source", "source_tag", "global_step", "dtype", "val_top1",
                                                  learngene_file.PREPROCESSING}
    assert (metas[0]["val_top1"], metas[1]["val_top1"], metas[0]["dtype"]) == ("61.25", "null", "fp32")
    configs = [json.loads((f.parent / "config.json").read_text()) for f in files]
    assert configs[0].keys() == configs[1].keys() and configs[0]["global_step"] == 4
    assert configs[0]["val_top1"] == 61.25 and configs[1]["val_top1"] is None
    assert learngene_file.preprocessing(learngene_file.load(files[0])) == PRE
    single = export.write_learngene(tmp_path / "c.safetensors", tensors, toy_arch, 3, provenance=ours,
                                    preprocessing=PRE)
    assert header(single) == metas[0] and not (tmp_path / "c").exists()  # a file, not a folder


def test_model_folder_card_and_config_take_every_architecture_field(tmp_path, toy_arch, seeded):
    from tleg_dist.models.des_net import build_des_net

    state = build_des_net(toy_arch, 2).state_dict()
    export.write_model(tmp_path / "m", state, toy_arch, 2, stage="finetune", preprocessing=PRE,
                       provenance=Provenance(TRAINER, "step_00000004", 4, 50.0))
    card = (tmp_path / "m" / "README.md").read_text()
    for k, v in {**toy_arch.to_dict(), "depth": 2}.items():
        assert f"  - {k}: {v}\n" in card, k  # mlp_ratio and qkv_bias included
    tleg = json.loads((tmp_path / "m" / "config.json").read_text())["tleg"]
    assert tleg == {"format": "tleg-export", "format_version": "1", "stage": "finetune", "depth": 2,
                    "source": TRAINER, "source_tag": "step_00000004", "global_step": 4, "val_top1": 50.0,
                    "dtype": "fp32", "learngene": None}
    model = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True)
    assert timm.data.resolve_data_config(model=model) == {"input_size": (1, 8, 8), **PRE}


@pytest.mark.parametrize("in_chans, mean", [(3, [0.485, 0.456, 0.406]), (1, [(0.485 + 0.456 + 0.406) / 3])])
def test_default_preprocessing_is_imagenets_per_model_channel(in_chans, mean):
    pre = export.default_preprocessing(in_chans)
    assert pre["mean"] == pytest.approx(mean) and len(pre["std"]) == in_chans
    assert (pre["interpolation"], pre["crop_pct"], pre["crop_mode"]) == ("bicubic", 0.875, "center")


def test_expand_of_a_learngene_without_preprocessing_uses_the_default(tmp_path, tensors, toy_arch):
    lg = learngene_file.save(tmp_path / "old.safetensors", tensors, toy_arch, 3)  # records no preprocessing
    assert main(["expand", str(lg), "--depth", "2", "--out", str(tmp_path / "des")]) == 0
    cfg = json.loads((tmp_path / "des" / "config.json").read_text())
    assert {k: cfg["pretrained_cfg"][k] for k in PRE} == export.default_preprocessing(1)
    assert (cfg["tleg"]["source"], cfg["tleg"]["source_tag"], cfg["tleg"]["val_top1"]) == ("learngene", None, None)


def test_teacher_weights_say_what_they_belong_to(tmp_path):
    path = export.write_teacher(tmp_path / "t.safetensors", {"w": torch.zeros(2)}, model="resnet10t",
                                num_classes=5, in_chans=1)
    assert header(path) == {"stage": "teacher", "model": "resnet10t", "num_classes": "5", "in_chans": "1"}
