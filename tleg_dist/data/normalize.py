"""The one normalisation of every data source, and the statistics it is made from.

Sources hand over uint8 pixels; `Normalize` turns a batch of them into the model's float input on
the training device: (x / 255 - mean) / std per channel, in torchvision's op order (ToTensor's
division, then Normalize's subtraction and division), then a resize to the model's size and
grey -> RGB channel copies where the source needs them. FFCV's CPU pipeline applies the same
function as a lookup table (`Normalize.table`, used by ffcv_ops.fresh_normalize).

`SourceStats` is what a source normalises with and how its eval images are framed; the batches'
`prepare` and the run's recorded eval preprocessing (`DataBundle.preprocessing`, timm
`pretrained_cfg` fields) are both made from it, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from tleg_dist.config import DataConfig

# DeiT's eval crop: resize to size / 0.875, then centre-crop `size`.
EVAL_CROP_PCT = 0.875
INTERPOLATION = "bicubic"


def stats(in_chans: int, mean: tuple, std: tuple) -> tuple[tuple, tuple]:
    """3-channel normalisation stats; a 1-channel model sees a grey image (channel 0 kept)."""
    if in_chans == 1:
        m, s = float(np.mean(mean)), float(np.mean(std))
        return (m,) * 3, (s,) * 3
    if in_chans == 3:
        return tuple(mean), tuple(std)
    raise ValueError(f"image data supports in_chans 1 or 3, got {in_chans}")


def imagenet_stats(in_chans: int) -> tuple[tuple, tuple]:
    return stats(in_chans, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)


def folder_stats(cfg: DataConfig, in_chans: int) -> tuple[tuple, tuple]:
    """An image folder's statistics: the recipe's data.mean/std (one value: every channel), else ImageNet's."""
    if cfg.mean is None:
        return imagenet_stats(in_chans)
    if len(cfg.mean) == 1:  # taken as given: averaging three copies would not round-trip the value
        return (cfg.mean[0],) * 3, (cfg.std[0],) * 3
    return stats(in_chans, tuple(cfg.mean), tuple(cfg.std))


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The formula, on uint8 NCHW; `mean`/`std` shaped (1, C, 1, 1) on x's device."""
    return x.float().div_(255).sub_(mean).div_(std)


class Normalize:
    """uint8 NCHW in 0..255 -> normalised float32 NCHW, resized to `img_size` (bilinear, which
    commutes with the affine normalisation) and copied to `in_chans` channels when the batch has
    one. Float input (already normalised by its source, e.g. after random erasing) passes through."""

    def __init__(self, mean, std, *, in_chans: Optional[int] = None, img_size: Optional[int] = None):
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)
        self.in_chans, self.img_size = in_chans, img_size
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # copied once per device

    def params(self) -> dict:
        """Everything the output depends on besides the pixels (for DataBundle.train_fingerprint)."""
        return dict(mean=self.mean.tolist(), std=self.std.tolist(), in_chans=self.in_chans, img_size=self.img_size)

    def _stats_on(self, device: torch.device, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._on:
            self._on[device] = self.mean.to(device), self.std.to(device)
        return tuple(t[:c].view(1, c, 1, 1) for t in self._on[device])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            return x
        x = _normalise(x, *self._stats_on(x.device, x.shape[1]))
        if self.img_size is not None and self.img_size != x.shape[-1]:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False,
                              antialias=self.img_size < x.shape[-1])
        if self.in_chans is not None and self.in_chans != x.shape[1]:
            x = x.expand(-1, self.in_chans, -1, -1).contiguous()
        return x

    def table(self) -> np.ndarray:
        """(256, C) float32: entry [v, c] is what `__call__` gives a pixel of value v in channel c.
        The formula acts on each pixel alone, so a table lookup is the same function."""
        c = len(self.mean)
        values = torch.arange(256, dtype=torch.uint8).view(256, 1, 1, 1).expand(-1, c, -1, -1)
        return _normalise(values, *self._stats_on(torch.device("cpu"), c)).view(256, c).numpy()


@dataclass(frozen=True)
class SourceStats:
    """A source's normalisation statistics for the model's channels (3 values on the 0..1 scale, equal
    ones for a grey model: see `stats`) and its eval framing."""

    mean: tuple
    std: tuple
    interpolation: str = INTERPOLATION
    crop_pct: float = EVAL_CROP_PCT

    @classmethod
    def grey(cls, mean: float, std: float) -> "SourceStats":
        """A grey set held at its own size: whole images, resized bilinearly to the model's size."""
        return cls((mean,) * 3, (std,) * 3, "bilinear", 1.0)

    def normalize(self, in_chans: int, img_size: Optional[int] = None) -> Normalize:
        return Normalize(self.mean, self.std, in_chans=in_chans, img_size=img_size)

    def preprocessing(self, in_chans: int) -> dict:
        """timm pretrained_cfg fields of the eval transform; mean/std have one value per model channel
        (a grey model sees channel 0 of identical channels)."""
        return dict(interpolation=self.interpolation, crop_pct=float(self.crop_pct), crop_mode="center",
                    mean=[float(m) for m in self.mean[:in_chans]], std=[float(s) for s in self.std[:in_chans]])
