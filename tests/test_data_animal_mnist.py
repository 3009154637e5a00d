"""data.format=animal_mnist: read from the installed wheel without importing it or unpickling code,
de-duplicated, in a fixed order, split 50 per class / 1,000 held out / the rest as test."""

import gzip
import logging
import pickle

import numpy as np
import pytest
import torch

from tleg_dist.config import DataConfig
from tleg_dist.data import DataError, build_data
from tleg_dist.data import animal_mnist as am
from tleg_dist.data.splits import select, split_pool
from tleg_dist.models.arch import ViTArch

try:
    am._files(None)
    INSTALLED = True
except DataError:
    INSTALLED = False
needs_package = pytest.mark.skipif(not INSTALLED, reason=am.INSTALL)
EXPERIMENT = dict(format="animal_mnist", train_per_class=50, val_split=1000)


def write_pool(folder, images, labels):
    folder.mkdir(exist_ok=True)
    for name, value in ((am.IMAGES, images), (am.LABELS, labels)):
        (folder / name).write_bytes(gzip.compress(pickle.dumps(value)))
    am.load_pool.cache_clear()
    return folder


class Payload:
    """Unpickling this runs exec(): it writes a file, proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def test_a_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.gz"
    path.write_bytes(gzip.compress(pickle.dumps([np.zeros(3), Payload(marker)])))
    with pytest.raises(DataError, match=r"refused to load builtins.exec: only numpy arrays are admitted"):
        am.read_array(path)
    assert not marker.exists()
    path.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        am.read_array(path)


def test_duplicates_are_dropped_and_the_order_is_fixed(tmp_path, caplog):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    images[7] = images[2]  # an exact repeat: dropped, the first occurrence stays
    labels = np.arange(12) % 3
    root = write_pool(tmp_path, images, labels)
    with caplog.at_level(logging.INFO, logger="tleg_dist.data.animal_mnist"):
        x, y = am.load_pool(root)
    assert "dropped 1 exact duplicate image(s) of 12" in caplog.text
    assert len(x) == 11 and x.dtype == torch.uint8 and y.dtype == torch.int64
    kept = [i for i in range(12) if i != 7]
    order = torch.randperm(11, generator=torch.Generator().manual_seed(am.ORDER_SEED))
    assert torch.equal(x, torch.from_numpy(images[kept])[order]) and y.tolist() == labels[kept][order].tolist()


def test_missing_package_says_how_to_install(monkeypatch):
    from importlib.metadata import PackageNotFoundError

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(am, "distribution", missing)
    am.load_pool.cache_clear()
    with pytest.raises(DataError, match=r"pip install --no-deps animal-mnist==0\.4"):
        build_data(DataConfig(**EXPERIMENT), ViTArch(), rank=0, world_size=1, seed=0)
    am.load_pool.cache_clear()


def test_wrong_arrays_are_named(tmp_path):
    root = write_pool(tmp_path, np.zeros((4, 28, 28), np.float32), np.zeros(4, np.int64))
    with pytest.raises(DataError, match="not N x H x W uint8"):
        am.load_pool(root)


@needs_package
def test_the_wheel_fixed_statistics_and_order():
    am.load_pool.cache_clear()
    x, y = am.load_pool()
    assert x.shape == (9716, 28, 28)  # 284 of the 10,000 images are exact repeats
    assert len(torch.unique(x.flatten(1), dim=0)) == len(x)
    assert torch.bincount(y).tolist() == [937, 812, 992, 996, 997, 1000, 1000, 997, 985, 1000]
    px = x.float() / 255  # the fixed normalisation pair is the de-duplicated pool's, as the module says
    assert px.mean().item() == pytest.approx(am.MEAN, abs=1e-4)
    assert px.std().item() == pytest.approx(am.STD, abs=1e-4)
    assert y[:10].tolist() == [3, 4, 1, 7, 7, 5, 1, 7, 5, 6]  # the fixed order (ORDER_SEED)


@needs_package
def test_experiment_split_is_balanced_and_disjoint():
    _, y = am.load_pool()
    s = split_pool(y, am.NUM_CLASSES, DataConfig(**EXPERIMENT), "Animal-MNIST")
    train, val, rest = (set(t.tolist()) for t in (s.train, s.val, s.rest))
    assert not train & val and not train & rest and not val & rest and train | val | rest == set(range(len(y)))
    assert torch.bincount(s.train_labels).tolist() == [50] * 10 and len(val) == 1000 and len(rest) == 8216
    assert min(torch.bincount(s.val_labels, minlength=10).tolist()) > 70  # the fixed order mixes the classes
    test = select(DataConfig(**EXPERIMENT), y, am.NUM_CLASSES, None, "Animal-MNIST")
    assert test.eval_from_pool and set(test.eval.tolist()) == rest


@needs_package
@pytest.mark.parametrize("eval_on, n_eval", [("val", 1000), ("test", 8216)])
def test_bundle_of_the_experiment_setting(eval_on, n_eval):
    b = build_data(DataConfig(**EXPERIMENT, eval_on=eval_on, batch_size=50, eval_batch_size=1000), ViTArch(),
                   rank=0, world_size=1, seed=0)
    assert len(b.train) == 10 and sum(len(y) for _, y in b.val) == n_eval and b.num_classes == 10
    x = b.prepare(next(iter(b.train.epoch(0)))[0])
    assert x.shape == (50, 1, 28, 28) and x.dtype == torch.float32
    assert b.preprocessing == {"interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center",
                               "mean": [am.MEAN], "std": [am.STD]}
    assert b.train_fingerprint is not None
