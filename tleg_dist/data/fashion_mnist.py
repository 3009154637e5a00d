"""Fashion-MNIST from its idx files, held in memory as uint8 tensors.

Default root: the Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist/).
A torchvision download folder (ROOT/FashionMNIST/raw) works too.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from tleg_dist.data.errors import DataError
from tleg_dist.data.transforms import fit_channels, seeded

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
NUM_CLASSES = 10
# The published statistics of the training images on the 0..1 scale (every run and export uses them).
MEAN = 0.2860
STD = 0.3530
_PREFIX = {"train": "train", "val": "t10k"}
_INSTALL_HINT = (
    "Install the Debian package: apt-get install dataset-fashion-mnist "
    f"(files in {DEFAULT_ROOT}). Alternatively, where a network exists, download it with torchvision: "
    "python -c \"import torchvision; torchvision.datasets.FashionMNIST('DIR', download=True)\" "
    "and set data.root=DIR.")


def _find(root: Path, name: str) -> Path:
    """`name` (or name.gz) in root, or in a torchvision download under root."""
    folders = [root, root / "FashionMNIST" / "raw", root / "raw"]
    for folder in folders:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    raise DataError(f"Fashion-MNIST not found: no {name}[.gz] in {', '.join(map(str, folders))}. "
                    + _INSTALL_HINT)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> torch.Tensor:
    raw = Path(path).read_bytes()
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:  # cut off (EOFError) or not gzip (BadGzipFile)
            raise DataError(f"{path}: not a readable gzip file (truncated?): {e}") from e
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise DataError(f"{path}: idx header says {dims} but holds {len(raw) - offset} bytes (truncated?)")
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=offset).reshape(dims).copy())


def read_idx(path: Path) -> torch.Tensor:
    """An idx file as a uint8 tensor, read once per process (shared by teacher/learngene/des runs)."""
    st = path.stat()
    return _read_idx_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


def load_split(root: Optional[Path], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N x 28 x 28 uint8 images, N int64 labels) of split 'train' or 'val'. Callers must not modify them."""
    root = Path(root) if root is not None else DEFAULT_ROOT
    prefix = _PREFIX[split]
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte")).long()
    if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
        raise DataError(f"Fashion-MNIST {split} in {root}: images {tuple(images.shape)} "
                        f"do not match labels {tuple(labels.shape)}")
    if int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"Fashion-MNIST {split} in {root}: label {int(labels.max())} >= {NUM_CLASSES}")
    return images, labels


class AugmentedImages(torch.utils.data.Dataset):
    """Per-image timm augmentation of in-memory images; keys are (epoch, index)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform, in_chans: int, seed: int):
        self.images, self.labels = images, labels
        self.transform, self.in_chans, self.seed = transform, in_chans, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        img = Image.fromarray(self.images[i].numpy(), mode="L").convert("RGB")
        with seeded(self.seed, epoch, i):
            x = self.transform(img)
        return fit_channels(x, self.in_chans), int(self.labels[i])
