"""Which images of a source train, which are held out for validation, and which evaluation reads.

    training pool --data.classes (relabelled 0..k-1)--> the pool, in the source's order
      training subset:  the first data.train_limit images, or the first data.train_per_class of
                        each class, or (neither set) every image not held out
      validation split: the LAST data.val_split images of the pool (an overlap with the training
                        subset is an error naming both settings)
    test set: the source's official one (data.classes applied), or, for a source with one pool
              only, every image of the pool neither trained on nor held out
    evaluation reads the validation split or the test set (data.eval_on), its first data.val_limit.

Everything here works on label tensors, so every source (in memory, image files, .beton files)
selects alike; a source applies the returned indices to whatever holds its images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from tleg_dist.config import DataConfig
from tleg_dist.data.errors import DataError


def class_lut(num_classes: int, classes: list[int]) -> torch.Tensor:
    """label -> its position in `classes`, or -1 for labels left out."""
    lut = torch.full((num_classes,), -1, dtype=torch.long)
    lut[torch.tensor(classes)] = torch.arange(len(classes))
    return lut


def relabel(labels: torch.Tensor, num_classes: int, classes: Optional[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices of the items of `classes`, their labels relabelled 0..k-1 in the given order)."""
    if classes is None:
        return torch.arange(len(labels)), labels.long()
    if not classes or len(set(classes)) != len(classes):
        raise DataError(f"data.classes must be a non-empty list without repeats, got {classes}")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise DataError(f"data.classes: {bad} not in the dataset's labels 0..{num_classes - 1}")
    mapped = class_lut(num_classes, classes)[labels.long()]
    keep = torch.nonzero(mapped >= 0).flatten()
    return keep, mapped[keep]


def _nonempty(keep: torch.Tensor, what: str) -> torch.Tensor:
    if len(keep) == 0:
        raise DataError(f"{what}: no images left after data.classes / limits / splits")
    return keep


def _first_per_class(labels: torch.Tensor, k: int, n: int, what: str) -> torch.Tensor:
    """Positions of the first `n` items of each of the k classes, in order."""
    onehot = F.one_hot(labels, k)
    rank = ((onehot.cumsum(0) - 1) * onehot).sum(1)  # each item's position within its class
    short = [c for c, count in enumerate(torch.bincount(labels, minlength=k).tolist()) if count < n]
    if short:
        raise DataError(f"{what}: data.train_per_class={n}, but class(es) {short} have fewer images")
    return torch.nonzero(rank < n).flatten()


@dataclass
class Splits:
    """Indices into the training pool (train, val, rest) and the labels they carry (0..k-1)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: Optional[torch.Tensor]       # the held-out validation split, None without data.val_split
    val_labels: Optional[torch.Tensor]
    rest: torch.Tensor                # neither trained on nor held out
    rest_labels: torch.Tensor
    num_classes: int


def split_pool(labels: torch.Tensor, num_classes: int, cfg: DataConfig, what: str) -> Splits:
    keep, new = relabel(labels, num_classes, cfg.classes)
    k, n = (num_classes if cfg.classes is None else len(cfg.classes)), len(keep)
    held = torch.zeros(n, dtype=torch.bool)
    if cfg.val_split is not None:
        if cfg.val_split >= n:
            raise DataError(f"{what}: data.val_split={cfg.val_split} holds out the whole pool of {n} images")
        held[n - cfg.val_split:] = True
    if cfg.train_per_class is not None:
        train = _first_per_class(new, k, cfg.train_per_class, what)
    elif cfg.train_limit is not None:
        train = torch.arange(min(cfg.train_limit, n))
    else:
        train = torch.nonzero(~held).flatten()
    if held[train].any():
        setting = "train_per_class" if cfg.train_per_class is not None else "train_limit"
        raise DataError(f"{what}: data.{setting}={getattr(cfg, setting)} and data.val_split={cfg.val_split} "
                        f"overlap in a pool of {n} images; lower one of them")
    _nonempty(train, f"{what} (training)")
    rest = torch.ones(n, dtype=torch.bool)
    rest[train] = False
    rest &= ~held
    val = torch.nonzero(held).flatten() if cfg.val_split is not None else None
    rest = torch.nonzero(rest).flatten()
    return Splits(keep[train], new[train], None if val is None else keep[val], None if val is None else new[val],
                  keep[rest], new[rest], k)


@dataclass
class Selection:
    """What a source trains on and what evaluation reads: indices and labels (0..k-1)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    eval: torch.Tensor
    eval_labels: torch.Tensor
    eval_from_pool: bool  # eval indexes the training pool (val split, or a one-pool source's test), else the test set
    num_classes: int


def select(cfg: DataConfig, pool_labels: torch.Tensor, num_classes: int,
           test_labels: Optional[torch.Tensor], what: str) -> Selection:
    """`test_labels`: the official test set's, or None for a source with one pool only."""
    s = split_pool(pool_labels, num_classes, cfg, what)
    if cfg.eval_on == "val":
        idx, lab, from_pool = s.val, s.val_labels, True
    elif test_labels is None:
        idx, lab, from_pool = s.rest, s.rest_labels, True
    else:
        (idx, lab), from_pool = relabel(test_labels, num_classes, cfg.classes), False
    if cfg.val_limit is not None:
        idx, lab = idx[:cfg.val_limit], lab[:cfg.val_limit]
    _nonempty(idx, f"{what} ({'validation split' if cfg.eval_on == 'val' else 'test set'})")
    return Selection(s.train, s.train_labels, idx, lab, from_pool, s.num_classes)
