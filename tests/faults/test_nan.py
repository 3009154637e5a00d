"""A NaN loss: the run stops naming the step (train.nan_policy=stop), or skips the batch a bounded
number of times (nan_policy=skip, max_nan_skips). The last good checkpoint is kept and resumable.

The driver makes the loss NaN at chosen global micro-steps (TLEG_FAULT_NAN_AT), as a bad batch
or an overflow would, without touching the weights.
"""

from __future__ import annotations

import json

from fault_helpers import assert_same_weights, complete_steps, resumed_from, run

TIMEOUT = 300


def test_nan_stops_naming_the_step_and_last_checkpoint_resumes(recipe, reference_1rank, tmp_path):
    out = tmp_path / "run"
    rc, log = run(recipe, out, nan_at=9, timeout=TIMEOUT)  # micro-step 9 of epoch 0 (16 per epoch)
    assert rc == 1, log[-3000:]
    assert "NonFiniteLossError: non-finite loss at epoch 0, batch 9, optimizer step 9" in log, log[-3000:]
    assert "train.nan_policy=stop" in log
    assert complete_steps(out) == [4, 8]  # nothing saved at or after the bad step
    assert not (out / "learngene" / "learngene.safetensors").exists()
    # Also: a DeepSpeed checkpoint folder without its `latest` file resumes all the same,
    # because the newest complete tag is found by its tleg_meta.json.
    (out / "checkpoints" / "latest").unlink()
    rc, log = run(recipe, out, resume="auto", name="resume", timeout=TIMEOUT)
    assert rc == 0, log[-3000:]
    assert resumed_from(log) == ("step_00000008", 0, 8, 8)
    assert_same_weights(out / "learngene" / "learngene.safetensors",
                        reference_1rank / "learngene" / "learngene.safetensors")


def test_nan_skips_are_counted_and_bounded(recipe, tmp_path):
    out = tmp_path / "run"
    rc, log = run(recipe, out, "train.nan_policy=skip", "train.max_nan_skips=2", nan_at="3,5,7", timeout=TIMEOUT)
    assert rc == 1, log[-3000:]
    assert log.count("skipping non-finite loss") == 2, log[-3000:]
    # micro-steps 3 and 5 skipped, so micro-step 7 comes after 5 optimizer steps
    assert "non-finite loss at epoch 0, batch 7, optimizer step 5 (3 so far; train.nan_policy=skip, " \
           "max_nan_skips=2)" in log, log[-3000:]
    assert complete_steps(out) == [4]


def test_nan_skip_within_the_bound_completes(recipe, tmp_path):
    out = tmp_path / "run"
    rc, log = run(recipe, out, "train.nan_policy=skip", "train.max_nan_skips=2", nan_at="3", timeout=TIMEOUT)
    assert rc == 0, log[-3000:]
    assert log.count("skipping non-finite loss at step 3 (1/2)") == 1, log[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["global_step"] == 2 * 16 - 1  # one batch never became a step
