"""The typed config tree: every error names the offending key; every recipe loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tleg_dist import config as C
from tleg_dist.config import ConfigError, from_dict, load

REPO = Path(__file__).resolve().parents[1]
# configs/ds holds DeepSpeed engine JSON, configs/sweep sweep specs and configs/experiments
# experiment recipes (tested in test_experiment_smoke.py): not RunConfigs.
NOT_RECIPES = ("ds", "sweep", "experiments", "pipeline")


def error_of(raw: dict, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        from_dict(raw, **kw)
    return str(e.value)


@pytest.mark.parametrize("raw, key, words", [
    ({"model": {"embed_dimm": 3}}, "model.embed_dimm", "unknown key"),
    ({"data": {"aug": {"mix_up": 0.8}}}, "data.aug.mix_up", "unknown key"),
    ({"bogus": 1}, "bogus", "unknown key"),
    ({"train": {"epochs": "many"}}, "train.epochs", "integer"),
    ({"data": {"classes": "0,1"}}, "data.classes", "list"),
    ({"optim": {"lr": -0.1}}, "optim.lr", "greater than 0"),
    ({"optim": {"base_lr": 0}}, "optim.base_lr", "greater than 0"),
    ({"model": {"depth": 0}}, "model.depth", "must be >= 1"),  # models/arch.py's rule, as every reader says it
    ({"model": {"embed_dim": 0}}, "model.embed_dim", "must be > 0"),
    ({"model": {"num_classes": 1}}, "model.num_classes", "at least 2"),
    ({"model": {"drop_path_rate": 1.5}}, "model.drop_path_rate", "less than 1"),
    ({"distill": {"alpha": 2}}, "distill.alpha", "less than or equal to 1"),
    ({"distill": {"type": "medium"}}, "distill.type", "soft"),
    ({"stage": "pretrain"}, "stage", "learngene"),
    ({"model": {"embed_dim": 64, "num_heads": 5}}, "model.num_heads", "divide"),
    ({"model": {"img_size": 30, "patch_size": 4}}, "model.patch_size", "divide"),
    ({"model": {"size": "huge"}}, "model.size", "unknown size"),
    ({"stage": "finetune", "model": {"init": "learngene"}}, "model.learngene", "needs"),
    ({"stage": "finetune", "model": {"init": "truncated"}}, "model.pretrained", "needs"),
    ({"stage": "finetune", "model": {"init": "heur_lg"}}, "model.pretrained", "model.init=heur_lg needs"),
    ({"data": {"format": "imagefolder", "mean": [0.5]}}, "data.mean and data.std", "together"),
    ({"data": {"format": "imagefolder", "mean": [0.5, 0.5], "std": [1, 1]}}, "data.mean/std", "1 or 3"),
    ({"data": {"format": "imagefolder", "mean": [0.5], "std": [0]}}, "data.mean/std", "std > 0"),
    ({"data": {"format": "imagefolder", "mean": [0.5] * 4, "std": [1] * 4}}, "data.mean", "at most 3"),
    ({"data": {"mean": [0.5], "std": [0.2]}}, "data.mean/std", "imagefolder only"),
    ({"data": {"train_limit": 10, "train_per_class": 2}}, "data.train_per_class and data.train_limit", "exclusive"),
    ({"data": {"eval_on": "val"}}, "data.eval_on=val needs data.val_split", "held out"),
    ({"data": {"aug": {"random_shift": 2, "reprob": 0.5}}}, "data.aug.random_shift", "data.aug.reprob"),
    ({"data": {"format": "animal_mnist", "val_split": 0}}, "data.val_split", "greater than 0"),
])
def test_error_names_dotted_key(raw, key, words):
    msg = error_of(raw)
    assert key in msg, msg
    assert words in msg, msg


def test_all_errors_are_reported_at_once():
    msg = error_of({"optim": {"lr": -1}, "train": {"epochs": 0}})
    assert "optim.lr" in msg and "train.epochs" in msg


@pytest.mark.parametrize("raw, key", [
    ({"stage": "finetune", "model": {"init": "learngene", "learngene": "no/such/lg.safetensors"}}, "model.learngene"),
    ({"stage": "finetune", "model": {"init": "truncated", "pretrained": "no/such/vit.safetensors"}}, "model.pretrained"),
    ({"stage": "finetune", "model": {"init": "heur_lg", "pretrained": "no/such/vit.safetensors"}}, "model.pretrained"),
    ({"distill": {"type": "soft", "teacher": {"checkpoint": "no/such/teacher.pt"}}}, "distill.teacher.checkpoint"),
])
def test_missing_input_file_names_key(raw, key):
    msg = error_of(raw)
    assert key in msg and "does not exist" in msg, msg
    # Recipes whose inputs are produced later validate without the check.
    from_dict(raw, check_paths=False)


def test_existing_input_file_is_accepted(tmp_path):
    lg = tmp_path / "lg.safetensors"
    lg.write_bytes(b"")
    cfg = from_dict({"stage": "finetune", "model": {"init": "learngene", "learngene": str(lg)}})
    assert cfg.model.learngene == lg


def test_size_fills_unset_fields_and_explicit_fields_win():
    cfg = from_dict({"model": {"size": "small", "num_classes": 100}})
    assert (cfg.model.embed_dim, cfg.model.num_heads, cfg.model.img_size) == (384, 6, 224)
    assert cfg.model.num_classes == 100
    assert cfg.model.arch().embed_dim == 384


def test_defaults_are_valid():
    cfg = from_dict({})
    assert cfg.stage == "learngene" and cfg.model.arch().num_patches == 49


# ---- overrides ------------------------------------------------------------------------

@pytest.mark.parametrize("item, path, value", [
    ("optim.lr=0.001", ["optim", "lr"], 0.001),
    ("train.epochs=3", ["train", "epochs"], 3),
    ("data.classes=[0, 1, 2]", ["data", "classes"], [0, 1, 2]),
    ("model.size=small", ["model", "size"], "small"),
    ("train.progress=false", ["train", "progress"], False),
    ("train.max_steps=null", ["train", "max_steps"], None),
    ("output_dir=runs/a=b", ["output_dir"], "runs/a=b"),  # only the first '=' splits
])
def test_parse_override(item, path, value):
    assert C.parse_override(item) == (path, value)


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key.sub=value"):
        C.parse_override("optim.lr")


def test_override_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match="model.depth is not a section"):
        C.apply_overrides({"model": {"depth": 4}}, ["model.depth.x=1"])


def test_load_applies_overrides_over_the_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  depth: 4\noptim:\n  lr: 0.01\n")
    cfg = load(recipe, ["optim.lr=0.002", "data.batch_size=16"])
    assert (cfg.model.depth, cfg.optim.lr, cfg.data.batch_size) == (4, 0.002, 16)
    with pytest.raises(ConfigError) as e:
        load(recipe, ["optim.lrr=1"])
    assert "optim.lrr" in str(e.value) and str(recipe) in str(e.value)


def test_load_rejects_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "absent.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(bad)


def test_recipe_or_override_that_is_not_yaml_is_named(tmp_path):
    """A YAML syntax error is a bad recipe (exit 2, one line), naming the file, not "<unicode string>"."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("stage: learngene\ntrain: {epochs: 2\n")
    with pytest.raises(ConfigError) as e:
        load(bad)
    assert str(bad) in str(e.value) and "line 2" in str(e.value) and "unicode string" not in str(e.value)
    with pytest.raises(ConfigError, match="override 'train.epochs=\\[1'"):
        C.parse_override("train.epochs=[1")


def test_yaml_round_trip():
    cfg = from_dict({"stage": "learngene", "model": {"size": "cpu-128", "depth": 3},
                     "data": {"classes": [0, 3], "aug": {"mixup": 0.8}}, "optim": {"betas": [0.9, 0.95]}})
    again = from_dict(yaml.safe_load(C.to_yaml(cfg)))
    assert again == cfg


# ---- every recipe in configs/ -----------------------------------------------------------

def recipes() -> list[Path]:
    root = REPO / "configs"
    return sorted(p for p in root.rglob("*.y*ml")
                  if p.suffix in (".yaml", ".yml") and p.relative_to(root).parts[0] not in NOT_RECIPES)


@pytest.mark.parametrize("path", recipes(), ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_loads(path):
    # Input files (learngenes, teachers) are produced by earlier stages: don't require them here.
    cfg = load(path, check_paths=False)
    assert cfg.model.arch() is not None


# ---- DeepSpeed engine settings (configs/ds) ---------------------------------------------

DS_CONFIGS = sorted((REPO / "configs" / "ds").glob("*.json"))


@pytest.mark.parametrize("path", DS_CONFIGS, ids=lambda p: p.name)
def test_deepspeed_engine_config(path):
    """Engine settings only (the trainer adds batch sizes and clipping from the recipe);
    the ZeRO section must pass DeepSpeed's own (strict) validation."""
    import json

    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    ds = json.loads(path.read_text())
    stage = int(path.stem.split("_")[0].removeprefix("zero"))
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["bf16"]["enabled"] is path.stem.endswith("_bf16")
    assert ds["zero_allow_untested_optimizer"] is True
    assert not {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping", "optimizer", "scheduler"} & set(ds)
    DeepSpeedZeroConfig(**ds["zero_optimization"])


@pytest.mark.parametrize("section", [{"bf16": {"enabled": True}}, {"bfloat16": {"enabled": True}},
                                     {"bf16": {"enabled": False}, "bfloat16": {"enabled": True}}, {}],
                         ids=["bf16", "bfloat16", "bf16-wins", "none"])
def test_bf16_is_read_as_deepspeed_reads_it(section):
    """DeepSpeed still takes the old key `bfloat16`: the trainer's input dtype must follow the engine's
    (it fed float32 into a bf16 model: "Input type (float) and bias type (c10::BFloat16) ...")."""
    from deepspeed.runtime.precision_config import get_bfloat16_config

    from tleg_dist.training import ds_config

    assert ds_config.bf16(section) is get_bfloat16_config(section).enabled
