"""`convert expand`: learngene file or folder -> timm Des-Net model folders, and its bad-input cases
(no DeepSpeed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file
from test_convert_learngene import assert_fails

from tleg_dist.artifacts import cards
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.convert import main
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.keys import aux_to_file, file_key

AUX_DEPTH = 4


@pytest.fixture
def aux(toy_arch, seeded, randomize):
    return randomize(AuxNet(toy_arch, AUX_DEPTH)).eval()


@pytest.fixture
def lg(aux, toy_arch, tmp_path):
    path = tmp_path / "lg.safetensors"
    learngene_file.save(path, aux_to_file(aux.state_dict()), toy_arch, AUX_DEPTH)
    return path


def load_des(folder):
    """timm's own folder loader: it loads model.safetensors strictly into config.json's model."""
    return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()


FOLDER = ["README.md", "config.json", "model.safetensors"]


@pytest.mark.parametrize("as_folder", [False, True])
def test_expand_at_aux_depth_is_the_aux_net(aux, lg, tmp_path, toy_arch, as_folder):
    source = lg
    if as_folder:  # the learngene folder (file + config.json + card) expands the same way
        source = tmp_path / "lg_folder"
        f = learngene_file.load(lg)
        learngene_file.save_folder(source, f.tensors, f.arch, f.aux_depth, card=cards.learngene_card)
    out = tmp_path / "des"
    assert main(["expand", str(source), "--depth", str(AUX_DEPTH), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == FOLDER
    model = load_des(out)
    assert model.pretrained_cfg["input_size"] == (1, 8, 8) and len(model.blocks) == AUX_DEPTH
    card = (out / "README.md").read_text()
    assert cards.sha256(learngene_file.weights_path(source)) in card and "aux_depth: 4" in card
    x = torch.randn(3, toy_arch.in_chans, toy_arch.img_size, toy_arch.img_size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), aux(x), atol=1e-5, rtol=0)


def test_several_depths_follow_the_expansion_formula(aux, lg, tmp_path, toy_arch):
    out = tmp_path / "des"
    assert main(["expand", str(lg), "--depths", "1", "2", "6", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"des_depth{d}" for d in (1, 2, 6)]
    t = learngene_file.load(lg).tensors
    for depth in (1, 2, 6):
        assert sorted(p.name for p in (out / f"des_depth{depth}").iterdir()) == FOLDER
        model = load_des(out / f"des_depth{depth}")
        assert len(model.blocks) == depth
        for layer in range(depth):  # theta_l = theta_A + (l / L) theta_B, computed here directly
            want = t[file_key("mlp.fc1.weight", "a")] + (layer / depth) * t[file_key("mlp.fc1.weight", "b")]
            torch.testing.assert_close(model.blocks[layer].mlp.fc1.weight, want, atol=1e-6, rtol=0)
        assert torch.equal(model.head.weight, t["head.weight"])


def test_depth_below_one(lg, tmp_path, capsys):
    out = tmp_path / "des"
    assert_fails(capsys, out, ["depth must be >= 1", "0"], "expand", lg, "--depth", "0", "--out", out)
    d = tmp_path / "many"
    assert_fails(capsys, d, ["depth must be >= 1", "-1"], "expand", lg, "--depths", "3", "-1", "--out", d)


def test_not_a_learngene(aux, lg, tmp_path, capsys):
    out = tmp_path / "out"
    des = tmp_path / "des"
    assert main(["expand", str(lg), "--depth", "2", "--out", str(des)]) == 0
    weights = des / "model.safetensors"
    assert_fails(capsys, out, [weights, "not a learngene file"], "expand", weights, "--depth", "2", "--out", out)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    assert_fails(capsys, out, [plain, "not a learngene file"], "expand", plain, "--depth", "2", "--out", out)
    text = tmp_path / "notes.txt"
    text.write_text("not tensors")
    assert_fails(capsys, out, [text, "not a readable safetensors"], "expand", text, "--depth", "2", "--out", out)
    assert_fails(capsys, out, [tmp_path / "missing.safetensors", "no such file"], "expand",
                 tmp_path / "missing.safetensors", "--depth", "2", "--out", out)


def _rewrite(lg, path, edit):
    f = learngene_file.load(lg)
    tensors = dict(f.tensors)
    edit(tensors)
    save_file(tensors, str(path), metadata=learngene_file.metadata(f.arch, f.aux_depth))


def test_missing_tensors_and_mismatched_shapes(lg, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "missing.safetensors"
    _rewrite(lg, missing, lambda t: t.pop(file_key("attn.proj.weight", "b")))
    assert_fails(capsys, out, [missing, "missing tensors", "attn.proj.weight.theta_b"], "expand", missing,
                 "--depth", "2", "--out", out)
    wrong = tmp_path / "wrong.safetensors"
    _rewrite(lg, wrong, lambda t: t.update({"pos_embed": torch.zeros(1, 3, 32)}))
    assert_fails(capsys, out, [wrong, "pos_embed", "shape"], "expand", wrong, "--depth", "2", "--out", out)


def test_truncated_learngene(lg, tmp_path, capsys):
    cut = tmp_path / "cut.safetensors"
    data = lg.read_bytes()
    cut.write_bytes(data[: len(data) - 100])
    out = tmp_path / "out"
    assert_fails(capsys, out, [cut], "expand", cut, "--depth", "2", "--out", out)


def test_existing_output_and_all_or_nothing(lg, tmp_path, capsys):
    out = tmp_path / "many"
    (out / "des_depth6").mkdir(parents=True)
    (out / "des_depth6" / "config.json").write_text("keep")
    code = main(["expand", str(lg), "--depths", "2", "6", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and str(out / "des_depth6" / "config.json") in err and "--force" in err
    assert [str(p.relative_to(out)) for p in sorted(out.rglob("*"))] == ["des_depth6", "des_depth6/config.json"]
    assert main(["expand", str(lg), "--depths", "2", "6", "--out", str(out), "--force"]) == 0
    assert len(load_des(out / "des_depth6").blocks) == 6


def test_old_file_output_is_refused_with_the_new_form(lg, tmp_path, capsys):
    out = tmp_path / "des.safetensors"
    assert_fails(capsys, out, [out, "now a folder", tmp_path / "des"], "expand", lg, "--depth", "2", "--out", out)


def test_cli_exit_status_and_message(lg, tmp_path):
    """The real entry point: exit status 1, one line on stderr naming the file, no traceback."""
    out = tmp_path / "out"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    r = subprocess.run([sys.executable, "-m", "tleg_dist.convert", "expand", str(bad), "--depth", "3",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().startswith("tleg-convert expand: error:") and str(bad) in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_out_inside_a_file_is_refused_naming_it(lg, tmp_path, capsys):
    """--out below an existing file: one line naming that file, not a NotADirectoryError traceback."""
    blocker = tmp_path / "taken"
    blocker.write_text("keep")
    out = blocker / "des"
    assert_fails(capsys, out, [blocker, "not a folder"], "expand", lg, "--depth", "2", "--out", out)
    assert blocker.read_text() == "keep"


@pytest.mark.parametrize("value", ["{oops", "[1, 2]"])
def test_unreadable_preprocessing_metadata_names_the_file(lg, tmp_path, capsys, value):
    """A learngene whose `preprocessing` metadata is not a JSON object: one line naming the file."""
    bad = tmp_path / "badpre.safetensors"
    f = learngene_file.load(lg)
    learngene_file.save(bad, f.tensors, f.arch, f.aux_depth, extra={learngene_file.PREPROCESSING: value})
    out = tmp_path / "out"
    assert_fails(capsys, out, [bad, "preprocessing"], "expand", bad, "--depth", "2", "--out", out)
