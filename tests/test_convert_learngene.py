"""`convert learngene` on real DeepSpeed checkpoints: round trips and every bad input.

Round trip: checkpoint -> learngene -> expand at the aux depth -> timm ViT must compute
what the engine computed (fp32: to 1e-5; bf16: after casting, within one bf16 step).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_convert_ckpts import AUX_DEPTH, CASES, STEPS, WITH_INCOMPLETE, ckpts, tag, trainer_runs  # noqa: F401
from timm.models.vision_transformer import VisionTransformer

from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.convert import main
from tleg_dist.convert.inspect import describe
from tleg_dist.convert.zero import _fp32_masters
from tleg_dist.models.keys import aux_to_file

pytestmark = pytest.mark.slow  # real multi-process DeepSpeed runs (shared, once per session)
AUX_CASES = [n for n, c in CASES.items() if c[0] == "learngene"]
BF16_CASES = [n for n in AUX_CASES if CASES[n][2]]


def cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_fails(capsys, out, needles, *argv) -> str:
    """Exit 1, a one-line message containing every needle, and no output left behind."""
    code, err = cli(capsys, *argv)
    last = err.strip().splitlines()[-1]
    assert code == 1, err
    assert last.startswith("tleg-convert"), last
    for n in needles:
        assert str(n) in last, (n, last)
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))  # no temp files
    return last


def reference(ckpts, name):
    ref = load_file(str(ckpts / name / "reference.safetensors"))
    params = {k[len("param."):]: v for k, v in ref.items() if k.startswith("param.")}
    return ref["x"], ref["y"], params


def des_net_outputs(tmp_path, lg, x, dtype=torch.float32):
    des = tmp_path / "des"
    assert main(["expand", str(lg), "--depth", str(AUX_DEPTH), "--out", str(des), "--force"]) == 0
    model = VisionTransformer(**json.loads((des / "config.json").read_text())["model_args"])
    model.load_state_dict(load_file(str(des / "model.safetensors")), strict=True)
    with torch.no_grad():
        return model.to(dtype).eval()(x.to(dtype))


@pytest.mark.parametrize("name", AUX_CASES)
def test_round_trip_reproduces_engine(ckpts, tmp_path, name):
    x, y, engine_params = reference(ckpts, name)
    lg = tmp_path / "lg.safetensors"
    assert main(["learngene", str(ckpts / name / "checkpoints"), "--out", str(lg)]) == 0
    f = learngene_file.load(lg)
    assert f.aux_depth == AUX_DEPTH and f.extra["source_tag"] == tag(STEPS)
    assert all(t.dtype == torch.float32 for t in f.tensors.values())
    engine = aux_to_file(engine_params)
    if not CASES[name][2]:
        for k, v in engine.items():
            assert torch.equal(f.tensors[k], v), k
        torch.testing.assert_close(des_net_outputs(tmp_path, lg, x), y, atol=1e-5, rtol=0)
        return
    # bf16 training: the file holds DeepSpeed's fp32 master weights, which round to exactly
    # the engine's bf16 weights but carry more precision than bf16 can.
    for k, v in engine.items():
        assert v.dtype == torch.bfloat16 and torch.equal(f.tensors[k].bfloat16(), v), k
    assert any(not torch.equal(t, t.bfloat16().float()) for t in f.tensors.values())
    lg16 = tmp_path / "lg16.safetensors"
    assert main(["learngene", str(ckpts / name / "checkpoints"), "--out", str(lg16), "--dtype", "bf16"]) == 0
    assert all(t.dtype == torch.bfloat16 for t in learngene_file.load(lg16).tensors.values())
    out = des_net_outputs(tmp_path, lg16, x, torch.bfloat16)
    torch.testing.assert_close(out.float(), y.float(), atol=2**-7 * y.abs().max().item(), rtol=0)


def test_real_trainer_checkpoint_gives_the_trainers_own_learngene(trainer_runs, tmp_path):
    """2-rank ZeRO-3 run of tleg_dist/train.py: its end-of-stage export is gathered from the
    live engine, ours is consolidated from the checkpoint files; they must be identical."""
    run = trainer_runs / "learngene"
    info = describe(run)
    assert (info["stage"], info["world_size"], info["zero_stage"]) == ("learngene", 2, 3)
    lg = tmp_path / "lg"  # no .safetensors suffix: a learngene folder, like the trainer's RUN/learngene/
    assert main(["learngene", str(run), "--out", str(lg)]) == 0
    mine, theirs = learngene_file.load(f"local-dir:{lg}"), learngene_file.load(run / "learngene")
    assert (mine.arch, mine.aux_depth) == (theirs.arch, theirs.aux_depth)
    assert learngene_file.preprocessing(mine) == learngene_file.preprocessing(theirs) is not None
    assert mine.tensors.keys() == theirs.tensors.keys()
    for k, v in theirs.tensors.items():
        assert torch.equal(mine.tensors[k], v), k
    for folder in (lg, run / "learngene"):
        card = (folder / "README.md").read_text()
        assert "TLEG learngene" in card and "val_top1" in card and "## Training recipe" in card, folder
    assert json.loads((run / "summary.json").read_text())["files"] == {
        "learngene": str(run / "learngene" / "learngene.safetensors"), "folder": str(run / "learngene")}


def test_trainer_and_converter_learngenes_carry_the_same_metadata_keys(trainer_runs, tmp_path):
    """One provenance record: the same keys in the file's metadata and in config.json, whoever wrote it;
    the values differ in `source` only (the trainer's val_top1 is the run's, which the converter reads
    from the run's summary, the checkpoint being the run's last)."""
    run = trainer_runs / "learngene"
    lg = tmp_path / "lg"
    assert main(["learngene", str(run), "--out", str(lg)]) == 0
    mine, theirs = learngene_file.load(lg), learngene_file.load(run / "learngene")
    assert mine.extra.keys() == theirs.extra.keys() >= {"source", "source_tag", "global_step", "dtype", "val_top1",
                                                        learngene_file.PREPROCESSING}
    assert {k: v for k, v in mine.extra.items() if k != "source"} == \
        {k: v for k, v in theirs.extra.items() if k != "source"}
    assert (mine.extra["source"], theirs.extra["source"]) == ("deepspeed-checkpoint", "trainer")
    configs = [json.loads((d / "config.json").read_text()) for d in (lg, run / "learngene")]
    assert configs[0].keys() == configs[1].keys()


def test_newest_complete_tag_is_picked(ckpts, tmp_path, capsys):
    root = ckpts / WITH_INCOMPLETE / "checkpoints"
    assert (root / tag(STEPS + 1)).is_dir()  # newer, but interrupted (no tleg_meta.json)
    lg = tmp_path / "lg.safetensors"
    for src in (root, root.parent, root / tag(STEPS)):  # checkpoints dir, run dir, tag dir
        assert main(["learngene", str(src), "--out", str(lg), "--force"]) == 0
        assert learngene_file.load(lg).extra["source_tag"] == tag(STEPS)
    assert_fails(capsys, tmp_path / "x.safetensors", [root / tag(STEPS + 1), "incomplete"],
                 "learngene", root, "--tag", tag(STEPS + 1), "--out", tmp_path / "x.safetensors")
    assert_fails(capsys, tmp_path / "x.safetensors", ["no such checkpoint tag", tag(STEPS)],
                 "learngene", root, "--tag", "step_99", "--out", tmp_path / "x.safetensors")


def copy_case(ckpts, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(ckpts / name, dst)
    return dst / "checkpoints" / tag(STEPS)


def test_not_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "out" / "lg.safetensors"
    (tmp_path / "empty").mkdir()
    assert_fails(capsys, out, [tmp_path / "empty", "not a DeepSpeed checkpoint"], "learngene", tmp_path / "empty",
                 "--out", out)
    (tmp_path / "file.txt").write_text("hello")
    assert_fails(capsys, out, [tmp_path / "file.txt", "not a directory"], "learngene", tmp_path / "file.txt",
                 "--out", out)
    assert_fails(capsys, out, [tmp_path / "nope", "no such"], "learngene", tmp_path / "nope", "--out", out)
    assert not out.parent.exists()  # not even the folder --out would have gone in
    folder = tmp_path / "lg_folder"
    assert_fails(capsys, folder, [tmp_path / "nope", "no such"], "learngene", tmp_path / "nope", "--out", folder)
    only_tag = tmp_path / "ck" / "step_1"
    only_tag.mkdir(parents=True)
    (only_tag / "mp_rank_00_model_states.pt").write_bytes(b"x")
    assert_fails(capsys, out, [tmp_path / "ck", "no complete checkpoint", "step_1"], "learngene", tmp_path / "ck",
                 "--out", out)
    (only_tag / "tleg_meta.json").write_text(json.dumps({"format": "something-else"}))
    assert_fails(capsys, out, [only_tag / "tleg_meta.json", "not tleg checkpoint metadata"], "learngene",
                 only_tag, "--out", out)


def test_an_existing_learngene_folder_file_is_refused_before_the_checkpoint_is_read(tmp_path, capsys):
    """Every file of a learngene --out folder is checked first (as export does), not only its weights:
    a stale config.json used to be refused only after the slow consolidation."""
    folder = tmp_path / "lg_folder"
    folder.mkdir()
    (folder / "config.json").write_text("keep")
    code, err = cli(capsys, "learngene", tmp_path / "nope", "--out", folder)
    assert code == 1 and str(folder / "config.json") in err and "--force" in err, err
    assert (folder / "config.json").read_text() == "keep"


def test_wrong_stage(ckpts, tmp_path, capsys):
    out = tmp_path / "lg.safetensors"
    assert_fails(capsys, out, [ckpts / "des_z2_r1" / "checkpoints" / tag(STEPS), "finetune-stage", "export"],
                 "learngene", ckpts / "des_z2_r1" / "checkpoints", "--out", out)


@pytest.mark.parametrize("name, victim", [("aux_z2_r2", "mp_rank_00_model_states.pt"),
                                          ("aux_z3_r2", "zero_pp_rank_1_mp_rank_00_optim_states.pt")])
@pytest.mark.parametrize("damage", ["truncate", "garbage0", "garbage1", "garbage2"])
def test_truncated_or_corrupt_file(ckpts, tmp_path, capsys, name, victim, damage):
    """Seeded random bytes: each seed drives the unpickler down another path (one raised a bare
    IndexError before the converter caught every load failure); seeded so a failure repeats."""
    tag_dir = copy_case(ckpts, tmp_path, name)
    f = tag_dir / victim
    data = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    else:
        f.write_bytes(random.Random(int(damage[-1])).randbytes(len(data)))
    out = tmp_path / "out" / "lg.safetensors"
    assert_fails(capsys, out, [f, "corrupt"], "learngene", tag_dir, "--out", out)


def test_missing_rank_shard(ckpts, tmp_path, capsys):
    tag_dir = copy_case(ckpts, tmp_path, "aux_z2_r2")
    (tag_dir / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    out = tmp_path / "lg.safetensors"
    assert_fails(capsys, out, [tag_dir, "Expected 2"], "learngene", tag_dir, "--out", out)


def test_shapes_that_do_not_match_the_metadata(ckpts, tmp_path, capsys):
    tag_dir = copy_case(ckpts, tmp_path, "aux_z3_r1")
    meta = json.loads((tag_dir / "tleg_meta.json").read_text())
    meta["arch"]["num_classes"] = 7
    (tag_dir / "tleg_meta.json").write_text(json.dumps(meta))
    out = tmp_path / "lg.safetensors"
    assert_fails(capsys, out, [tag_dir, "head.weight", "shape"], "learngene", tag_dir, "--out", out)


@pytest.mark.parametrize("command, name", [("learngene", "aux_z1_r1"), ("export", "des_z2_r1")])
def test_a_marker_without_recorded_preprocessing_is_refused_in_one_line(ckpts, tmp_path, capsys, command, name):
    """Checkpoints from before runs recorded their eval transform: refused, not given a guessed one."""
    tag_dir = copy_case(ckpts, tmp_path, name)
    meta = json.loads((tag_dir / "tleg_meta.json").read_text())
    del meta["preprocessing"]
    (tag_dir / "tleg_meta.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    assert_fails(capsys, out, [tag_dir / "tleg_meta.json", "predates recorded eval preprocessing"],
                 command, tag_dir, "--out", out)


def test_existing_output_needs_force(ckpts, tmp_path, capsys):
    out = tmp_path / "lg.safetensors"
    out.write_bytes(b"keep me")
    code, err = cli(capsys, "learngene", ckpts / "aux_z1_r1" / "checkpoints", "--out", out)
    assert code == 1 and str(out) in err and "--force" in err and out.read_bytes() == b"keep me"
    assert main(["learngene", str(ckpts / "aux_z1_r1" / "checkpoints"), "--out", str(out), "--force"]) == 0
    learngene_file.load(out)


class _RunsCode:
    """Unpickling this runs os.mkdir(path): a stand-in for a malicious checkpoint."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_pickled_code_is_refused_unless_allowed(ckpts, tmp_path, capsys):
    tag_dir = copy_case(ckpts, tmp_path, "aux_z0_r1")
    f = tag_dir / "mp_rank_00_model_states.pt"
    states = torch.load(f, weights_only=False)  # our own file, made by the fixture
    sentinel = tmp_path / "pwned"
    states["client"] = {"hook": _RunsCode(str(sentinel)), "args": argparse.Namespace(lr=1)}
    torch.save(states, f)
    out = tmp_path / "lg.safetensors"
    assert_fails(capsys, out, [f, "refusing to unpickle", "--allow-pickle"], "learngene", tag_dir, "--out", out)
    assert not sentinel.exists()
    # The escape hatch really is full pickle: only for checkpoints you made yourself.
    assert main(["learngene", str(tag_dir), "--out", str(out), "--allow-pickle"]) == 0
    assert sentinel.is_dir()
    assert torch.load is torch.serialization.load  # the guard put the real one back


def test_zero0_master_weights_are_only_named_when_unambiguous():
    a, b = torch.randn(3), torch.randn(4)
    module = {"a": a.bfloat16(), "b": b.bfloat16()}
    named = _fp32_masters([[b, a]], module)
    assert set(named) == {"a", "b"}  # any group order
    # each name gets its fp32 master (full precision), not the module's bf16 tensor cast back
    assert named["a"].dtype == torch.float32 and torch.equal(named["a"], a) and torch.equal(named["b"], b)
    assert _fp32_masters([[a, b.neg()]], module) == {}  # b's master does not round to b
    twins = {"a": a.bfloat16(), "c": a.bfloat16()}
    assert _fp32_masters([[a, a + 1e-4]], twins) == {}  # identical bf16 twins: ambiguous
