"""Train and val iterables over index batches: in-memory tensors, or a map dataset + DataLoader.

Both share `sampler.train_batches`, so which path a source uses never changes the order.
Resuming skips batches by slicing the index lists: skipped images are never loaded.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from tleg_dist.data.base import Batch
from tleg_dist.data.errors import DataError
from tleg_dist.data.sampler import train_batches, train_batches_per_rank, val_batches

log = logging.getLogger(__name__)

# Turns this rank's index batches of one epoch into tensors.
Loader = Callable[[int, list[list[int]]], Iterator[Batch]]


def check_start(start_batch: int, n_batches: int) -> None:
    if not 0 <= start_batch <= n_batches:
        raise ValueError(f"start_batch={start_batch} is outside [0, {n_batches}]")


def class_lut(num_classes: int, classes: list[int]) -> torch.Tensor:
    """label -> its position in `classes`, or -1 for labels left out."""
    lut = torch.full((num_classes,), -1, dtype=torch.long)
    lut[torch.tensor(classes)] = torch.arange(len(classes))
    return lut


class IndexedTrainStream:
    """A `TrainStream` over items 0..n-1, shuffled per epoch and sharded across ranks."""

    def __init__(self, n: int, batch_size: int, load: Loader, *, seed: int, rank: int,
                 world_size: int, name: str = "train", plain: Optional[Loader] = None):
        """`plain`: loads the un-augmented images of index batches (in-memory sources only)."""
        self.n, self.batch_size, self._load, self._plain = n, batch_size, load, plain
        self.seed, self.rank, self.world_size, self.name = seed, rank, world_size, name
        self._len = train_batches_per_rank(n, batch_size, world_size, name)

    def __len__(self) -> int:
        return self._len

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's index batches of `epoch`, in the order `epoch()` yields them."""
        return train_batches(self.n, self.batch_size, epoch=epoch, seed=self.seed,
                             rank=self.rank, world_size=self.world_size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        check_start(start_batch, self._len)
        return self._load(epoch, self.batches(epoch)[start_batch:])

    def fetch(self, index_batches: list[list[int]]) -> Iterator[Batch]:
        """The un-augmented images (as the source holds them, before `prepare`) and labels of
        `index_batches`, one batch each: e.g. to fill a cache of per-image teacher outputs."""
        if self._plain is None:
            raise TypeError(f"{self.name}: this source cannot fetch images by index "
                            "(its DataBundle.train_fingerprint is None)")
        return self._plain(-1, index_batches)


class IndexedVal:
    """This rank's share of the validation set, in order; iterable any number of times."""

    def __init__(self, n: int, batch_size: int, load: Loader, *, rank: int, world_size: int):
        self._batches = val_batches(n, batch_size, rank=rank, world_size=world_size)
        self._load = load

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[Batch]:
        return self._load(-1, self._batches)


def tensor_loader(fetch: Callable[[torch.Tensor], Batch], device: torch.device | str = "cpu") -> Loader:
    """For in-memory data: a batch is one tensor-indexing call, no per-image Python work.

    The epoch's indices reach `device` (where `fetch` indexes) in one copy; each batch is a slice
    of them, so no batch waits on a host-to-device transfer.
    """

    def load(epoch: int, batches: list[list[int]]) -> Iterator[Batch]:
        flat = torch.tensor([i for b in batches for i in b], dtype=torch.long, device=device)
        start = 0
        for b in batches:
            yield fetch(flat[start:start + len(b)])
            start += len(b)

    return load


class Skipped:
    """Returned by a dataset item instead of (image, label) when on_bad_image=skip."""

    def __init__(self, path: str):
        self.path = path


def _collate(items: list) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], list[str]]:
    good = [it for it in items if not isinstance(it, Skipped)]
    bad = [it.path for it in items if isinstance(it, Skipped)]
    if not good:
        return None, None, bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), bad


def dataloader_loader(dataset: Dataset, num_workers: int, *, even: bool = False) -> Loader:
    """For per-image decoding/augmentation. `dataset[(epoch, i)]` -> (CHW tensor, label) | Skipped.

    Keys carry the epoch so items can seed their augmentation from (seed, epoch, i) in any worker.
    `even` keeps batches even after skipping bad images (timm Mixup needs pairs).
    """

    def load(epoch: int, batches: list[list[int]]) -> Iterator[Batch]:
        loader = DataLoader(
            dataset, batch_sampler=[[(epoch, i) for i in b] for b in batches],
            num_workers=num_workers, collate_fn=_collate, pin_memory=torch.cuda.is_available(),
            # Our own generator: creating an iterator must not consume the global torch RNG,
            # or a resumed run's dropout stream would drift from an uninterrupted one.
            generator=torch.Generator())
        skipped, it = 0, iter(loader)
        # Stop the workers as soon as the epoch ends, also when a worker raised (on_bad_image=fail)
        # or the consumer stopped early: left to the garbage collector, each costs a 5 s join
        # timeout later. Dropping the last reference to the iterator stops them (its __del__).
        try:
            for x, y, bad in it:
                for path in bad:
                    log.warning("skipping unreadable image %s (data.on_bad_image=skip)", path)
                skipped += len(bad)
                if x is not None and even and len(x) % 2:
                    x, y = x[:-1], y[:-1]
                    if len(x) == 0:
                        raise DataError(f"one image of a batch was readable, and mixup/cutmix need pairs: "
                                        f"{len(bad)} unreadable, e.g. {bad[0]}")
                if x is None:
                    raise DataError(f"every image of a batch was unreadable, e.g. {bad[0]}")
                yield x, y
        except Exception as e:
            if num_workers == 0:
                raise
            # The traceback's frames inside the iterator hold it: raise from here without them. A
            # worker's error carries the worker's own traceback in its message.
            raise e.with_traceback(None)
        finally:
            del it
        if skipped:
            what = "validation" if epoch < 0 else f"epoch {epoch}"
            log.warning("skipped %d unreadable image(s) in %s on this rank", skipped, what)

    return load


def select(labels: torch.Tensor, num_classes: int, classes: Optional[list[int]],
           limit: Optional[int], what: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Keep `classes` (relabelled 0..k-1 in the given order), then the first `limit` items.

    Returns (kept item indices, their new labels, class count).
    """
    if classes is None:
        keep, new = torch.arange(len(labels)), labels.long()
        k = num_classes
    else:
        if not classes or len(set(classes)) != len(classes):
            raise DataError(f"data.classes must be a non-empty list without repeats, got {classes}")
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise DataError(f"data.classes: {bad} not in the dataset's labels 0..{num_classes - 1}")
        mapped = class_lut(num_classes, classes)[labels.long()]
        keep = torch.nonzero(mapped >= 0).flatten()
        new, k = mapped[keep], len(classes)
    if limit is not None:
        keep, new = keep[:limit], new[:limit]
    if len(keep) == 0:
        raise DataError(f"{what}: no images left after data.classes / limit")
    return keep, new, k
