"""uint8 batches normalised on the device give exactly the tensors the host-side float path gave."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_transform

from tleg_dist.config import AugConfig, DataConfig
from tleg_dist.data import build_data
from tleg_dist.data import fashion_mnist as fm
from tleg_dist.data import transforms as T
from tleg_dist.data.device import to_device
from tleg_dist.data.normalize import EVAL_CROP_PCT, INTERPOLATION, Normalize, SourceStats, imagenet_stats
from tleg_dist.models.arch import ViTArch


def old_fashion_mnist(images, in_chans, img_size):
    """The host-side float path as it was: normalise N x H x W, add the channel, resize, repeat."""
    x = images.float().div_(255).sub_(fm.MEAN).div_(fm.STD).unsqueeze(1)
    if img_size != x.shape[-1]:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False,
                          antialias=img_size < x.shape[-1])
    return x.expand(-1, in_chans, -1, -1).contiguous() if in_chans != 1 else x


@pytest.mark.parametrize("in_chans,img_size", [(1, 28), (3, 32), (1, 16)])
def test_fashion_mnist_uint8_on_device_equals_host_float(in_chans, img_size):
    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    new = SourceStats.grey(fm.MEAN, fm.STD).normalize(in_chans, img_size)(images.unsqueeze(1))
    assert torch.equal(new, old_fashion_mnist(images, in_chans, img_size))


@pytest.mark.parametrize("aug", [AugConfig(), AugConfig(hflip=0.5, random_resized_crop=True,
                                                        randaugment="rand-m9-mstd0.5-inc1")])
def test_timm_transform_uint8_then_normalize_equals_float_transform(aug):
    mean, std = imagenet_stats(3)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    crop = {} if aug.random_resized_crop else dict(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    old_train = T._patch_posterize(create_transform(
        24, is_training=True, hflip=aug.hflip, auto_augment=aug.randaugment or None, color_jitter=None,
        interpolation=INTERPOLATION, mean=mean, std=std, re_prob=0.0, **crop))
    old_eval = create_transform(24, is_training=False, crop_pct=EVAL_CROP_PCT, interpolation=INTERPOLATION,
                                mean=mean, std=std)
    norm = Normalize(mean, std)
    for i in range(5):
        with T.seeded(0, 0, i):
            raw = T.train_transform(aug, 24, mean, std)(img)
        with T.seeded(0, 0, i):
            want = old_train(img)
        assert raw.dtype == torch.uint8
        assert torch.equal(norm(raw[None])[0], want)
    assert torch.equal(norm(T.eval_transform(24)(img)[None])[0], old_eval(img))


def test_random_erasing_keeps_the_float_path():
    raw = T.train_transform(AugConfig(reprob=1.0), 16, *imagenet_stats(3))(Image.new("RGB", (16, 16)))
    assert raw.dtype == torch.float32
    assert Normalize(*imagenet_stats(3))(raw) is raw


def test_synthetic_images_depend_only_on_their_index():
    cfg = DataConfig(format="synthetic", synthetic_size=64, batch_size=8)
    arch = ViTArch(img_size=16, patch_size=4, in_chans=3, num_classes=5)
    bundle = build_data(cfg, arch, rank=0, world_size=1, seed=3)
    order = bundle.train.batches(0)
    raw = torch.cat([x for x, _ in bundle.train.epoch(0)])
    assert raw.dtype == torch.uint8
    again = torch.cat([x for x, _ in bundle.train.epoch(0, start_batch=3)])
    assert torch.equal(again, raw[3 * 8:])
    # Another batching of the same items (2 ranks) gives each item the same pixels.
    other = build_data(cfg.model_copy(update={"batch_size": 4}), arch, rank=1, world_size=2, seed=3)
    by_index = dict(zip(sum(order, []), raw))
    for idx, (x, _) in zip(other.train.batches(0), other.train.epoch(0)):
        assert all(torch.equal(by_index[i], xi) for i, xi in zip(idx, x) if i in by_index)


def test_to_device_prepares_each_batch_once_in_order():
    batches = [(torch.full((2, 1, 4, 4), i, dtype=torch.uint8), torch.tensor([i, i])) for i in range(3)]
    out = list(to_device(batches, torch.device("cpu"), Normalize((0.0,), (1 / 255,))))
    assert [y.tolist() for _, y in out] == [[0, 0], [1, 1], [2, 2]]
    assert all(torch.equal(x, torch.full((2, 1, 4, 4), float(i))) for i, (x, _) in enumerate(out))


def test_lookup_table_is_the_same_function_as_normalize():
    """FFCV's CPU pipeline normalises by `Normalize.table` (ffcv_ops.fresh_normalize): every value in
    every channel maps to exactly what Normalize gives."""
    norm = Normalize(*imagenet_stats(3))
    images = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, -1, -1)
    table = torch.from_numpy(norm.table()).T  # channel, value
    assert torch.equal(table[torch.arange(3).view(1, 3, 1, 1), images.long()], norm(images))
