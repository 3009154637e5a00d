"""Checkpoint discovery and pruning on fake tag folders (the engine side is covered by
tests/test_trainer_resume.py and tests/faults/)."""

import json

import pytest

from tleg_dist.artifacts.checkpoints import (MARKER, CheckpointError, check_meta, complete_tags, find, tag_for,
                                             write_marker)
from tleg_dist.training.checkpoint import Checkpointer, find_resume


def make_tag(root, step, complete=True):
    d = root / tag_for(step)
    d.mkdir(parents=True)
    (d / "shard.pt").write_bytes(b"x")
    if complete:
        (d / MARKER).write_text(json.dumps({"format": "tleg-checkpoint", "global_step": step}))
    return d


def test_resume_auto_takes_newest_complete(tmp_path):
    make_tag(tmp_path, 3)
    make_tag(tmp_path, 7)
    make_tag(tmp_path, 9, complete=False)  # killed mid-save
    assert find_resume(tmp_path, "auto") == tmp_path / tag_for(7)
    assert find_resume(tmp_path / "nothing", "auto") is None
    assert find_resume(tmp_path, None) is None


def test_resume_path_must_be_complete(tmp_path):
    d = make_tag(tmp_path, 9, complete=False)
    with pytest.raises(CheckpointError, match=str(d)):
        find_resume(tmp_path, str(d))


@pytest.mark.parametrize("keep_best", [True, False])
def test_prune_keeps_last_k_and_best(tmp_path, keep_best):
    for s in (1, 2, 3, 4):
        make_tag(tmp_path, s)
    make_tag(tmp_path, 5, complete=False)
    ck = Checkpointer(tmp_path, keep_last=2, keep_best=keep_best, is_main=True)
    ck.prune(protect={tag_for(4), tag_for(1)} if keep_best else {tag_for(4)})
    left = {t for _, t in complete_tags(tmp_path)}
    assert left == ({tag_for(1)} if keep_best else set()) | {tag_for(3), tag_for(4)}
    assert not (tmp_path / tag_for(5)).exists()


def test_resuming_another_stage_is_refused_by_name_before_deepspeed_loads(tmp_path):
    tag = tmp_path / "step_00000004"
    tag.mkdir()
    write_marker(tag, {"stage": "finetune", "global_step": 4})
    ck = Checkpointer(tmp_path, keep_last=2, keep_best=True, is_main=True)
    with pytest.raises(CheckpointError, match=f"{tag}: a finetune-stage checkpoint; this recipe trains stage learngene"):
        ck.load(None, tag, "learngene")  # no engine: nothing may be loaded


def test_marker_written_by_one_owner_is_found_by_trainer_and_converter(tmp_path):
    """artifacts/checkpoints.py writes the marker; resume and `convert` find the same tag through it."""
    run = tmp_path / "run"
    for step in (4, 8):
        d = run / "checkpoints" / tag_for(step)
        d.mkdir(parents=True)
        write_marker(d, {"stage": "learngene", "global_step": step})
    (run / "checkpoints" / tag_for(12)).mkdir()  # interrupted: no marker
    newest = run / "checkpoints" / tag_for(8)
    assert find_resume(run / "checkpoints", "auto") == find(run) == newest
    assert check_meta(newest)["format_version"] == "1"


@pytest.mark.parametrize("change, words", [({"format_version": "9"}, "unsupported format_version"),
                                           ({"stage": "pretrain"}, "unknown stage")])
def test_check_meta_refuses_what_it_does_not_know(tmp_path, change, words):
    write_marker(tmp_path, {"stage": "learngene", "global_step": 1, **change})
    # still complete: only a reader that converts needs to know it. This very folder must be listed:
    # tmp_path.parent also holds the other parametrisation's folder, so any non-empty answer would pass.
    assert (1, tmp_path.name) in complete_tags(tmp_path.parent)
    with pytest.raises(CheckpointError, match=words):
        check_meta(tmp_path)
