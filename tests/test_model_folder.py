"""The timm model folder (no DeepSpeed): timm's own loader rebuilds it, and every bad folder is
refused with one line naming the file at fault."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from tleg_dist.artifacts import model_folder as mf
from tleg_dist.models.arch import ViTArch

PRE = {"interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center", "mean": [0.2, 0.3, 0.4],
       "std": [0.5, 0.6, 0.7]}


@pytest.fixture
def rgb_arch(toy_arch):
    return dataclasses.replace(toy_arch, in_chans=3)


@pytest.fixture
def folder(tmp_path, rgb_arch, seeded, randomize):
    model = randomize(VisionTransformer(**rgb_arch.timm_kwargs(2))).eval()
    mf.write(tmp_path / "m", model.state_dict(), rgb_arch, 2, preprocessing=PRE, card="# card\n", info={"depth": 2})
    return tmp_path / "m", model


def test_timm_rebuilds_it_strictly_with_its_preprocessing(folder):
    path, model = folder
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_args"]["class_token"] is False and cfg["model_args"]["global_pool"] == "avg"
    assert cfg["model_args"]["depth"] == 2 and cfg["model_args"]["embed_dim"] == 32 and cfg["num_classes"] == 5
    assert cfg["pretrained_cfg"]["mean"] == [0.2, 0.3, 0.4] and cfg["pretrained_cfg"]["input_size"] == [3, 8, 8]
    assert cfg["tleg"] == {"format": mf.FORMAT, "format_version": mf.FORMAT_VERSION, "depth": 2}
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        for loaded in (timm.create_model(f"local-dir:{path}", pretrained=True).eval(), mf.load(path)):
            assert torch.equal(loaded(x), model(x))
            assert timm.data.resolve_data_config(model=loaded) == {
                "input_size": (3, 8, 8), "interpolation": "bicubic", "mean": [0.2, 0.3, 0.4],
                "std": [0.5, 0.6, 0.7], "crop_pct": 0.875, "crop_mode": "center"}


def test_config_json_is_the_architectures_one_serialised_form(folder, rgb_arch):
    """model_args = ViTArch.to_dict() + depth + the Des-Net's fixed choices, and it reads back as the arch."""
    cfg = json.loads((folder[0] / "config.json").read_text())
    assert cfg["model_args"] == {**rgb_arch.to_dict(), "depth": 2, "class_token": False, "global_pool": "avg"}
    assert ViTArch.from_dict(cfg["model_args"], "config.json") == rgb_arch
    assert set(cfg) == {"architecture", "num_classes", "model_args", "pretrained_cfg", "tleg"}


def test_a_state_that_does_not_fit_is_not_written(tmp_path, rgb_arch):
    state = VisionTransformer(**rgb_arch.timm_kwargs(3)).state_dict()
    with pytest.raises(mf.ModelFolderError, match=r"here: does not fit .* unexpected \['blocks.2."):
        mf.write(tmp_path / "m", state, rgb_arch, 2, preprocessing=PRE, card="", where="here")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("change, words", [
    ({"mean": [0.5]}, "preprocessing mean is [0.5], expected 3 value(s)"),
    ({"resize": 32}, "needs exactly interpolation, crop_pct, crop_mode, mean, std"),
])
def test_preprocessing_that_does_not_fit_the_model_is_not_written(tmp_path, rgb_arch, change, words):
    state = VisionTransformer(**rgb_arch.timm_kwargs(2)).state_dict()
    with pytest.raises(mf.ModelFolderError, match="here: .*" + re.escape(words)):
        mf.write(tmp_path / "m", state, rgb_arch, 2, preprocessing={**PRE, **change}, card="", where="here")
    assert not (tmp_path / "m").exists()


def test_a_write_that_fails_half_way_leaves_no_folder_behind(tmp_path, rgb_arch, monkeypatch):
    monkeypatch.setattr(mf, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        mf.write(tmp_path / "a" / "m", VisionTransformer(**rgb_arch.timm_kwargs(2)).state_dict(), rgb_arch, 2,
                 preprocessing=PRE, card="")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the parent it created


def _edit(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, **changes}))


@pytest.mark.parametrize("damage, words", [
    (lambda p: (p / "config.json").unlink(), ["config.json: missing"]),
    (lambda p: (p / "config.json").write_text("{oops"), ["config.json: not readable JSON"]),
    (lambda p: (p / "config.json").write_text("[1, 2]"), ["config.json: expected a JSON object"]),
    (lambda p: _edit(p, architecture="vit_nonexistent"), ["config.json: 'architecture' is 'vit_nonexistent'"]),
    (lambda p: _edit(p, model_args=None), ["config.json: 'model_args' is missing"]),
    (lambda p: (p / "model.safetensors").unlink(), ["model.safetensors: missing"]),
    (lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:200]),
     ["timm cannot build the model", "model.safetensors"]),
    # A config that disagrees with its weights: timm's strict load, reported on one line.
    (lambda p: _edit(p, model_args={**json.loads((p / "config.json").read_text())["model_args"], "depth": 3}),
     ["timm cannot build the model", "Missing key(s)", "blocks.2."]),
])
def test_bad_folders_get_one_line_naming_the_culprit(folder, damage, words):
    path, _ = folder
    damage(path)
    with pytest.raises(mf.ModelFolderError) as e:
        mf.load(f"local-dir:{path}")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg


def test_not_a_folder(tmp_path):
    with pytest.raises(mf.ModelFolderError, match="nowhere: not a folder"):
        mf.load(tmp_path / "nowhere")
