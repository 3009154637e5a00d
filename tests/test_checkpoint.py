"""Checkpoint discovery and pruning on fake tag folders (the engine side is covered by
tests/test_trainer_resume.py and tests/faults/)."""

import json

import pytest

from tleg_dist.artifacts.checkpoints import MARKER, CheckpointError, complete_tags, tag_for
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
