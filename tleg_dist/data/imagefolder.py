"""ImageFolder trees in the ImageNet layout: ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg.

Classes are the sorted folder names of ROOT/train (torchvision's convention), so label i means
the same class in every run and in val.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional

import torch
from PIL import Image

from tleg_dist.data.errors import BadImageError, DataError
from tleg_dist.data.streams import Skipped
from tleg_dist.data.transforms import fit_channels, seeded

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# What PIL raises on an unreadable file: UnidentifiedImageError and "image file is truncated"
# are OSErrors; some malformed headers raise ValueError or SyntaxError.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _images_in(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMG_EXTENSIONS)]
    return found


def scan(split_dir: Path, class_names: Optional[list[str]] = None) -> tuple[list[str], list[str], torch.Tensor]:
    """(class names, image paths, labels). With `class_names`, labels follow that (train's) order."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} does not exist; expected the layout ROOT/train/<class>/*.jpg "
                        "and ROOT/val/<class>/*.jpg")
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not found:
        raise DataError(f"{split_dir} has no class folders")
    names = class_names if class_names is not None else found
    index = {c: i for i, c in enumerate(names)}
    unknown = [c for c in found if c not in index]
    if unknown:
        raise DataError(f"{split_dir}: class folder(s) {unknown[:5]} are not in the training classes")
    paths, labels = [], []
    for c in found:
        files = _images_in(split_dir / c)
        if not files:
            raise DataError(f"class folder {split_dir / c} is empty (no {'/'.join(IMG_EXTENSIONS)} files)")
        paths += files
        labels += [index[c]] * len(files)
    return names, paths, torch.tensor(labels, dtype=torch.long)


class ImageFiles(torch.utils.data.Dataset):
    """Decodes and transforms one image per key (epoch, index); epoch < 0 means evaluation."""

    def __init__(self, paths: list[str], labels: torch.Tensor, transform: Callable, *, in_chans: int,
                 seed: int, augment: bool, on_bad_image: str):
        self.paths, self.labels, self.transform = paths, labels.tolist(), transform
        self.in_chans, self.seed, self.augment, self.on_bad_image = in_chans, seed, augment, on_bad_image

    def __len__(self) -> int:
        return len(self.paths)

    def _open(self, path: str) -> Optional[Image.Image]:
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")  # forces the full decode, so truncation shows here
        except _DECODE_ERRORS as e:
            if self.on_bad_image == "fail":
                raise BadImageError(f"cannot read image {path}: {e} "
                                    "(set data.on_bad_image=skip to skip such files)") from e
            return None
        # A grey model sees a grey image; transforms still run on 3 identical channels.
        return img.convert("L").convert("RGB") if self.in_chans == 1 else img

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        img = self._open(self.paths[i])
        if img is None:
            return Skipped(self.paths[i])
        with seeded(self.seed, epoch, i) if self.augment else nullcontext():
            x = self.transform(img)
        return fit_channels(x, self.in_chans), self.labels[i]
