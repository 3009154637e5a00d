"""Synthetic images for smoke tests: learnable, deterministic from the seed, never stored.

Each class has a random low-resolution pattern; an image is its class pattern plus unit noise
drawn from a generator seeded by (seed, split, index), so any batch can be made on demand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tleg_dist.data.transforms import item_seed

_PATTERN_RES = 4
_SPLIT_ID = {"train": 0, "val": 1}


def val_size(train_size: int) -> int:
    return max(train_size // 4, 1)


class SyntheticImages:
    def __init__(self, n: int, *, num_classes: int, in_chans: int, img_size: int, seed: int, split: str):
        g = torch.Generator().manual_seed(item_seed(seed, -1, -1) % 2**63)
        # Patterns are shared by both splits (drawn first), labels differ per split.
        coarse = torch.randn(num_classes, in_chans, _PATTERN_RES, _PATTERN_RES, generator=g)
        self.patterns = F.interpolate(coarse, size=(img_size, img_size), mode="nearest")
        split_g = torch.Generator().manual_seed(item_seed(seed, -2, _SPLIT_ID[split]) % 2**63)
        self.labels = torch.randint(num_classes, (n,), generator=split_g)
        self.seed, self.split_id = seed, _SPLIT_ID[split]

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        shape = self.patterns.shape[1:]
        noise = torch.stack([
            torch.randn(shape, generator=torch.Generator().manual_seed(
                item_seed(self.seed, self.split_id, int(i)) % 2**63))
            for i in idx])
        return self.patterns[self.labels[idx]] + noise
