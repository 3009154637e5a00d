"""Synthetic data: deterministic from the seed, learnable, and shaped by the arch."""

import pytest
import torch

from tleg_dist.config import AugConfig, DataConfig
from tleg_dist.data import DataError, build_data
from tleg_dist.models.arch import ViTArch

ARCH = ViTArch(img_size=16, patch_size=4, in_chans=3, num_classes=5)


def all_train(bundle, epoch=0):
    xs, ys = zip(*bundle.train.epoch(epoch))
    return bundle.prepare(torch.cat(xs)), torch.cat(ys)


def test_deterministic_from_seed():
    cfg = DataConfig(format="synthetic", synthetic_size=64, batch_size=8)
    a = all_train(build_data(cfg, ARCH, rank=0, world_size=1, seed=1))
    b = all_train(build_data(cfg, ARCH, rank=0, world_size=1, seed=1))
    c = all_train(build_data(cfg, ARCH, rank=0, world_size=1, seed=2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (64, 3, 16, 16) and set(a[1].tolist()) <= set(range(5))


def test_labels_are_learnable_by_nearest_class_mean():
    cfg = DataConfig(format="synthetic", synthetic_size=400, batch_size=50, eval_batch_size=50)
    bundle = build_data(cfg, ARCH, rank=0, world_size=1, seed=0)
    x, y = all_train(bundle)
    means = torch.stack([x[y == k].mean(0) for k in range(5)]).flatten(1)
    vx, vy = map(torch.cat, zip(*bundle.val))
    vx = bundle.prepare(vx)
    pred = torch.cdist(vx.flatten(1), means).argmin(1)
    assert len(vy) == 100 and (pred == vy).float().mean() > 0.9


def test_classes_subset_limit_and_mixup():
    aug = AugConfig(mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    cfg = DataConfig(format="synthetic", synthetic_size=200, batch_size=10, classes=[4, 1],
                     train_limit=40, aug=aug)
    bundle = build_data(cfg, ARCH, rank=0, world_size=1, seed=0)
    assert bundle.num_classes == 2 and len(bundle.train) == 4
    x, y = all_train(bundle)
    assert set(y.tolist()) == {0, 1}
    mx, my = bundle.mixup(x[:10], y[:10])
    assert my.shape == (10, 2)


@pytest.mark.parametrize("classes", [[5], [1, 1], []])
def test_bad_classes_are_errors(classes):
    cfg = DataConfig(format="synthetic", synthetic_size=64, batch_size=8, classes=classes)
    with pytest.raises(DataError, match="data.classes"):
        build_data(cfg, ARCH, rank=0, world_size=1, seed=0)


def test_rank_outside_world_is_an_error():
    cfg = DataConfig(format="synthetic", synthetic_size=64, batch_size=8)
    with pytest.raises(ValueError, match="rank 2"):
        build_data(cfg, ARCH, rank=2, world_size=2, seed=0)
