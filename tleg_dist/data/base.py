"""The narrow interface between data sources and the trainer.

Every source (Fashion-MNIST, ImageFolder, synthetic, FFCV) returns a `DataBundle`.
The trainer only ever calls `train.epoch(epoch, start_batch)`, iterates `val`, and passes every
batch's images through `prepare` once they are on the training device (`data/device.py`).
A source whose training images are fixed (in memory, not augmented per image) also says so with
`train_fingerprint` and serves them un-augmented by index (`IndexedTrainStream.fetch`), which is
what the teacher-logit cache keys and fills itself with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Protocol

import torch

# NCHW images as the source holds them (uint8 where it can, else normalised float), int64 labels
Batch = tuple[torch.Tensor, torch.Tensor]


class TrainStream(Protocol):
    def __len__(self) -> int:
        """Batches per epoch on this rank (identical on every rank)."""

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """This rank's batches of `epoch`, skipping the first `start_batch` of them.

        Deterministic in (seed, epoch, rank): a resumed run sees exactly the batches
        an uninterrupted one would have. Yielded tensors must be safe to keep.
        """


@dataclass
class DataBundle:
    train: TrainStream
    val: Iterable[Batch]          # this rank's disjoint share of the validation set (no padding)
    num_classes: int
    # Batch-level augmentation (timm Mixup/CutMix), applied by the trainer: (x, y) -> (x, soft y).
    mixup: Optional[Callable[[torch.Tensor, torch.Tensor], Batch]] = None
    # On the device: a batch's images -> normalised float NCHW of the model's size (float passes through).
    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    # sha256 over the training images and labels as the source holds them (after classes, limits
    # and splits) and the parameters of `prepare`; None where the source cannot say (image files
    # decoded on the fly, .beton files).
    train_fingerprint: Optional[str] = None
    # The eval transform as timm pretrained_cfg fields (interpolation, crop_pct, crop_mode, mean, std;
    # one mean/std value per model channel), from the statistics `prepare` normalises with: the
    # trainer records it, so exports never re-derive it from the data config.
    preprocessing: Optional[dict] = None
