"""A run stopped mid-epoch and resumed ends with exactly the weights of an uninterrupted one."""

import json

import pytest

from _launch import TINY, run_train, summary, weights_equal

COMMON = ["train.epochs=2", "train.progress=false", "data.synthetic_size=256", "data.batch_size=32",
          "model.drop_path_rate=0.1", "checkpoint.every_steps=3"]


def test_resume_mid_epoch_is_exact(tmp_path):
    full, parts = tmp_path / "full", tmp_path / "parts"
    run_train(["--config", str(TINY), f"output_dir={full}", *COMMON])
    # Stop at step 5 of 8 per epoch (mid-epoch), then at 11 (second epoch), then finish.
    run_train(["--config", str(TINY), f"output_dir={parts}", *COMMON, "train.max_steps=5"])
    meta = json.loads((parts / "checkpoints" / "step_00000005" / "tleg_meta.json").read_text())
    assert (meta["epoch"], meta["batch_in_epoch"]) == (0, 5)
    # the eval transform is recorded when the run trains (convert export reads it from here)
    assert set(meta["preprocessing"]) == {"interpolation", "crop_pct", "crop_mode", "mean", "std"}
    run_train(["--config", str(TINY), f"output_dir={parts}", "--resume", "auto", *COMMON, "train.max_steps=11"])
    run_train(["--config", str(TINY), f"output_dir={parts}", "--resume", "auto", *COMMON])
    assert summary(parts)["global_step"] == summary(full)["global_step"] == 16
    assert weights_equal(full / "learngene" / "learngene.safetensors", parts / "learngene" / "learngene.safetensors")
    # The metrics log shows the resumed run did not repeat finished steps.
    steps = [json.loads(line)["step"] for line in (parts / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == sorted(set(steps))


def test_existing_run_without_resume_is_refused(tmp_path):
    out = tmp_path / "run"
    run_train(["--config", str(TINY), f"output_dir={out}", *COMMON, "train.max_steps=2"])
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    r = run_train(["--config", str(TINY), f"output_dir={out}", *COMMON], check=False)
    assert r.returncode != 0
    assert "--resume auto" in r.stderr and str(out) in r.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_bad_override_names_key(tmp_path):
    r = run_train(["--config", str(TINY), f"output_dir={tmp_path}", "optim.lr=-1"], check=False)
    assert r.returncode == 2
    assert "optim.lr" in r.stderr


def test_summary_of_a_run_stopped_mid_epoch_evaluates_its_final_weights(tmp_path):
    """max_steps ends the run 2 steps into epoch 2: the summary (and the learngene's val_top1 beside
    its global_step) must describe the exported weights, not epoch 1's evaluation."""
    args = ["--config", str(TINY), *COMMON, "train.max_steps=10"]
    evaluated, plain = tmp_path / "evaluated", tmp_path / "plain"
    run_train([*args, f"output_dir={evaluated}"])  # evaluates after epoch 1 (step 8)
    run_train([*args, f"output_dir={plain}", "train.eval_every_epochs=3"])  # no evaluation before the end
    assert summary(evaluated)["global_step"] == summary(plain)["global_step"] == 10
    assert weights_equal(evaluated / "learngene" / "learngene.safetensors",
                         plain / "learngene" / "learngene.safetensors")
    for key in ("val_loss", "val_top1", "val_top5", "val_count"):
        assert summary(evaluated)[key] == summary(plain)[key], key
