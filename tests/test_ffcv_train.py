"""The trainer fed by FFCV: a learngene run stopped mid-epoch and resumed ends exactly where an
uninterrupted one does (same order, same position, same weights)."""

import json

import pytest

from _launch import TINY, run_train, summary, weights_equal

pytest.importorskip("ffcv")
pytestmark = [pytest.mark.ffcv, pytest.mark.slow]


def test_learngene_on_ffcv_resumes_exactly(tmp_path, fmnist_beton):
    train, val = fmnist_beton("train", 256), fmnist_beton("val", 64)
    common = ["data.format=ffcv", f"data.train_path={train}", f"data.val_path={val}", "data.train_limit=192",
              "data.batch_size=32", "data.num_workers=1", "model.depth=2", "model.embed_dim=32",
              "model.num_heads=2", "distill.type=none", "train.epochs=2", "train.progress=false",
              "checkpoint.every_steps=100"]
    full, parts = tmp_path / "full", tmp_path / "parts"
    run_train(["--config", str(TINY), f"output_dir={full}", *common])
    run_train(["--config", str(TINY), f"output_dir={parts}", *common, "train.max_steps=4"])  # 6 steps/epoch
    meta = json.loads((parts / "checkpoints" / "step_00000004" / "tleg_meta.json").read_text())
    assert (meta["epoch"], meta["batch_in_epoch"]) == (0, 4)
    run_train(["--config", str(TINY), f"output_dir={parts}", "--resume", "auto", *common])

    a, b = summary(full), summary(parts)
    assert a["global_step"] == b["global_step"] == 12 and a["status"] == b["status"] == "completed"
    assert weights_equal(full / "learngene" / "learngene.safetensors", parts / "learngene" / "learngene.safetensors")
    assert a["val_top1"] == b["val_top1"] and a["val_loss"] == b["val_loss"]
    steps = [json.loads(line)["step"] for line in (parts / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == sorted(set(steps))  # no step trained twice
