"""Fashion-MNIST from the Debian package (dataset-fashion-mnist) and from a torchvision layout."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from tleg_dist.config import AugConfig, DataConfig
from tleg_dist.data import DataError, build_data
from tleg_dist.data import fashion_mnist as fm
from tleg_dist.models.arch import ViTArch

needs_package = pytest.mark.skipif(
    not (fm.DEFAULT_ROOT / "train-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist")


@needs_package
def test_loads_full_splits():
    x, y = fm.load_split(None, "train")
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60000,) and int(y.min()) == 0 and int(y.max()) == 9
    assert torch.bincount(y).tolist() == [6000] * 10
    vx, vy = fm.load_split(None, "val")
    assert vx.shape == (10000, 28, 28) and vy.shape == (10000,)


@needs_package
def test_bundle_batches_normalised_and_shaped():
    cfg = DataConfig(batch_size=500, eval_batch_size=1000)
    b = build_data(cfg, ViTArch(), rank=0, world_size=1, seed=0)
    assert len(b.train) == 120 and len(b.val) == 10 and b.num_classes == 10 and b.mixup is None
    raw, y = next(iter(b.train.epoch(0)))
    assert raw.dtype == torch.uint8  # raw pixels travel; the device normalises them
    x = b.prepare(raw)
    assert x.shape == (500, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    # The published stats: normalised training pixels have mean ~0, std ~1.
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05
    assert sum(len(y) for _, y in b.val) == 10000


@needs_package
def test_three_channels_and_resize():
    cfg = DataConfig(batch_size=4, train_limit=8, val_limit=8)
    b = build_data(cfg, ViTArch(in_chans=3, img_size=32, patch_size=4), rank=0, world_size=1, seed=0)
    x = b.prepare(next(iter(b.train.epoch(0)))[0])
    assert x.shape == (4, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 2])


@needs_package
def test_classes_subset_relabelled_and_limits():
    cfg = DataConfig(classes=[7, 2], train_limit=100, val_limit=30, batch_size=10, eval_batch_size=7)
    b = build_data(cfg, ViTArch(), rank=0, world_size=1, seed=0)
    assert b.num_classes == 2 and len(b.train) == 10
    _, y_all = fm.load_split(None, "train")
    first = torch.nonzero((y_all == 7) | (y_all == 2)).flatten()[:100]
    expected = (y_all[first] == 2).long()  # 7 -> 0, 2 -> 1
    seen = {}
    for idx, (_, y) in zip(b.train.batches(0), b.train.epoch(0)):
        seen.update(zip(idx, y.tolist()))
    assert sorted(seen) == list(range(100))
    assert [seen[i] for i in range(100)] == expected.tolist()
    vy = torch.cat([y for _, y in b.val])
    assert len(vy) == 30 and set(vy.tolist()) <= {0, 1}


@needs_package
def test_augmented_path_is_deterministic_and_keeps_global_rng():
    cfg = DataConfig(batch_size=8, train_limit=16, val_limit=8,
                     aug=AugConfig(hflip=0.5, random_resized_crop=True, reprob=0.5))
    b = build_data(cfg, ViTArch(), rank=0, world_size=1, seed=1)
    state = torch.get_rng_state()
    a = [x for x, _ in b.train.epoch(0)]
    assert torch.equal(state, torch.get_rng_state())
    again = [x for x, _ in b.train.epoch(0)]
    assert all(torch.equal(p, q) for p, q in zip(a, again))
    other = [x for x, _ in b.train.epoch(1)]
    assert not torch.equal(torch.cat(a).sum(0), torch.cat(other).sum(0))
    assert a[0].shape == (8, 1, 28, 28)


def test_missing_dataset_names_the_apt_package(tmp_path):
    with pytest.raises(DataError, match="dataset-fashion-mnist") as err:
        build_data(DataConfig(root=tmp_path), ViTArch(), rank=0, world_size=1, seed=0)
    assert "torchvision" in str(err.value) and str(tmp_path) in str(err.value)


def _write_idx(path: Path, arr: np.ndarray, compress: bool):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
def test_torchvision_layout_and_small_files(tmp_path, compress):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sfx = ".gz" if compress else ""
    for prefix, n in (("train", 20), ("t10k", 6)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n, 28, 28)), compress)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte{sfx}", np.arange(n) % 10, compress)
    b = build_data(DataConfig(root=tmp_path, batch_size=5), ViTArch(), rank=0, world_size=2, seed=0)
    assert len(b.train) == 2 and sum(len(y) for _, y in b.val) == 3
    x, _ = fm.load_split(tmp_path, "train")
    assert x.shape == (20, 28, 28)


def test_truncated_idx_is_an_error(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)), False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        fm.read_idx(path)


@pytest.mark.parametrize("damage", ["truncated", "not_gzip"])
def test_damaged_gz_idx_is_an_error_naming_the_file(tmp_path, damage):
    # The Debian package and torchvision's download both hold .gz files: a cut-off copy is the
    # likely truncation, and gzip's own EOFError/BadGzipFile named no file.
    path = tmp_path / "train-images-idx3-ubyte.gz"
    _write_idx(path, np.zeros((4, 28, 28)), True)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2] if damage == "truncated" else b"not a gzip file")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz") as err:
        fm.read_idx(path)
    assert "truncated" in str(err.value)
