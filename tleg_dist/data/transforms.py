"""Per-image transforms (timm, DeiT settings) and the per-image RNG seeding that makes them resumable."""

from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
from timm.data import create_transform
from timm.data import auto_augment as timm_aa

from tleg_dist.config import AugConfig
from tleg_dist.data.normalize import EVAL_CROP_PCT, INTERPOLATION


def has_image_aug(aug: AugConfig) -> bool:
    """True when some augmentation acts per image (mixup/cutmix act per batch, in the trainer)."""
    return bool(aug.randaugment) or aug.hflip > 0 or aug.random_resized_crop or aug.reprob > 0


def fit_channels(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Transforms work on RGB; a grey (1-channel) model keeps one of the identical channels."""
    return x[:1] if in_chans == 1 else x


def train_transform(aug: AugConfig, img_size: int, mean: tuple, std: tuple) -> Callable:
    """DeiT-style training transform from timm: PIL RGB image -> uint8 CHW tensor, normalised later on
    the device (`normalize.Normalize`). Random erasing acts on normalised pixels, per image, so with
    aug.reprob > 0 the output is the normalised float tensor instead."""
    # Without random_resized_crop, a full-area square "crop" is a plain resize (for square images).
    crop = {} if aug.random_resized_crop else dict(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    return _patch_posterize(create_transform(
        img_size, is_training=True, hflip=aug.hflip, auto_augment=aug.randaugment or None,
        color_jitter=None, interpolation=INTERPOLATION, mean=mean, std=std, normalize=aug.reprob > 0,
        re_prob=aug.reprob, re_mode="pixel", re_count=1, **crop))


def posterize(img, bits_to_keep, **_):
    """timm's posterize, but 0 bits gives a black image (what older Pillow did) instead of ValueError.

    timm's increasing posterize maps magnitude >= 10 to 0 bits; DeiT's rand-m9-mstd0.5-inc1 reaches
    that through its magnitude noise, and Pillow 13 rejects bits < 1, killing a worker mid-epoch.
    """
    if bits_to_keep < 1:
        return img.point([0] * 256 * len(img.getbands()))
    return timm_aa.posterize(img, bits_to_keep)


def _patch_posterize(transform):
    for t in getattr(transform, "transforms", []):
        ops = list(getattr(t, "ops", None) or [])  # RandAugment, AugMix
        ops += [op for sub in getattr(t, "policy", None) or [] for op in sub]  # AutoAugment
        for op in ops:
            if getattr(op, "aug_fn", None) is timm_aa.posterize:
                op.aug_fn = posterize
    return transform


def eval_transform(img_size: int, crop_pct: float = EVAL_CROP_PCT) -> Callable:
    """PIL RGB image -> uint8 CHW tensor (resize, centre crop); normalised on the device."""
    return create_transform(img_size, is_training=False, crop_pct=crop_pct,
                            interpolation=INTERPOLATION, normalize=False)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 64-bit seed from (seed, epoch, index): independent of workers, batches and ranks."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@contextmanager
def seeded(seed: int, epoch: int, index: int) -> Iterator[None]:
    """Seed `random`, numpy and torch's CPU generator for one image, then restore them.

    timm/torchvision draw from all three. Restoring matters with num_workers=0, where this runs
    in the training process and must not disturb dropout or the trainer's own RNG stream.
    Only the CPU generator is touched (torch.manual_seed would also reseed CUDA).
    """
    h = item_seed(seed, epoch, index)
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(h)
    np.random.seed(h % 2**32)
    torch.default_generator.manual_seed(h)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
