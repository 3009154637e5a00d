"""Animal-MNIST (data.format: animal_mnist): 28x28 grey animal silhouettes in 10 classes, MIT licence.

The data ship inside the PyPI wheel animal-mnist 0.4 as two gzipped pickles: uint8 (10000, 28, 28)
images and int64 labels. The package itself is never imported (it imports tensorflow): the files
are found through its installed metadata, or in data.root. Pickles can run code, so they are read
by an unpickler that admits numpy's array reconstruction and nothing else.

The set has one pool and no official split. Exact duplicate images are dropped first (284 of
10,000), then the pool is put in a fixed order drawn from `ORDER_SEED`, independent of any run's
seed, so that "the first N of each class" (data.train_per_class) and "the last N"
(data.val_split) are class-balanced and the same in every run. The test set is the rest.
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
import pickle
import zlib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from tleg_dist.data.errors import DataError

log = logging.getLogger(__name__)

NUM_CLASSES = 10
INSTALL = "pip install --no-deps animal-mnist==0.4"
IMAGES, LABELS = "animal_data_version_3.gz", "animal_label_version_3.gz"
_IN_WHEEL = "animal_mnist/data/Animal_MNIST"
# The pool's fixed order: a permutation from this seed (documented constant, never a run's seed).
ORDER_SEED = 20250204
# Of the de-duplicated pool on the 0..1 scale: a fixed pair so that every run, subset and export
# normalises alike (tests/test_data_animal_mnist.py recomputes them).
MEAN = 0.2737
STD = 0.4058


class _ArraysOnly(pickle.Unpickler):
    """Admits numpy's array reconstruction (ndarray, dtype, _reconstruct) and refuses any other global."""

    # numpy's own reconstructor, whatever module numpy keeps it in (numpy.core or numpy._core)
    _reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]
    _ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy._core.multiarray", "_reconstruct"): _reconstruct}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are admitted")
        return self._ALLOWED[(module, name)]


def _files(root: Optional[Path]) -> tuple[Path, Path]:
    if root is not None:
        folder = Path(root)
    else:
        try:
            folder = Path(distribution("animal-mnist").locate_file(_IN_WHEEL))
        except PackageNotFoundError:
            raise DataError(f"data.format=animal_mnist needs the animal-mnist package: {INSTALL} "
                            "(or set data.root to a folder holding its two .gz files)") from None
    paths = folder / IMAGES, folder / LABELS
    for p in paths:
        if not p.is_file():
            raise DataError(f"Animal-MNIST file {p} not found (reinstall it: {INSTALL})")
    return paths


def read_array(path: Path) -> np.ndarray:
    """A gzipped pickle of one numpy array, refusing anything else."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file (truncated?): {e}") from None
    try:
        out = _ArraysOnly(io.BytesIO(raw)).load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a malformed pickle raises anything (EOFError, TypeError, ...)
        raise DataError(f"{path}: not a pickled numpy array ({type(e).__name__}: {e})") from None
    if not isinstance(out, np.ndarray):
        raise DataError(f"{path}: holds a {type(out).__name__}, not a numpy array")
    return out


def dedupe(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop exact repeats of an image (the first occurrence stays), in the original order."""
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    keep = np.sort(first)
    if len(keep) < len(images):
        log.info("Animal-MNIST: dropped %d exact duplicate image(s) of %d", len(images) - len(keep), len(images))
    return images[keep], labels[keep]


@functools.lru_cache(maxsize=2)
def load_pool(root: Optional[Path] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N x 28 x 28 uint8 images, N int64 labels): de-duplicated, in the fixed order. Callers must not
    modify them."""
    image_path, label_path = _files(root)
    images, labels = read_array(image_path), read_array(label_path)
    if images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"Animal-MNIST in {image_path.parent}: images {images.dtype} {images.shape} and "
                        f"labels {labels.shape} are not N x H x W uint8 and N labels")
    if len(labels) and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise DataError(f"Animal-MNIST in {image_path.parent}: labels outside 0..{NUM_CLASSES - 1}")
    images, labels = dedupe(images, labels.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(ORDER_SEED))
    return torch.from_numpy(images)[order], torch.from_numpy(labels)[order]
