"""`convert expand`: learngene file -> timm Des-Nets, and its bad-input cases (no DeepSpeed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_convert_learngene import assert_fails
from timm.models.vision_transformer import VisionTransformer

from tleg_dist import learngene_file
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


def load_des(path):
    model = VisionTransformer(**json.loads(path.with_suffix(".json").read_text()))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def test_expand_at_aux_depth_is_the_aux_net(aux, lg, tmp_path, toy_arch):
    out = tmp_path / "des.safetensors"
    assert main(["expand", str(lg), "--depth", str(AUX_DEPTH), "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text()) == toy_arch.timm_kwargs(AUX_DEPTH)
    x = torch.randn(3, toy_arch.in_chans, toy_arch.img_size, toy_arch.img_size)
    with torch.no_grad():
        torch.testing.assert_close(load_des(out)(x), aux(x), atol=1e-5, rtol=0)


def test_several_depths_follow_the_expansion_formula(aux, lg, tmp_path, toy_arch):
    out = tmp_path / "des"
    assert main(["expand", str(lg), "--depths", "1", "2", "6", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"des_depth{d}.{e}" for d in (1, 2, 6)
                                                    for e in ("json", "safetensors")]
    t = learngene_file.load(lg).tensors
    for depth in (1, 2, 6):
        model = load_des(out / f"des_depth{depth}.safetensors")
        assert len(model.blocks) == depth
        for layer in range(depth):  # theta_l = theta_A + (l / L) theta_B, computed here directly
            want = t[file_key("mlp.fc1.weight", "a")] + (layer / depth) * t[file_key("mlp.fc1.weight", "b")]
            torch.testing.assert_close(model.blocks[layer].mlp.fc1.weight, want, atol=1e-6, rtol=0)
        assert torch.equal(model.head.weight, t["head.weight"])


def test_depth_below_one(lg, tmp_path, capsys):
    out = tmp_path / "des.safetensors"
    assert_fails(capsys, out, ["depth must be >= 1", "0"], "expand", lg, "--depth", "0", "--out", out)
    d = tmp_path / "many"
    assert_fails(capsys, d, ["depth must be >= 1", "-1"], "expand", lg, "--depths", "3", "-1", "--out", d)


def test_not_a_learngene(aux, lg, tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    des = tmp_path / "des.safetensors"
    assert main(["expand", str(lg), "--depth", "2", "--out", str(des)]) == 0
    assert_fails(capsys, out, [des, "not a learngene file"], "expand", des, "--depth", "2", "--out", out)
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
    out = tmp_path / "out.safetensors"
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
    out = tmp_path / "out.safetensors"
    assert_fails(capsys, out, [cut], "expand", cut, "--depth", "2", "--out", out)


def test_existing_output_and_all_or_nothing(lg, tmp_path, capsys):
    out = tmp_path / "many"
    out.mkdir()
    (out / "des_depth6.json").write_text("keep")
    code = main(["expand", str(lg), "--depths", "2", "6", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and str(out / "des_depth6.json") in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["des_depth6.json"]  # depth 2 was not written either
    assert main(["expand", str(lg), "--depths", "2", "6", "--out", str(out), "--force"]) == 0
    assert load_des(out / "des_depth6.safetensors").blocks.__len__() == 6


def test_cli_exit_status_and_message(lg, tmp_path):
    """The real entry point: exit status 1, one line on stderr naming the file, no traceback."""
    out = tmp_path / "out.safetensors"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    r = subprocess.run([sys.executable, "-m", "tleg_dist.convert", "expand", str(bad), "--depth", "3",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().startswith("tleg-convert expand: error:") and str(bad) in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
