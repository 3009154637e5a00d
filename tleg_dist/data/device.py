"""Batches onto the training device: raw pixels (uint8) travel, normalisation happens there.

Sources hand over uint8 (or their own dtype) images in pinned host memory when CUDA is present;
`to_device` copies the next batch on a side stream while the current step runs, and applies the
source's `prepare` (its normalisation, `normalize.Normalize`) on the device. On a CPU the same
code runs without streams.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional

import torch

from tleg_dist.data.base import Batch


def pin(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Page-locked copies when a GPU will read them (only those copies can overlap compute)."""
    if not torch.cuda.is_available():
        return tensors
    return tuple(t.pin_memory() for t in tensors)


def to_device(batches: Iterable[Batch], device: torch.device,
              prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Iterator[Batch]:
    """Yield (prepared images, labels) on `device`, one batch ahead on a CUDA side stream."""
    prepare = prepare or (lambda x: x)
    it = iter(batches)
    if device.type != "cuda":
        for x, y in it:
            yield prepare(x.to(device)), y.to(device)
        return
    side, main = torch.cuda.Stream(device), torch.cuda.current_stream(device)

    def fetch() -> Optional[Batch]:
        batch = next(it, None)
        if batch is None:
            return None
        with torch.cuda.stream(side):
            side.wait_stream(main)  # a batch made on the device (synthetic) comes from the main stream
            x, y = (t.to(device, non_blocking=True) for t in batch)
            x.record_stream(side)  # if it was made on the main stream, it is read here too
            return prepare(x), y

    ahead = fetch()
    while ahead is not None:
        main.wait_stream(side)
        x, y = ahead
        # Made on the side stream, used on the main one: keep the allocator from reusing them early.
        x.record_stream(main)
        y.record_stream(main)
        ahead = fetch()
        yield x, y
