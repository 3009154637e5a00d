"""Which dataset indices each rank sees, in which order.

Every path (in-memory, DataLoader, FFCV) takes its order from `shard_indices`, i.e. from
torch's `DistributedSampler` over range(n): one order, so a source's path never changes it and
resumed runs replay it.
"""

from __future__ import annotations

from torch.utils.data import DistributedSampler

from tleg_dist.data.errors import DataError


def shard_indices(n: int, *, epoch: int, seed: int, rank: int, world_size: int,
                  shuffle: bool, drop_last: bool) -> list[int]:
    """What DistributedSampler(range(n), world_size, rank, shuffle, seed, drop_last) yields after set_epoch(epoch)."""
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    sampler.set_epoch(epoch)
    return list(sampler)


def train_batches_per_rank(n: int, batch_size: int, world_size: int, name: str = "train") -> int:
    """Full batches every rank gets per epoch (identical on all ranks, so collectives never hang);
    none at all is a DataError naming the source `name`."""
    # With drop_last the sampler gives each rank floor(n / world_size) indices.
    k = (n // world_size) // batch_size
    if k == 0:
        raise DataError(f"{name}: {n} images give no full batch of {batch_size} on each of "
                        f"{world_size} rank(s); lower data.batch_size or add data")
    return k


def train_batches(n: int, batch_size: int, *, epoch: int, seed: int, rank: int,
                  world_size: int) -> list[list[int]]:
    """This rank's shuffled full batches of `epoch`; the trailing partial batch is dropped.

    drop_last=True at the sampler level keeps the ranks' shards disjoint (no padding repeats).
    """
    count = train_batches_per_rank(n, batch_size, world_size)
    idx = shard_indices(n, epoch=epoch, seed=seed, rank=rank, world_size=world_size,
                        shuffle=True, drop_last=True)
    return [idx[i * batch_size:(i + 1) * batch_size] for i in range(count)]


def val_batches(n: int, batch_size: int, *, rank: int, world_size: int) -> list[list[int]]:
    """A disjoint, unpadded share per rank: summing correct/total over ranks is exact."""
    idx = list(range(n))[rank::world_size]
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
