"""The timm training transform, its posterize fix and the per-image seeding."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from tleg_dist.config import AugConfig
from tleg_dist.data import transforms as T
from tleg_dist.data.normalize import imagenet_stats


def test_posterize_zero_bits_is_black_not_an_error():
    img = Image.fromarray(np.full((8, 8, 3), 200, np.uint8))
    assert np.asarray(T.posterize(img, 0)).max() == 0
    assert np.asarray(T.posterize(img, 1)).max() == 128
    tf = T.train_transform(AugConfig(randaugment="rand-m10-mstd0-inc1"), 16, *imagenet_stats(3))
    ops = [op for t in tf.transforms for op in getattr(t, "ops", [])]
    assert any(op.aug_fn is T.posterize for op in ops)


@pytest.mark.parametrize("policy", ["rand-m10-n4-mstd0-inc1", "rand-m9-mstd0.5-inc1"])
def test_randaugment_at_max_magnitude_runs(policy):
    tf = T.train_transform(AugConfig(randaugment=policy), 16, *imagenet_stats(3))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8))
    for i in range(200):
        with T.seeded(0, 0, i):
            assert tf(img).shape == (3, 16, 16)


def test_seeded_is_reproducible_and_restores_global_state():
    before = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    with T.seeded(1, 2, 3):
        a = random.random(), np.random.rand(), torch.rand(1).item()
    with T.seeded(1, 2, 3):
        b = random.random(), np.random.rand(), torch.rand(1).item()
    with T.seeded(1, 2, 4):
        c = random.random(), np.random.rand(), torch.rand(1).item()
    assert a == b and a[0] != c[0] and a[2] != c[2]
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])


def test_has_image_aug_ignores_batch_level_mixing():
    assert not T.has_image_aug(AugConfig(mixup=0.8, cutmix=1.0, label_smoothing=0.1))
    assert T.has_image_aug(AugConfig(hflip=0.5))
    assert T.has_image_aug(AugConfig(randaugment="rand-m9-mstd0.5-inc1"))
