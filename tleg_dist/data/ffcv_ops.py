"""FFCV pipeline operations, faster on CPU than ffcv 1.0.2's own (measured in docs/ffcv.md).

- `in_place_flip(p)`: flips only the chosen images, in place. ffcv's RandomHorizontalFlip copies
  every image into another buffer through a negative-stride view.
- `fresh_normalize(normalize)`: uint8 NHWC -> normalised float32 in one pass into memory allocated
  for this batch, by a lookup table of `normalize.Normalize` (the very function every source uses). FFCV reuses its output buffers for later batches, so after ffcv's NormalizeImage
  a kept batch must be copied again; here the output is new and the copy disappears. It runs as a
  Python stage in ffcv's loader thread (a numba kernel inside), so it also sidesteps the hang of
  NormalizeImage placed after ToTensor (upstream issue 396).

ffcv, numba and torch are imported lazily: this module loads without ffcv.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import torch


def in_place_flip(prob: float):
    from ffcv.pipeline.compiler import Compiler
    from ffcv.pipeline.operation import Operation

    class InPlaceFlip(Operation):
        def generate_code(self):
            my_range = Compiler.get_iterator()

            def flip(images, _):
                chosen = np.random.rand(images.shape[0]) < prob
                for i in my_range(images.shape[0]):
                    if chosen[i]:
                        img, w = images[i], images.shape[2]
                        for r in range(images.shape[1]):
                            for c in range(w // 2):
                                for k in range(images.shape[3]):
                                    img[r, c, k], img[r, w - 1 - c, k] = img[r, w - 1 - c, k], img[r, c, k]
                return images

            flip.is_parallel = True
            return flip

        def declare_state_and_memory(self, previous_state):
            return replace(previous_state, jit_mode=True), None

    return InPlaceFlip()


@functools.lru_cache(maxsize=None)
def _lut_kernel():
    from numba import njit, prange

    @njit(parallel=True, nogil=True)
    def lut(src, dst, table):
        """dst[i, p, c] = table[src[i, p, c], c] for a batch of HWC images flattened to (N, P, C)."""
        for i in prange(src.shape[0]):
            for p in range(src.shape[1]):
                for c in range(src.shape[2]):
                    dst[i, p, c] = table[src[i, p, c], c]

    return lut


def fresh_normalize(normalize):
    """`normalize` (a `normalize.Normalize`) as a lookup table, its own values for each pixel value."""
    from ffcv.pipeline.operation import Operation

    table = normalize.table()
    kernel = _lut_kernel()

    class FreshNormalize(Operation):
        def generate_code(self):
            def normalize(images, _):
                n, h, w, c = images.shape
                out = np.empty((n, h, w, c), np.float32)  # new memory every batch: safe to keep
                kernel(images.reshape(n, h * w, c), out.reshape(n, h * w, c), table)
                return torch.from_numpy(out).permute(0, 3, 1, 2)  # NCHW, channels_last in memory

            return normalize

        def declare_state_and_memory(self, previous_state):
            h, w, c = previous_state.shape
            return replace(previous_state, jit_mode=False, shape=(c, h, w), dtype=torch.float32), None

    return FreshNormalize()
