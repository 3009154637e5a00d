"""The data side of the teacher-logit cache: which settings vary per epoch, a fingerprint of the
training set, and the un-augmented images of an epoch's index batches."""

import pytest
import torch

from tleg_dist.config import AugConfig, DataConfig
from tleg_dist.data import build_data
from tleg_dist.data import fashion_mnist as fm
from tleg_dist.models.arch import ViTArch

ARCH = ViTArch(img_size=8, patch_size=4, in_chans=1, num_classes=4)


def test_per_epoch_names_exactly_the_settings_that_vary():
    assert AugConfig().per_epoch() == []
    assert AugConfig(label_smoothing=0.1).per_epoch() == []  # the same targets every epoch
    every = AugConfig(randaugment="rand-m9", hflip=0.5, random_resized_crop=True, mixup=0.8, cutmix=1.0,
                      reprob=0.25)
    assert every.per_epoch() == ["data.aug.randaugment", "data.aug.hflip", "data.aug.random_resized_crop",
                                 "data.aug.mixup", "data.aug.cutmix", "data.aug.reprob"]
    assert AugConfig(cutmix=1.0).per_epoch() == ["data.aug.cutmix"]


def synthetic(seed=0, **data):
    return build_data(DataConfig(**{"format": "synthetic", "synthetic_size": 64, "batch_size": 8, **data}), ARCH,
                      rank=0, world_size=1, seed=seed)


def test_fingerprint_follows_the_training_set_and_prepare():
    base = synthetic().train_fingerprint
    assert base is not None and len(base) == 64
    assert synthetic().train_fingerprint == base
    assert synthetic(batch_size=4).train_fingerprint == base  # batching is not content
    assert synthetic(seed=1).train_fingerprint != base  # other images
    assert synthetic(train_limit=32).train_fingerprint != base
    assert synthetic(classes=[0, 1]).train_fingerprint != base
    other_prepare = build_data(DataConfig(format="synthetic", synthetic_size=64, batch_size=8),
                               ViTArch(img_size=8, patch_size=4, in_chans=3, num_classes=4), rank=0,
                               world_size=1, seed=0)
    assert other_prepare.train_fingerprint != base


def test_image_files_cannot_say(tmp_path):
    from PIL import Image
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / split / c / f"{i}.png")
    b = build_data(DataConfig(format="imagefolder", root=tmp_path, batch_size=2), ARCH, rank=0, world_size=1,
                   seed=0)
    assert b.train_fingerprint is None
    with pytest.raises(TypeError, match="fingerprint"):
        b.train.fetch([[0]])


@pytest.mark.parametrize("world_size", [1, 2])
def test_fetch_gives_the_epochs_images_in_batch_order(world_size):
    for rank in range(world_size):
        b = build_data(DataConfig(format="synthetic", synthetic_size=64, batch_size=8), ARCH, rank=rank,
                       world_size=world_size, seed=3)
        batches = b.train.batches(1)
        assert len(batches) == len(b.train)
        for (x, y), (fx, fy) in zip(b.train.epoch(1), b.train.fetch(batches), strict=True):
            assert torch.equal(x, fx) and torch.equal(y, fy)


@pytest.mark.skipif(not (fm.DEFAULT_ROOT / "train-images-idx3-ubyte.gz").is_file(),
                    reason="apt-get install dataset-fashion-mnist")
def test_fetch_is_unaugmented_where_training_augments():
    plain = DataConfig(train_limit=16, val_limit=8, batch_size=8)
    aug = plain.model_copy(update={"aug": AugConfig(hflip=1.0)})
    a, p = (build_data(c, ViTArch(), rank=0, world_size=1, seed=0) for c in (aug, plain))
    assert a.train_fingerprint == p.train_fingerprint is not None  # the images held, before augmenting
    idx = a.train.batches(0)
    fetched = [x for x, _ in a.train.fetch(idx)]
    assert all(torch.equal(f, x) for f, (x, _) in zip(fetched, p.train.epoch(0), strict=True))
    assert all(torch.equal(f.flip(-1), x) for f, (x, _) in zip(fetched, a.train.epoch(0), strict=True))
