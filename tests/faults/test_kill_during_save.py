"""A process killed while it saves a checkpoint: the next `--resume auto` uses the previous complete
one and the run ends with an uninterrupted run's weights.

A checkpoint is complete only once rank 0 has written <tag>/tleg_meta.json, after every rank's
shards (tleg_dist/training/checkpoint.py). DeepSpeed's own `latest` file is written before that
marker, so it may name a checkpoint that is not complete: it is never trusted.
"""

from __future__ import annotations

import shutil
import signal

from fault_helpers import (assert_same_weights, complete_steps, resumed_from, run, start, tree_digest,
                           wait_until)

TIMEOUT = 300


def resume_and_compare(recipe, out, reference, expect_tag):
    rc, log = run(recipe, out, resume="auto", name="resume", timeout=TIMEOUT)
    assert rc == 0, log[-3000:]
    assert resumed_from(log)[0] == expect_tag
    assert_same_weights(out / "learngene" / "learngene.safetensors", reference / "learngene" / "learngene.safetensors")


def test_kill_between_shards_and_marker_resumes_from_previous(recipe, reference_1rank, tmp_path):
    out = tmp_path / "run"
    shard = out / "checkpoints" / "step_00000008" / "mp_rank_00_model_states.pt"
    r = start(recipe, out, save_delay_s=2)  # rank 0 holds each marker back for 2 s
    try:
        # step 8's shards are written, its marker is not: kill now
        wait_until(lambda: shard.is_file() and "step_00000008/tleg_meta.json back" in r.log, TIMEOUT,
                   "step 8's shards", r)
        r.proc.send_signal(signal.SIGKILL)
        assert r.wait(30) == -signal.SIGKILL
    finally:
        r.kill_all()
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000008"  # DeepSpeed's: wrong
    assert not (shard.parent / "tleg_meta.json").exists()
    assert complete_steps(out) == [4]
    resume_and_compare(recipe, out, reference_1rank, "step_00000004")


def test_kill_while_writing_a_shard_resumes_from_previous(recipe, reference_1rank, tmp_path):
    out = tmp_path / "run"
    rc, log = run(recipe, out, die_in_save="step_00000012", timeout=TIMEOUT)
    assert rc == -signal.SIGKILL, log[-3000:]
    assert "dying while writing" in log
    assert complete_steps(out) == [4, 8]  # 12 is a half-written shard without a marker
    assert (out / "checkpoints" / "step_00000012").is_dir()
    resume_and_compare(recipe, out, reference_1rank, "step_00000008")
    assert not (out / "checkpoints" / "step_00000004").exists()  # pruned later as usual (keep_last=2)


def test_complete_checkpoint_is_never_rewritten_in_place(recipe, reference_1rank, tmp_path):
    """Epoch ends fall on periodic saves (steps 16 and 32). A second save of the same step must
    not rewrite the shards under a marker that already says 'complete': a kill in between would
    leave a checkpoint that resume trusts and cannot load. The driver dies (after cutting the
    shard in half) the moment any shard is written into a completed tag folder."""
    out = tmp_path / "run"
    rc, log = run(recipe, out, die_on_overwrite=1, timeout=TIMEOUT)
    assert rc == 0 and "dying" not in log, log[-3000:]
    assert_same_weights(out / "learngene" / "learngene.safetensors",
                        reference_1rank / "learngene" / "learngene.safetensors")
    meta_32 = (out / "checkpoints" / "step_00000032" / "tleg_meta.json").read_text()
    assert '"epoch": 2' in meta_32 and '"batch_in_epoch": 0' in meta_32  # the marker did move on



def test_damaged_complete_checkpoint_is_named_and_left_alone(recipe, reference_1rank, tmp_path):
    """Bytes damaged after the marker was written (bad disk, a careless copy): resume names the
    checkpoint and the way out, instead of an unpickler traceback, and changes nothing."""
    out = tmp_path / "run"
    shutil.copytree(reference_1rank, out)
    newest = out / "checkpoints" / f"step_{complete_steps(out)[-1]:08d}"
    shard = newest / "mp_rank_00_model_states.pt"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    before = tree_digest(out / "checkpoints")
    rc, log = run(recipe, out, resume="auto", name="resume", timeout=TIMEOUT)
    assert rc != 0
    assert f"{newest}: marked complete but unreadable" in log and "--resume" in log, log[-3000:]
    assert "Traceback" not in log
    assert tree_digest(out / "checkpoints") == before
