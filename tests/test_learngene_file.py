"""The public learngene file: round trip, metadata, and every way a bad file is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tleg_dist.artifacts import learngene as lf
from tleg_dist.models.arch import ViTArch
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.keys import aux_to_file, file_key
from tleg_dist.utils.atomic import OutputExistsError

REQUIRED_META = ("format", "format_version", "embed_dim", "num_heads", "mlp_ratio", "patch_size",
                 "img_size", "in_chans", "num_classes", "aux_depth", "qkv_bias")


@pytest.fixture
def tensors(toy_arch, seeded, randomize):
    return aux_to_file(randomize(AuxNet(toy_arch, depth=3)).state_dict())


@pytest.fixture
def saved(tmp_path, tensors, toy_arch):
    return lf.save(tmp_path / "lg.safetensors", tensors, toy_arch, aux_depth=3)


def raw_metadata(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_round_trip(saved, tensors, toy_arch):
    loaded = lf.load(saved)
    assert loaded.arch == toy_arch
    assert loaded.aux_depth == 3
    assert set(loaded.tensors) == set(tensors)
    for k, v in tensors.items():
        assert torch.equal(loaded.tensors[k], v), k
    assert loaded.extra == {}


def test_round_trip_other_arch(tmp_path, seeded):
    arch = dataclasses.replace(ViTArch.from_size("cpu-64"), in_chans=3, mlp_ratio=2.5, qkv_bias=False)
    t = aux_to_file(AuxNet(arch, depth=2).state_dict())
    loaded = lf.load(lf.save(tmp_path / "x.safetensors", t, arch, aux_depth=2))
    assert loaded.arch == arch and loaded.aux_depth == 2


def test_metadata_is_all_strings(saved, toy_arch):
    meta = raw_metadata(saved)
    assert set(REQUIRED_META) <= set(meta)
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["format"] == "tleg-learngene"
    assert meta["format_version"] == "1"
    assert meta["aux_depth"] == "3"
    assert json.loads(meta["embed_dim"]) == toy_arch.embed_dim
    assert json.loads(meta["mlp_ratio"]) == toy_arch.mlp_ratio
    assert json.loads(meta["qkv_bias"]) is True


def test_extra_metadata_round_trips(tmp_path, tensors, toy_arch):
    path = lf.save(tmp_path / "lg.safetensors", tensors, toy_arch, 3, extra={"source_run": "runs/aux"})
    assert lf.load(path).extra == {"source_run": "runs/aux"}


def test_save_is_atomic_and_leaves_no_temp_file(saved):
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_a_folder_that_fails_half_way_leaves_no_folder_behind(tmp_path, tensors, toy_arch):
    def card(config):
        raise OSError("disk full")  # after the weights were written to their temporary file

    with pytest.raises(OSError, match="disk full"):
        lf.save_folder(tmp_path / "a" / "lg", tensors, toy_arch, 3, card=card)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the parent it created


def test_not_a_learngene(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(lf.LearngeneFileError, match="not a learngene file"):
        lf.load(path)
    save_file({"w": torch.zeros(2)}, str(path))  # no metadata at all
    with pytest.raises(lf.LearngeneFileError, match="not a learngene file"):
        lf.load(path)


def test_not_safetensors(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a tensor file")
    with pytest.raises(lf.LearngeneFileError, match="not a readable safetensors"):
        lf.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(lf.LearngeneFileError, match="no such file"):
        lf.load(tmp_path / "absent.safetensors")


def test_unsupported_version(tmp_path, tensors, toy_arch):
    path = tmp_path / "v2.safetensors"
    save_file(tensors, str(path), metadata={**lf.metadata(toy_arch, 3), "format_version": "2"})
    with pytest.raises(lf.LearngeneFileError, match="format_version"):
        lf.load(path)


def test_missing_architecture_metadata(tmp_path, tensors, toy_arch):
    meta = lf.metadata(toy_arch, 3)
    del meta["num_heads"]
    path = tmp_path / "nometa.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(lf.LearngeneFileError, match="architecture metadata"):
        lf.load(path)


@pytest.mark.parametrize("key", ["num_heads", "patch_size"])
def test_zero_in_architecture_metadata(tmp_path, tensors, toy_arch, key):
    """A zero that parses: refused naming the file, not a ZeroDivisionError traceback from ViTArch."""
    path = tmp_path / "zero.safetensors"
    save_file(tensors, str(path), metadata={**lf.metadata(toy_arch, 3), key: "0"})
    with pytest.raises(lf.LearngeneFileError, match=f"{path}: bad or missing architecture metadata"):
        lf.load(path)


def test_missing_tensors(tmp_path, tensors, toy_arch):
    gone = file_key("mlp.fc2.weight", "b")
    partial = {k: v for k, v in tensors.items() if k != gone}
    path = tmp_path / "partial.safetensors"
    save_file(partial, str(path), metadata=lf.metadata(toy_arch, 3))
    with pytest.raises(lf.LearngeneFileError, match="missing tensors.*" + gone.replace(".", r"\.")):
        lf.load(path)
    with pytest.raises(lf.LearngeneFileError, match="missing tensors"):
        lf.save(tmp_path / "out.safetensors", partial, toy_arch, 3)
    assert not (tmp_path / "out.safetensors").exists()


def test_unexpected_tensors(tmp_path, tensors, toy_arch):
    with pytest.raises(lf.LearngeneFileError, match="unexpected tensors.*blocks.0"):
        lf.save(tmp_path / "out.safetensors", {**tensors, "blocks.0.norm1.weight": torch.ones(32)}, toy_arch, 3)


def test_mismatched_shapes(tmp_path, tensors, toy_arch):
    """Tensors of one width under metadata that claims another."""
    wider = dataclasses.replace(toy_arch, embed_dim=64)
    path = tmp_path / "liar.safetensors"
    save_file(tensors, str(path), metadata=lf.metadata(wider, 3))
    with pytest.raises(lf.LearngeneFileError, match="shape"):
        lf.load(path)
    with pytest.raises(lf.LearngeneFileError, match="shape"):
        lf.save(tmp_path / "out.safetensors", tensors, wider, 3)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(lf.LearngeneFileError):
        lf.load(saved)


def test_existing_output_needs_force(saved, tensors, toy_arch):
    before = saved.read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        lf.save(saved, tensors, toy_arch, 3)
    assert saved.read_bytes() == before
    changed = {k: v + 1 for k, v in tensors.items()}
    lf.save(saved, changed, toy_arch, 3, force=True)
    assert torch.equal(lf.load(saved).tensors["pos_embed"], changed["pos_embed"])


def test_folder_round_trip_and_its_loader(tmp_path, tensors, toy_arch):
    """A learngene folder loads from the folder, "local-dir:FOLDER" or its file; config.json = the metadata."""
    import tleg_dist

    folder = tmp_path / "lg"
    pre = {"interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center", "mean": [0.5], "std": [0.25]}
    files = lf.save_folder(folder, tensors, toy_arch, 3, extra={lf.PREPROCESSING: json.dumps(pre)},
                           card=lambda config: f"card of aux depth {config['aux_depth']}")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "learngene.safetensors"]
    assert files[0] == folder / "learngene.safetensors" and (folder / "README.md").read_text() == "card of aux depth 3"
    config = json.loads((folder / "config.json").read_text())
    assert config["aux_depth"] == 3 and config["embed_dim"] == 32 and config[lf.PREPROCESSING] == pre
    assert set(REQUIRED_META) <= set(config)
    for where in (folder, f"local-dir:{folder}", str(folder / "learngene.safetensors")):
        lg = tleg_dist.load_learngene(where)
        assert lg.arch == toy_arch and lg.aux_depth == 3 and lf.preprocessing(lg) == pre
        assert all(torch.equal(lg.tensors[k], v) for k, v in tensors.items())


def test_folder_with_missing_or_disagreeing_config_is_refused(tmp_path, tensors, toy_arch):
    folder = tmp_path / "lg"
    lf.save_folder(folder, tensors, toy_arch, 3, card=lambda config: "")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "aux_depth": 12}))
    with pytest.raises(lf.LearngeneFileError, match=r"config.json: aux_depth is 12 but learngene.safetensors says 3"):
        lf.load(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(lf.LearngeneFileError, match=r"config.json: not readable JSON"):
        lf.load(folder)
    (folder / "config.json").unlink()
    with pytest.raises(lf.LearngeneFileError, match=r"config.json: missing"):
        lf.load(f"local-dir:{folder}")
    with pytest.raises(lf.LearngeneFileError, match=r"empty/learngene.safetensors: no such file"):
        lf.load((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_check_fits_names_every_differing_field_but_the_class_count(saved, toy_arch):
    lg = lf.load(saved)
    lg.check_fits(dataclasses.replace(toy_arch, num_classes=toy_arch.num_classes + 1))  # a fresh head fits
    other = dataclasses.replace(toy_arch, embed_dim=64, patch_size=8, num_classes=2)
    with pytest.raises(lf.LearngeneFileError, match=f"learngene {saved} does not fit model: embed_dim: file has 32, "
                                                    f"recipe wants 64; patch_size: file has 4, recipe wants 8$"):
        lg.check_fits(other)


def test_des_state_is_the_expansion_rule_at_any_depth(saved, toy_arch):
    from tleg_dist.models.des_net import build_des_net
    from tleg_dist.models.learngene import expand

    lg = lf.load(saved)
    name = "attn.qkv.weight"
    a, b = lg.tensors[file_key(name, "a")], lg.tensors[file_key(name, "b")]
    for depth in (1, 5):
        state = lg.des_state(depth)
        build_des_net(toy_arch, depth).load_state_dict(state, strict=True)  # every key, head included
        for i, want in enumerate(expand(a, b, depth)):
            assert torch.equal(state[f"blocks.{i}.{name}"], want)


def test_a_recipe_may_name_a_learngene_folder(tmp_path, tensors, toy_arch):
    """model.learngene takes the folder a learngene run writes (RUN/learngene/) as well as its file."""
    from tleg_dist import config as config_lib
    from tleg_dist.training.model_factory import build_model

    folder = tmp_path / "lg"
    lf.save_folder(folder, tensors, toy_arch, 4, card=lambda config: "card\n")
    model = {**toy_arch.to_dict(), "depth": 3, "init": "learngene"}
    states = []
    for where in (folder, folder / "learngene.safetensors"):
        cfg = config_lib.from_dict({"stage": "finetune", "model": {**model, "learngene": str(where)}})
        states.append(build_model(cfg).state_dict())
    assert states[0].keys() == states[1].keys() and all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    with pytest.raises(config_lib.ConfigError, match="file does not exist"):
        config_lib.from_dict({"stage": "finetune", "model": {**model, "learngene": str(tmp_path)}})


def test_output_below_a_file_is_refused_naming_the_file(tmp_path, tensors, toy_arch):
    """Not a NotADirectoryError traceback from mkdir: the file in the way is named."""
    blocker = tmp_path / "taken"
    blocker.write_text("keep")
    with pytest.raises(OutputExistsError, match=f"{blocker}: exists and is not a folder"):
        lf.save(blocker / "lg.safetensors", tensors, toy_arch, 3)
    with pytest.raises(OutputExistsError, match=f"{blocker}: exists and is not a folder"):
        lf.save_folder(blocker, tensors, toy_arch, 3, card=lambda config: "")
    assert blocker.read_text() == "keep"
