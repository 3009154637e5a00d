"""A real fine-tune run (DeepSpeed, 1 CPU process, an ImageFolder with its own statistics) ends
with a model folder that timm loads in one call: same logits as the run's checkpoint, the run's
eval transform from `resolve_data_config`, the run's val accuracy, and the README's snippet."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from _launch import ROOT, run_train, summary
from PIL import Image

from tleg_dist import config as config_lib
from tleg_dist.artifacts import cards
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.convert import zero
from tleg_dist.data import build_data
from tleg_dist.data.imagefolder import scan
from tleg_dist.models.arch import ViTArch
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.keys import aux_to_file

pytestmark = pytest.mark.slow  # one real DeepSpeed run, shared by the module
# Grey model, one-value statistics: the path where the loader converts L -> RGB -> channel 0.
ARCH = ViTArch(embed_dim=32, num_heads=2, mlp_ratio=2.0, patch_size=4, img_size=16, in_chans=1, num_classes=3)
MEAN, STD = 0.4, 0.25
# The README's load snippet runs from a folder where this is the run (a symlink) and SAMPLE an image.
README_RUN, SAMPLE = Path("runs/cpu/finetune"), "shirt.png"


def make_tree(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for split, n in (("train", 4), ("val", 3)):
        for c in ("coat", "shirt", "shoe"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):  # non-square RGB photos of varied sizes: resize and crop both matter
                pixels = rng.integers(0, 256, (20 + 3 * i, 27, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export_run")
    torch.manual_seed(0)
    lg = learngene_file.save(tmp / "lg.safetensors", aux_to_file(AuxNet(ARCH, 3).state_dict()), ARCH, 3)
    arch = ",".join(f"{k}: {v}" for k, v in ARCH.to_dict().items() if k != "mlp_ratio")
    out = tmp / "run"
    run_train(["--config", "configs/cpu/tiny_finetune.yaml", f"output_dir={out}",
               f"model={{{arch}, mlp_ratio: 2.0, depth: 2, init: learngene, learngene: {lg}}}",
               f"data={{format: imagefolder, root: {make_tree(tmp / 'data')}, mean: [{MEAN}], std: [{STD}], "
               f"batch_size: 4, eval_batch_size: 4}}", "train.epochs=1", "checkpoint.every_steps=null"])
    return out


def loaded(run: Path):
    return timm.create_model(f"local-dir:{run / 'model'}", pretrained=True).eval()


def test_the_run_folder_holds_a_model_folder_with_card(run):
    folder = run / "model"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    args, pre = cfg["model_args"], cfg["pretrained_cfg"]
    assert (args["depth"], args["embed_dim"], args["class_token"], args["global_pool"]) == (2, 32, False, "avg")
    assert (pre["mean"], pre["std"], pre["input_size"], cfg["num_classes"]) == ([MEAN], [STD], [1, 16, 16], 3)
    card, s = (folder / "README.md").read_text(), summary(run)
    lg = config_lib.load(run / "config.yaml").model.learngene
    assert cards.sha256(lg) in card and "aux_depth: 3" in card and "data.format: imagefolder" in card
    assert f"val_top1: {round(s['val_top1'], 4)}" in card and "## Training recipe" in card
    assert s["files"]["model"] == str(folder)


def test_timm_local_dir_gives_the_checkpoints_logits(run):
    """The reference is the run's last DeepSpeed checkpoint, consolidated apart from the export."""
    ckpt = zero.open_checkpoint(run / "checkpoints")
    reference = timm.models.vision_transformer.VisionTransformer(**ARCH.timm_kwargs(2)).eval()
    reference.load_state_dict(zero.consolidate(ckpt, allow_pickle=False), strict=True)
    x = torch.randn(5, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(run)(x), reference(x))


def test_resolve_data_config_reproduces_the_runs_eval_pipeline(run):
    model = loaded(run)
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    cfg = config_lib.load(run / "config.yaml")
    data = build_data(cfg.data, cfg.model.arch(), rank=0, world_size=1, seed=cfg.seed)
    names, _, _ = scan(cfg.data.root / "train")
    _, paths, labels = scan(cfg.data.root / "val", names)
    run_x = torch.cat([data.prepare(x) for x, _ in data.val])  # normalised on the device, as in training
    timm_x = torch.stack([transform(Image.open(p).convert("L")) for p in paths])
    assert torch.equal(timm_x, run_x)
    with torch.no_grad():  # and so the loaded model scores what the run reported
        top1 = (model(timm_x).argmax(-1) == labels).float().mean().item() * 100
    assert top1 == pytest.approx(summary(run)["val_top1"], abs=1e-4)


def readme_load_snippet() -> str:
    """The ```python block after the README's "tested by tests/test_export_run.py" marker."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- tested by tests/test_export_run\.py[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert found, "README.md lost its marked load snippet"
    return found.group(1)


def test_readme_snippet_runs_verbatim(run, tmp_path, capsys):
    code = readme_load_snippet()
    assert f'"local-dir:{README_RUN}/model"' in code and SAMPLE in code
    (tmp_path / README_RUN).parent.mkdir(parents=True)
    (tmp_path / README_RUN).symlink_to(run)
    Image.open(next((run.parent / "data" / "val" / "shirt").iterdir())).save(tmp_path / SAMPLE)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert "tensor(" in capsys.readouterr().out
