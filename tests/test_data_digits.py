"""data.format=digits: scikit-learn's load_digits, upsampled, split per class, through the real trainer."""

import pytest
import torch
from _launch import run_train, summary

from tleg_dist.config import DataConfig
from tleg_dist.data import build_data
from tleg_dist.data import digits
from tleg_dist.models.arch import ViTArch


def test_fixed_stratified_split():
    (x, y), (vx, vy) = digits.load_splits(28)
    assert x.shape == (1000, 28, 28) and vx.shape == (797, 28, 28) and x.dtype == vx.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [100] * 10
    assert torch.bincount(vy, minlength=10).tolist() == [78, 82, 77, 83, 81, 82, 81, 79, 74, 80]
    assert int(x.max()) == 255 and int(x.min()) == 0
    # The fixed normalisation pair is the train split's, as the module says.
    px = x.float() / 255
    assert px.mean().item() == pytest.approx(digits.MEAN, abs=1e-3)
    assert px.std().item() == pytest.approx(digits.STD, abs=1e-3)


def test_bundle_classes_limits_and_normalisation():
    b = build_data(DataConfig(format="digits", batch_size=1000, eval_batch_size=797), ViTArch(),
                   rank=0, world_size=1, seed=0)
    assert b.num_classes == 10 and len(b.train) == 1 and len(b.val) == 1
    raw, y = next(iter(b.train.epoch(0)))
    assert raw.shape == (1000, 1, 28, 28) and raw.dtype == torch.uint8 and len(set(y.tolist())) == 10
    x = b.prepare(raw)
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01
    sub = build_data(DataConfig(format="digits", classes=[3, 8], train_limit=50, val_limit=20, batch_size=10),
                     ViTArch(num_classes=2), rank=0, world_size=1, seed=0)
    assert sub.num_classes == 2 and len(sub.train) == 5
    assert set(torch.cat([y for _, y in sub.val]).tolist()) == {0, 1}
    assert b.preprocessing["mean"] == [digits.MEAN] and b.preprocessing["interpolation"] == "bilinear"


def test_trainer_runs_on_digits(tmp_path):
    out = tmp_path / "run"
    run_train(["--config", "configs/cpu/tiny_finetune.yaml", f"output_dir={out}", "data.format=digits",
               "data.train_limit=64", "data.val_limit=64", "data.batch_size=16", "train.epochs=1",
               "checkpoint.every_steps=null"])
    s = summary(out)  # about 4 s: one epoch of 4 steps
    assert s["status"] == "completed" and s["images_seen"] == 64 and s["val_count"] == 64, s
