"""Synthetic images for smoke tests and benchmarks: learnable, deterministic from the seed, never stored.

Each class has a random low-resolution pattern; an image is its class pattern plus noise, stored
as uint8 like real images. The noise of pixel p of image i is an integer hash of (seed, split, i, p),
computed for a whole batch in a few tensor ops on any device: a batch needs no per-image Python
and can be made directly on the training device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tleg_dist.data.transforms import item_seed

# Bump when the images below change: DataBundle.train_fingerprint stands for them by their parameters.
VERSION = 1
_PATTERN_RES = 4
_SPLIT_ID = {"train": 0, "val": 1}
# uint8 pixel = 128 + SCALE * (pattern + noise); `prepare` maps it back with these stats.
_SCALE = 40.0
MEAN, STD = 128 / 255, _SCALE / 255
_M32 = 0xFFFFFFFF
# Four uniform bytes summed: mean 4 * 127.5 and variance 4 * (256**2 - 1) / 12, close to normal.
_SUM4_MEAN, _SUM4_STD = 510.0, (4 * (256**2 - 1) / 12) ** 0.5


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (lowbias32) in int64 arithmetic: the same bits on every device."""
    x = x & _M32
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & _M32
    x = ((x ^ (x >> 15)) * 0x846CA68B) & _M32
    return x ^ (x >> 16)


class SyntheticImages:
    """`train_size` images in split "train", a quarter as many (at least one) in "val"."""

    def __init__(self, train_size: int, *, num_classes: int, in_chans: int, img_size: int, seed: int, split: str,
                 device: torch.device | str = "cpu"):
        n = train_size if split == "train" else max(train_size // 4, 1)
        g = torch.Generator().manual_seed(item_seed(seed, -1, -1) % 2**63)
        # Patterns are shared by both splits (drawn first), labels differ per split.
        coarse = torch.randn(num_classes, in_chans, _PATTERN_RES, _PATTERN_RES, generator=g)
        self.patterns = F.interpolate(coarse, size=(img_size, img_size), mode="nearest").to(device)
        split_g = torch.Generator().manual_seed(item_seed(seed, -2, _SPLIT_ID[split]) % 2**63)
        self.labels = torch.randint(num_classes, (n,), generator=split_g)
        self.key = item_seed(seed, -3, _SPLIT_ID[split]) & _M32
        self.device = torch.device(device)
        self._pixels = torch.arange(self.patterns[0].numel(), device=self.device)
        self._labels = self.labels.to(self.device)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W on this source's device for item indices `idx`."""
        idx = idx.to(self.device)
        per_image = _hash32(_hash32(idx + self.key) * 0x9E3779B1)
        bits = _hash32(per_image[:, None] ^ self._pixels[None, :])
        byte_sum = sum((bits >> s) & 0xFF for s in (0, 8, 16, 24)).float()
        noise = (byte_sum - _SUM4_MEAN) / _SUM4_STD
        x = self.patterns[self._labels[idx]] + noise.view(-1, *self.patterns.shape[1:])
        return (x * _SCALE + 128).round_().clamp_(0, 255).to(torch.uint8)
