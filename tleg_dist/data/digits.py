"""scikit-learn's `load_digits` (data.format: digits): a small second domain for transfer.

1,797 greyscale 8x8 handwritten digits with 17 intensity levels (0..16), shipped inside the
scikit-learn wheel, so nothing is downloaded. The split is fixed and independent of any seed,
stratified so that both sides hold all 10 classes: in the data set's own order, the first
`TRAIN_PER_CLASS` = 100 images of each digit train (1,000 images), the other 797 test (74..83
per digit). Both splits keep the data set's order, so `data.train_limit` still mixes the classes.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from tleg_dist.data.errors import DataError

NUM_CLASSES = 10
TRAIN_PER_CLASS = 100
# Of the 1,000 training images at 28 px (bilinear, as below), on the 0..1 scale: a fixed pair so
# that every run, subset and export normalises alike (tests/test_data_digits.py recomputes them).
MEAN = 0.3072
STD = 0.3253


@functools.lru_cache(maxsize=4)
def load_splits(img_size: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((train images, labels), (test images, labels)): N x img_size x img_size uint8 and N int64.
    Callers must not modify them."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("data.format=digits needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    x = torch.from_numpy(d.images).float().div_(16).unsqueeze(1)  # 0..16 -> 0..1, N x 1 x 8 x 8
    # Bilinear, not nearest: 8 -> 28 is no whole factor, and nearest would draw uneven 3- and 4-pixel
    # blocks; bilinear gives smooth strokes like Fashion-MNIST's. Done once, on the host, so the
    # batches travel as uint8 at the model's size like Fashion-MNIST's.
    x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    x = x.squeeze(1).mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    y = torch.from_numpy(d.target).long()
    # Rank of each image within its class, in data-set order: the first TRAIN_PER_CLASS train.
    onehot = F.one_hot(y, NUM_CLASSES)
    rank = ((onehot.cumsum(0) - 1) * onehot).sum(1)
    train = rank < TRAIN_PER_CLASS
    return (x[train], y[train]), (x[~train], y[~train])
