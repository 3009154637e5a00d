"""ImageFolder: DeiT augmentation that is deterministic across workers, bad images, bad trees."""

import logging

import numpy as np
import psutil
import pytest
import torch
from PIL import Image

from tleg_dist.config import AugConfig, DataConfig
from tleg_dist.data import BadImageError, DataError, build_data
from tleg_dist.models.arch import ViTArch

ARCH = ViTArch(img_size=32, patch_size=8, in_chans=3, num_classes=3)
DEIT_AUG = AugConfig(randaugment="rand-m9-mstd0.5-inc1", hflip=0.5, random_resized_crop=True, reprob=0.25)


def make_tree(root, classes=("cat", "dog", "eel"), n_train=6, n_val=2):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                size = (40 + 3 * i, 36)  # non-square, varied sizes
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i:03d}.jpg", quality=90)
    return root


def cfg(root, **kw):
    base = dict(format="imagefolder", root=root, batch_size=4, eval_batch_size=3, aug=DEIT_AUG)
    return DataConfig(**{**base, **kw})


def epoch_tensors(bundle, epoch, start=0):
    return [(x.clone(), y.clone()) for x, y in bundle.train.epoch(epoch, start)]


def test_shapes_labels_and_eval(tmp_path):
    b = build_data(cfg(make_tree(tmp_path)), ARCH, rank=0, world_size=1, seed=0)
    assert b.num_classes == 3 and len(b.train) == 4
    x, y = next(iter(b.train.epoch(0)))
    assert x.shape == (4, 3, 32, 32) and set(y.tolist()) <= {0, 1, 2}
    vals = list(b.val)
    assert [len(y) for _, y in vals] == [3, 3]
    assert torch.cat([y for _, y in vals]).tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(vals[0][0], next(iter(b.val))[0])  # eval is deterministic


def test_augmentation_same_for_any_worker_count_and_on_resume(tmp_path):
    root = make_tree(tmp_path)
    b0 = build_data(cfg(root, num_workers=0), ARCH, rank=0, world_size=1, seed=3)
    b2 = build_data(cfg(root, num_workers=2), ARCH, rank=0, world_size=1, seed=3)
    state = torch.get_rng_state()
    e0 = epoch_tensors(b0, 1)
    assert torch.equal(state, torch.get_rng_state())  # in-process augmentation restores the RNG
    e2 = epoch_tensors(b2, 1)
    assert len(e0) == len(e2) == 4
    for (x0, y0), (x2, y2) in zip(e0, e2):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    resumed = epoch_tensors(b2, 1, start=2)
    assert len(resumed) == len(e0) - 2  # the whole tail: zip alone would compare nothing if it were empty
    for (x, y), (xt, yt) in zip(e0[2:], resumed):
        assert torch.equal(x, xt) and torch.equal(y, yt)
    # Augmentation really is random across epochs and seeds.
    assert not torch.equal(e0[0][0], epoch_tensors(b0, 2)[0][0])
    b_other = build_data(cfg(root), ARCH, rank=0, world_size=1, seed=4)
    assert b_other.train.batches(1) != b0.train.batches(1)


def test_mixup_built_when_enabled(tmp_path):
    aug = DEIT_AUG.model_copy(update=dict(mixup=0.8, cutmix=1.0, label_smoothing=0.1))
    b = build_data(cfg(make_tree(tmp_path), aug=aug), ARCH, rank=0, world_size=1, seed=0)
    x, y = next(iter(b.train.epoch(0)))
    mx, my = b.mixup(x, y)
    assert mx.shape == x.shape and my.shape == (4, 3)
    assert torch.allclose(my.sum(1), torch.ones(4))
    with pytest.raises(DataError, match="even"):
        build_data(cfg(tmp_path, aug=aug, batch_size=3), ARCH, rank=0, world_size=1, seed=0)


def corrupt(root):
    bad = root / "train" / "dog" / "001.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated JPEG
    (root / "train" / "eel" / "002.jpg").write_bytes(b"not an image at all")
    return bad


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_image_fail_names_the_path(tmp_path, workers):
    root = make_tree(tmp_path)
    corrupt(root)
    b = build_data(cfg(root, num_workers=workers), ARCH, rank=0, world_size=1, seed=0)
    with pytest.raises(BadImageError, match=r"train/(dog/001|eel/002)\.jpg"):
        list(b.train.epoch(0))


def test_bad_image_skip_counts(tmp_path, caplog):
    root = make_tree(tmp_path)
    corrupt(root)
    # Batches of 6 cover all 18 training images, so both bad files are met.
    b = build_data(cfg(root, on_bad_image="skip", aug=AugConfig(), batch_size=6), ARCH,
                   rank=0, world_size=1, seed=0)
    with caplog.at_level(logging.WARNING, logger="tleg_dist.data.streams"):
        sizes = [len(y) for _, y in b.train.epoch(0)]
    assert len(sizes) == 3 and sum(sizes) == 18 - 2
    assert "skipped 2 unreadable image(s) in epoch 0" in caplog.text
    assert "dog/001.jpg" in caplog.text and "eel/002.jpg" in caplog.text


def test_batch_left_with_one_image_under_mixup_says_so(tmp_path):
    """One of a batch's two images is unreadable: the other is dropped too (timm mixes pairs). The
    error must say that, not that every image of the batch was unreadable."""
    root = make_tree(tmp_path, classes=("cat",), n_train=2, n_val=1)
    (root / "train" / "cat" / "001.jpg").write_bytes(b"not an image at all")
    b = build_data(cfg(root, on_bad_image="skip", aug=AugConfig(mixup=0.8), batch_size=2), ARCH,
                   rank=0, world_size=1, seed=0)
    with pytest.raises(DataError, match=r"cat/001\.jpg") as err:
        list(b.train.epoch(0))
    assert "every image" not in str(err.value) and "mixup/cutmix" in str(err.value)


def test_empty_class_folder_is_named(tmp_path):
    root = make_tree(tmp_path)
    (root / "train" / "fox").mkdir()
    with pytest.raises(DataError, match=r"train/fox is empty"):
        build_data(cfg(root), ARCH, rank=0, world_size=1, seed=0)


def test_missing_split_and_unknown_val_class(tmp_path):
    with pytest.raises(DataError, match="ROOT/train"):
        build_data(cfg(tmp_path), ARCH, rank=0, world_size=1, seed=0)
    root = make_tree(tmp_path)
    (root / "val" / "yak").mkdir()
    Image.new("RGB", (8, 8)).save(root / "val" / "yak" / "a.jpg")
    with pytest.raises(DataError, match="yak"):
        build_data(cfg(root), ARCH, rank=0, world_size=1, seed=0)


def test_classes_subset_and_grey_model(tmp_path):
    root = make_tree(tmp_path)
    grey = ViTArch(img_size=32, patch_size=8, in_chans=1, num_classes=2)
    b = build_data(cfg(root, classes=[2, 0], batch_size=3), grey, rank=0, world_size=1, seed=0)
    assert b.num_classes == 2 and len(b.train) == 4
    ys = torch.cat([y for _, y in b.train.epoch(0)])
    assert sorted(ys.tolist()) == [0] * 6 + [1] * 6  # eel -> 0, cat -> 1
    x, vy = next(iter(b.val))
    assert x.shape[1] == 1 and vy.tolist() == [1, 1, 0]  # val order: cat, cat, eel


@pytest.mark.parametrize("how", ["consumer_leaves", "worker_raises"])
def test_workers_stop_as_soon_as_the_epoch_ends(tmp_path, how):
    root = make_tree(tmp_path)
    if how == "worker_raises":
        corrupt(root)
    b = build_data(cfg(root, num_workers=2, batch_size=2), ARCH, rank=0, world_size=1, seed=0)
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    epoch = b.train.epoch(0)
    if how == "consumer_leaves":
        next(epoch)
        assert {p.pid for p in me.children()} - before  # the workers run
        epoch.close()
    else:
        with pytest.raises(BadImageError) as err:  # the error, held as pytest holds it, keeps no worker
            list(epoch)
        assert err.value is not None
    assert not [p for p in me.children() if p.pid not in before and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
