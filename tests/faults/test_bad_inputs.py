"""Bad inputs caught before any training, in-process (fast): every error names its culprit.

Recipes go through the real command line entry point (`tleg_dist.train.main`), which stops at the
recipe and never starts training; weights and data go through the functions the trainer calls to
build its models and loaders. The same failures from a real trainer process: test_bad_inputs_cli.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fault_helpers import RECIPE, REPO

from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.artifacts.learngene import LearngeneFileError
from tleg_dist.config import from_dict
from tleg_dist.models.arch import ViTArch
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.keys import aux_to_file
from tleg_dist.teacher import TeacherError, build_teacher, load_state_file
from tleg_dist.train import main as train_main
from tleg_dist.training.checkpoint import CheckpointError, find_resume
from tleg_dist.training.model_factory import InitError, build_model


# --- recipes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, words", [
    ("optim.learning_rate=0.1", ["optim.learning_rate", "unknown key"]),
    ("train.epochs=three", ["train.epochs", "integer"]),
    ("optim.lr=-0.1", ["optim.lr", "greater than 0", "-0.1"]),
    ("model.depth=0", ["model.depth", "depth must be >= 1, got 0"]),
    ("model.num_heads=3", ["model.num_heads=3 does not divide model.embed_dim=32"]),
    ("data.eval_on=val", ["data.eval_on=val needs data.val_split"]),
    ("distill.teacher.checkpoint=no/such/teacher.pt", ["distill.teacher.checkpoint", "does not exist",
                                                       "no/such/teacher.pt"]),
])
def test_bad_recipe_stops_the_command_with_the_key(override, words, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "out"
    assert train_main(["--config", str(recipe), f"output_dir={out}", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and all(w in err for w in words), err
    assert not out.exists()  # nothing was created, so nothing can be lost


def test_missing_learngene_file_in_finetune_recipe(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "stage": "finetune",
                                      "model": {**RECIPE["model"], "init": "learngene",
                                                "learngene": str(tmp_path / "gone.safetensors")}}))
    assert train_main(["--config", str(recipe), f"output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert "model.learngene" in err and f"{tmp_path / 'gone.safetensors'}" in err, err


def test_missing_recipe_file(tmp_path, capsys):
    assert train_main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert f"config file {tmp_path / 'nope.yaml'} does not exist" in capsys.readouterr().err


# --- weights and checkpoints -------------------------------------------------------------------

FILE_ARCH = ViTArch(**{k: v for k, v in RECIPE["model"].items() if k != "depth"})


@pytest.fixture
def learngene(tmp_path, seeded):
    path = tmp_path / "lg.safetensors"
    learngene_file.save(path, aux_to_file(AuxNet(FILE_ARCH, 2).state_dict()), FILE_ARCH, 2)
    return path


def finetune_cfg(learngene, **model):
    return from_dict({**RECIPE, "stage": "finetune",
                      "model": {**RECIPE["model"], "depth": 4, "init": "learngene", "learngene": str(learngene),
                                **model}})


def test_fitting_learngene_builds(learngene):
    assert build_model(finetune_cfg(learngene)) is not None  # the control for the next test


@pytest.mark.parametrize("model, words", [
    ({"embed_dim": 64}, "embed_dim: file has 32, recipe wants 64"),
    ({"patch_size": 4}, "patch_size: file has 7, recipe wants 4"),
])
def test_learngene_that_does_not_fit_the_model(learngene, model, words):
    with pytest.raises(InitError) as e:
        build_model(finetune_cfg(learngene, **model))
    assert str(learngene) in str(e.value) and words in str(e.value), e.value


@pytest.mark.parametrize("keep", [0.5, 0.01])
def test_truncated_learngene_safetensors(learngene, keep):
    data = learngene.read_bytes()
    learngene.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(LearngeneFileError) as e:
        build_model(finetune_cfg(learngene))
    assert str(learngene) in str(e.value), e.value


def test_truncated_teacher_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "teacher.safetensors"
    save_file({"w": torch.zeros(1000)}, str(path))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(TeacherError, match=f"{path}: not a readable safetensors file"):
        load_state_file(path)


def test_resume_from_a_folder_that_is_not_a_tleg_checkpoint(tmp_path):
    """A DeepSpeed checkpoint folder from elsewhere: shards and `latest`, but no tleg_meta.json."""
    tag = tmp_path / "ckpt" / "global_step100"
    tag.mkdir(parents=True)
    (tag / "mp_rank_00_model_states.pt").write_bytes(b"not read")
    (tmp_path / "ckpt" / "latest").write_text("global_step100")
    for path in (tag, tmp_path / "ckpt"):
        with pytest.raises(CheckpointError, match=f"--resume {path}: not a complete tleg checkpoint"):
            find_resume(tmp_path / "run" / "checkpoints", str(path))
    assert find_resume(tmp_path / "ckpt", "auto") is None  # auto: nothing complete, start fresh


# --- untrusted pickles -------------------------------------------------------------------------

class Payload:
    """Unpickling this runs exec(): it writes a file, proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


@pytest.fixture
def evil_pt(tmp_path):
    path = tmp_path / "teacher.pt"
    torch.save({"conv1.weight": torch.zeros(1), "evil": Payload(tmp_path / "pwned")}, path)
    return path, tmp_path / "pwned"


def test_pickle_payload_is_live(evil_pt):
    """The control: a plain torch.load (in a child process) does run it."""
    path, marker = evil_pt
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"],
                   check=True, cwd=REPO)
    assert marker.read_text() == "pwned"


def test_teacher_checkpoint_with_pickled_code_is_refused_and_never_runs(evil_pt):
    path, marker = evil_pt
    cfg = from_dict({"distill": {"type": "soft", "teacher": {"model": "resnet10t", "checkpoint": str(path)}}})
    with pytest.raises(TeacherError) as e:
        build_teacher(cfg.distill.teacher, 10, 1)
    assert str(path) in str(e.value) and "refused" in str(e.value), e.value
    assert not marker.exists()



# --- data --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def betons(fmnist_beton):
    return [fmnist_beton(split, 64) for split in ("train", "val")]


@pytest.mark.ffcv
@pytest.mark.parametrize("keep", [0.9, 0.5, 0.001])
def test_truncated_beton_is_named_before_loading(betons, keep, tmp_path):
    import shutil

    from tleg_dist.config import DataConfig
    from tleg_dist.data import DataError, build_data

    train, val = (shutil.copy(b, tmp_path / b.name) for b in betons)
    for b in betons:  # the sidecars (class list, statistics) go with them
        shutil.copy(b.with_suffix(".json"), tmp_path / b.with_suffix(".json").name)
    data = Path(train).read_bytes()
    Path(train).write_bytes(data[: int(len(data) * keep)])
    cfg = DataConfig(format="ffcv", train_path=train, val_path=val, batch_size=8, eval_batch_size=8, num_workers=1)
    with pytest.raises(DataError) as e:
        build_data(cfg, FILE_ARCH, rank=0, world_size=1, seed=0)
    assert str(train) in str(e.value) and ("truncated" in str(e.value) or "too short" in str(e.value)), e.value


def test_rank_outside_the_world_is_one_line_naming_it():
    from tleg_dist.config import DataConfig
    from tleg_dist.data import DataError, build_data

    with pytest.raises(DataError, match=r"rank 2 is outside \[0, 1\] \(world size 2\)"):
        build_data(DataConfig(format="synthetic"), FILE_ARCH, rank=2, world_size=2, seed=0)


def test_image_folder_for_a_two_channel_model_names_the_setting(tmp_path):
    from PIL import Image

    from tleg_dist.config import DataConfig
    from tleg_dist.data import DataError, build_data

    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / "a" / "0.png")
    arch = dataclasses.replace(FILE_ARCH, in_chans=2)
    with pytest.raises(DataError, match=r"model.in_chans=2: image data supports 1 \(grey\) or 3 \(RGB\)"):
        build_data(DataConfig(format="imagefolder", root=tmp_path), arch, rank=0, world_size=1, seed=0)


def test_rank_without_validation_data_is_named_before_training():
    """1 validation image on 2 ranks: rank 1 would have nothing to evaluate after the first epoch."""
    from tleg_dist.data import DataError
    from tleg_dist.training.distributed import DistInfo
    from tleg_dist.training.setup import load_data

    cfg = from_dict({**RECIPE, "data": {**RECIPE["data"], "val_limit": 1}})
    assert load_data(cfg, DistInfo(0, 2, 0, torch.device("cpu"))) is not None  # rank 0 holds the image
    with pytest.raises(DataError) as e:
        load_data(cfg, DistInfo(1, 2, 1, torch.device("cpu")))
    assert str(e.value) == "rank 1 of 2 has no validation data: use fewer ranks or more validation images " \
                           "(data.val_limit)"
