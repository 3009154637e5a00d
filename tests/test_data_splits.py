"""Training subset, validation split and test set: the experiment's settings work, and the three
are disjoint."""

import pytest
import torch

from tleg_dist.config import DataConfig
from tleg_dist.data import DataError, build_data
from tleg_dist.data import fashion_mnist as fm
from tleg_dist.data.splits import select, split_pool
from tleg_dist.models.arch import ViTArch

needs_fashion_mnist = pytest.mark.skipif(not (fm.DEFAULT_ROOT / "train-images-idx3-ubyte.gz").is_file(),
                                         reason="apt-get install dataset-fashion-mnist")


def labels(n, k=5):
    return torch.arange(n) % k


def as_set(t):
    return set(t.tolist())


def test_val_split_is_the_last_n_and_training_defaults_to_the_rest():
    s = split_pool(labels(20), 5, DataConfig(val_split=6), "toy")
    assert s.val.tolist() == list(range(14, 20)) and s.train.tolist() == list(range(14))
    assert len(s.rest) == 0


def test_train_per_class_takes_the_first_n_of_each_class_in_pool_order():
    s = split_pool(labels(20), 5, DataConfig(train_per_class=2, val_split=5), "toy")
    assert s.train.tolist() == list(range(10)) and torch.bincount(s.train_labels).tolist() == [2] * 5
    assert s.rest.tolist() == list(range(10, 15))


def test_classes_are_applied_first_then_relabelled():
    s = split_pool(labels(40), 5, DataConfig(classes=[4, 1], train_per_class=3, val_split=2), "toy")
    assert s.train.tolist() == [1, 4, 6, 9, 11, 14] and s.train_labels.tolist() == [1, 0] * 3
    assert s.val.tolist() == [36, 39] and s.val_labels.tolist() == [1, 0]


@pytest.mark.parametrize("setting", [{"train_limit": 16}, {"train_per_class": 4}])
def test_an_overlap_names_both_settings(setting):
    with pytest.raises(DataError, match=rf"data.{next(iter(setting))}=\d+ and data.val_split=5 overlap"):
        split_pool(labels(20), 5, DataConfig(val_split=5, **setting), "toy")


def test_too_few_images_of_a_class_and_a_split_of_everything_are_named():
    with pytest.raises(DataError, match=r"train_per_class=5, but class\(es\) \[4\]"):
        split_pool(torch.tensor([0, 1, 2, 3] * 5 + [4]), 5, DataConfig(train_per_class=5), "toy")
    with pytest.raises(DataError, match="whole pool"):
        split_pool(labels(20), 5, DataConfig(val_split=20), "toy")


def test_one_pool_source_tests_on_the_rest_and_eval_on_val_reads_the_split():
    pool = labels(30)
    test = select(DataConfig(train_per_class=2, val_split=5), pool, 5, None, "toy")
    val = select(DataConfig(train_per_class=2, val_split=5, eval_on="val"), pool, 5, None, "toy")
    assert test.eval_from_pool and val.eval_from_pool
    assert as_set(test.eval) == set(range(10, 25)) and as_set(val.eval) == set(range(25, 30))
    official = select(DataConfig(val_split=5), pool, 5, labels(7), "toy")
    assert not official.eval_from_pool and official.eval.tolist() == list(range(7))


@needs_fashion_mnist
@pytest.mark.parametrize("setting, n_train, n_eval", [
    # same_task, tuning and final: 20k training images, the last 5k held out, the official test set
    (dict(train_limit=20000, val_split=5000, eval_on="val"), 20000, 5000),
    (dict(train_limit=20000, val_split=5000), 20000, 10000),
    # transfer_fewshot (A): 50 per class of classes 5-9, a 1,000-image split, their 5,000 test images
    (dict(classes=[5, 6, 7, 8, 9], train_per_class=50, val_split=1000, eval_on="val"), 250, 1000),
    (dict(classes=[5, 6, 7, 8, 9], train_per_class=50, val_split=1000), 250, 5000),
])
def test_fashion_mnist_settings_of_the_experiment(setting, n_train, n_eval):
    cfg = DataConfig(**setting)
    pool, test = fm.load_split(None, "train")[1], fm.load_split(None, "val")[1]
    s = split_pool(pool, 10, cfg, "Fashion-MNIST")
    assert len(s.train) == n_train and len(s.val) == setting["val_split"]
    assert not as_set(s.train) & as_set(s.val)
    if "classes" not in setting:  # the last 5,000 of the 60,000 training images
        assert as_set(s.val) == set(range(55000, 60000))
    sel = select(cfg, pool, 10, test, "Fashion-MNIST")
    assert sel.eval_from_pool == (cfg.eval_on == "val")  # the test set is another file: disjoint by construction
    b = build_data(cfg.model_copy(update={"batch_size": 50, "eval_batch_size": 1000}),
                   ViTArch(num_classes=sel.num_classes), rank=0, world_size=1, seed=0)
    assert len(b.train) * 50 == n_train and sum(len(y) for _, y in b.val) == n_eval
    assert b.num_classes == (5 if "classes" in setting else 10)
