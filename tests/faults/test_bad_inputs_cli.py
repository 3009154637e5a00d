"""Bad inputs met by a real trainer process: a clear error naming the culprit, before training,
with nothing written that a later run could mistake for progress."""

from __future__ import annotations

import subprocess
import sys

import timm
import yaml
from fault_helpers import RECIPE, REPO, base_env, run, write_recipe
from safetensors.torch import save_file

TIMEOUT = 300


def assert_nothing_trained(out):
    assert not (out / "checkpoints").exists()
    assert not (out / "metrics.jsonl").exists()


def test_bad_recipe_exits_2_naming_every_bad_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "optim": {"lr": -0.1, "warmup_epoch": 1},
                                      "train": {**RECIPE["train"], "epochs": "two"}}))
    r = subprocess.run([sys.executable, "tleg_dist/train.py", "--config", str(recipe), f"output_dir={tmp_path / 'o'}"],
                       cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2, r.stderr[-3000:]
    for words in ("optim.lr: Input should be greater than 0 (got -0.1)", "optim.warmup_epoch: unknown key",
                  "train.epochs: Input should be a valid integer"):
        assert words in r.stderr, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_missing_deepspeed_config_is_named(recipe, tmp_path):
    out = tmp_path / "run"
    rc, log = run(recipe, out, ds=str(tmp_path / "zero9.json"), timeout=TIMEOUT)
    assert rc == 1, log[-3000:]
    assert f"deepspeed_config: {tmp_path / 'zero9.json'} does not exist" in log, log[-3000:]
    assert "Traceback" not in log
    assert_nothing_trained(out)


def test_teacher_checkpoint_that_does_not_match_fails_before_training(tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    # a real resnet10t, but trained for 5 classes: the recipe's data has 10
    save_file(timm.create_model("resnet10t", num_classes=5, in_chans=1).state_dict(), str(teacher))
    recipe = write_recipe(tmp_path / "r.yaml", distill={"type": "soft", "teacher": {"model": "resnet10t",
                                                                                      "checkpoint": str(teacher)}})
    out = tmp_path / "run"
    rc, log = run(recipe, out, timeout=TIMEOUT)
    assert rc == 1, log[-3000:]
    assert f"TeacherError: distill.teacher.checkpoint {teacher} does not match teacher 'resnet10t' " \
           f"(num_classes=10, in_chans=1)" in log, log[-3000:]
    assert "size mismatch" in log and "Traceback" not in log
    assert_nothing_trained(out)


def test_data_with_another_class_count_fails_before_training(tmp_path):
    """model.num_classes is checked against the data, not silently replaced by its class count."""
    recipe = write_recipe(tmp_path / "r.yaml", data={"classes": [0, 1, 2]})
    out = tmp_path / "run"
    rc, log = run(recipe, out, timeout=TIMEOUT)
    assert rc == 1, log[-3000:]
    assert "ConfigError: model.num_classes is 10 but the data has 3 classes (data.classes): " \
           "set model.num_classes=3" in log, log[-3000:]
    assert "Traceback" not in log
    assert_nothing_trained(out)


def test_learngene_that_does_not_fit_fails_before_training(recipe, tmp_path):
    from tleg_dist.artifacts import learngene as learngene_file
    from tleg_dist.models.arch import ViTArch
    from tleg_dist.models.aux_net import AuxNet
    from tleg_dist.models.keys import aux_to_file

    arch = ViTArch(**{**{k: v for k, v in RECIPE["model"].items() if k != "depth"}, "embed_dim": 48})
    lg = tmp_path / "wide.safetensors"
    learngene_file.save(lg, aux_to_file(AuxNet(arch, 2).state_dict()), arch, 2)
    recipe = write_recipe(tmp_path / "ft.yaml", stage="finetune",
                          model={"depth": 4, "init": "learngene", "learngene": str(lg)})
    out = tmp_path / "run"
    rc, log = run(recipe, out, timeout=TIMEOUT)
    assert rc == 1, log[-3000:]
    assert f"InitError: learngene {lg} does not fit model: embed_dim: file has 48, recipe wants 32" in log, \
        log[-3000:]
    assert "Traceback" not in log
    assert_nothing_trained(out)


def test_corrupt_jpeg_stops_naming_it_then_skip_resumes(tmp_path):
    """data.on_bad_image=fail (the default): the run stops at the batch holding the file, naming it;
    nothing is saved at or after that step. Resumed with on_bad_image=skip, it completes and
    counts what it skipped."""
    import numpy as np
    from fault_helpers import complete_steps, resumed_from
    from PIL import Image

    from tleg_dist.data.sampler import train_batches

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for split, n in (("train", 48), ("val", 8)):
        for c in ("ant", "bee"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / split / c / f"{i:03d}.jpg")
    # the first image of epoch 0's 4th batch (the sampler's own order; files sorted as scanned)
    i = train_batches(96, 16, epoch=0, seed=0, rank=0, world_size=1)[3][0]
    bad = root / "train" / ("ant", "bee")[i // 48] / f"{i % 48:03d}.jpg"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated JPEG
    recipe = write_recipe(tmp_path / "r.yaml", data={"format": "imagefolder", "root": str(root), "batch_size": 16},
                          model={"num_classes": 2}, checkpoint={"every_steps": 2, "keep_last": 5})
    out = tmp_path / "run"
    rc, log = run(recipe, out, timeout=TIMEOUT)
    assert rc == 1, log[-3000:]
    assert f"BadImageError: cannot read image {bad}" in log and "data.on_bad_image=skip" in log, log[-3000:]
    assert not (out / "learngene" / "learngene.safetensors").exists()
    assert complete_steps(out) == [2]  # step 4 never happened

    rc, log = run(recipe, out, "data.on_bad_image=skip", resume="auto", name="resume", timeout=TIMEOUT)
    assert rc == 0, log[-3000:]
    assert resumed_from(log) == ("step_00000002", 0, 2, 2)
    assert "skipped 1 unreadable image(s)" in log, log[-3000:]
    assert (out / "learngene" / "learngene.safetensors").is_file()
