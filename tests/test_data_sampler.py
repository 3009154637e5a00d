"""The shard order is fixed (resumed runs and FFCV depend on it); train/val shards are disjoint,
equal-length and resumable."""

import pytest
import torch

from tleg_dist.config import DataConfig
from tleg_dist.data import build_data, shard_indices
from tleg_dist.data.sampler import train_batches, val_batches
from tleg_dist.models.arch import ViTArch


@pytest.mark.parametrize("drop_last, shards", [
    (True, [[8, 10, 4], [1, 9, 2], [5, 7, 0]]),
    (False, [[8, 10, 4, 6], [1, 9, 2, 3], [5, 7, 0, 8]]),  # padded by repeating the first indices
])
def test_shard_order_is_the_one_runs_were_trained_with(drop_last, shards):
    """The order of the hand-written sampler this replaced: a change here reorders resumed runs."""
    for rank, want in enumerate(shards):
        assert shard_indices(11, epoch=3, seed=17, rank=rank, world_size=3, shuffle=True, drop_last=drop_last) == want


def test_shard_indices_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank 2"):
        shard_indices(10, epoch=0, seed=0, rank=2, world_size=2, shuffle=True, drop_last=True)


@pytest.mark.parametrize("n,bs", [(103, 8), (64, 16), (50, 5)])
def test_train_batches_disjoint_full_and_equal_count(n, bs):
    per_rank = [train_batches(n, bs, epoch=1, seed=3, rank=r, world_size=2) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == (n // 2) // bs
    assert all(len(b) == bs for batches in per_rank for b in batches)
    flat = [[i for b in batches for i in b] for batches in per_rank]
    assert not set(flat[0]) & set(flat[1])
    assert len(set(flat[0])) == len(flat[0])
    # Another epoch gives another order.
    assert train_batches(n, bs, epoch=2, seed=3, rank=0, world_size=2) != per_rank[0]


def test_val_batches_partition_without_padding():
    shares = [val_batches(11, 4, rank=r, world_size=3) for r in range(3)]
    flat = sorted(i for s in shares for b in s for i in b)
    assert flat == list(range(11))


def test_stream_shards_disjoint_and_resume_is_tail():
    cfg = DataConfig(format="synthetic", synthetic_size=96, batch_size=8, eval_batch_size=16)
    arch = ViTArch(img_size=8, patch_size=4)
    b0, b1 = (build_data(cfg, arch, rank=r, world_size=2, seed=5) for r in range(2))
    assert len(b0.train) == len(b1.train) == 6
    assert not set(sum(b0.train.batches(2), [])) & set(sum(b1.train.batches(2), []))
    full = list(b0.train.epoch(2))
    tail = list(b0.train.epoch(2, start_batch=4))
    assert len(full) == 6 and len(tail) == 2
    for (x, y), (xt, yt) in zip(full[4:], tail):
        assert torch.equal(x, xt) and torch.equal(y, yt)
    assert list(b0.train.epoch(2, start_batch=6)) == []
    with pytest.raises(ValueError, match="start_batch"):
        b0.train.epoch(2, start_batch=7)
    # Val: the two ranks' counts sum to the whole validation set, each image once.
    assert sum(len(y) for b in (b0, b1) for _, y in b.val) == 24


def test_too_small_dataset_for_one_batch_is_an_error():
    from tleg_dist.data import DataError
    cfg = DataConfig(format="synthetic", synthetic_size=10, batch_size=8)
    with pytest.raises(DataError, match="no full batch"):
        build_data(cfg, ViTArch(img_size=8, patch_size=4), rank=0, world_size=2, seed=0)
