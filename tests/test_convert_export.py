"""`convert export`: fine-tuned Des-Net checkpoints -> timm model folders that load strictly
and compute what the engine computed; plus the paper-size timm one-liner."""

from __future__ import annotations

import json
import shutil

import pytest
import timm
import torch
from safetensors.torch import load_file
from test_convert_ckpts import CASES, STEPS, ckpts, tag, trainer_runs  # noqa: F401 (fixtures)
from test_convert_learngene import assert_fails
from timm.models.vision_transformer import VisionTransformer

from tleg_dist.artifacts import model_folder
from tleg_dist.artifacts.export import default_preprocessing
from tleg_dist.convert import main
from tleg_dist.models.arch import ViTArch

pytestmark = pytest.mark.slow  # real multi-process DeepSpeed runs (shared, once per session)
DES_CASES = [n for n, c in CASES.items() if c[0] == "finetune"]


@pytest.mark.parametrize("name", DES_CASES)
def test_export_loads_strictly_and_matches_engine(ckpts, tmp_path, name):
    out = tmp_path / "export"
    assert main(["export", str(ckpts / name / "checkpoints"), "--out", str(out)]) == 0
    ref = load_file(str(ckpts / name / "reference.safetensors"))
    cfg = json.loads((out / "config.json").read_text())
    state = load_file(str(out / "model.safetensors"))
    strict = VisionTransformer(**cfg["model_args"])
    strict.load_state_dict(state, strict=True)
    for k, v in state.items():
        assert torch.equal(v, ref[f"param.{k}"]), k
    assert cfg["pretrained_cfg"]["input_size"] == [1, 8, 8] and cfg["num_classes"] == 5
    assert cfg["tleg"]["source_tag"] == tag(STEPS) and cfg["tleg"]["depth"] == cfg["model_args"]["depth"]
    overlay = dict(file=str(out / "model.safetensors"), **cfg["pretrained_cfg"])
    assert "Exported from checkpoint" in (out / "README.md").read_text()
    models = {
        "model_folder.load": model_folder.load(out),
        "timm local-dir": timm.create_model(f"local-dir:{out}", pretrained=True),
        "timm overlay": timm.create_model(cfg["architecture"], pretrained=True, pretrained_cfg_overlay=overlay,
                                          **cfg["model_args"]),
    }
    for how, model in models.items():
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(ref["x"]), ref["y"], atol=1e-5, rtol=0, msg=how)


def test_real_trainer_checkpoint_exports_the_trainers_final_model(trainer_runs, tmp_path):
    """The converter's folder from the last checkpoint = the trainer's own RUN/model folder."""
    run = trainer_runs / "finetune"
    assert main(["export", str(run), "--out", str(tmp_path / "exp")]) == 0
    final = load_file(str(run / "model" / "model.safetensors"))
    ours, theirs = (json.loads((d / "config.json").read_text()) for d in (tmp_path / "exp", run / "model"))
    assert ours["model_args"] == theirs["model_args"] and ours["pretrained_cfg"] == theirs["pretrained_cfg"]
    state = model_folder.load(tmp_path / "exp").state_dict()
    assert state.keys() == final.keys()
    for k, v in final.items():
        assert torch.equal(state[k], v), k
    assert ours["tleg"].keys() == theirs["tleg"].keys()  # one provenance record, whoever wrote the folder
    assert {k: v for k, v in ours["tleg"].items() if k != "source"} == \
        {k: v for k, v in theirs["tleg"].items() if k != "source"}
    # The run's "weights" artefact is the model folder's file: nothing else is written beside it.
    assert json.loads((run / "summary.json").read_text())["files"] == {
        "model": str(run / "model"), "weights": str(run / "model" / "model.safetensors")}


def test_paper_size_loads_with_the_timm_one_liner(tmp_path):
    """ViT-S width (depth cut to 2 to stay fast): timm's own vit_small name + the file."""
    kwargs = ViTArch.from_size("small").timm_kwargs(2)
    torch.manual_seed(0)
    model = VisionTransformer(**kwargs).eval()
    model_folder.write(tmp_path / "vit_s", model.state_dict(), ViTArch.from_size("small"), 2, card="",
                       preprocessing=default_preprocessing(3))
    loaded = timm.create_model("vit_small_patch16_224", pretrained=True, **kwargs,
                               pretrained_cfg_overlay=dict(file=str(tmp_path / "vit_s" / "model.safetensors")))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(model_folder.load(tmp_path / "vit_s")(x), model(x), atol=1e-5, rtol=0)
    assert json.loads((tmp_path / "vit_s" / "config.json").read_text())["architecture"] == "vit_small_patch16_224"


def test_export_errors(ckpts, tmp_path, capsys):
    out = tmp_path / "exp"
    assert_fails(capsys, out, [ckpts / "aux_z1_r1" / "checkpoints" / tag(STEPS), "learngene-stage"],
                 "export", ckpts / "aux_z1_r1" / "checkpoints", "--out", out)
    bad = tmp_path / "bad"
    shutil.copytree(ckpts / "des_z2_r1", bad)
    meta_file = bad / "checkpoints" / tag(STEPS) / "tleg_meta.json"
    meta = json.loads(meta_file.read_text())
    meta["depth"] += 1  # the checkpoint holds fewer blocks than its metadata claims
    meta_file.write_text(json.dumps(meta))
    assert_fails(capsys, out, [meta_file.parent, "missing", "blocks.2."], "export", bad / "checkpoints", "--out", out)
    meta["depth"] -= 1
    meta["arch"]["embed_dim"] = 64
    meta_file.write_text(json.dumps(meta))
    assert_fails(capsys, out, [meta_file.parent, "mismatched shapes"], "export", bad / "checkpoints", "--out", out)


def test_export_refuses_to_overwrite(ckpts, tmp_path, capsys):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert main(["export", str(ckpts / "des_z2_r1" / "checkpoints"), "--out", str(out)]) == 1
    assert "--force" in capsys.readouterr().err and (out / "config.json").read_text() == "{}"
    assert not (out / "model.safetensors").exists()
    assert main(["export", str(ckpts / "des_z2_r1" / "checkpoints"), "--out", str(out), "--force"]) == 0
    model_folder.load(out)
