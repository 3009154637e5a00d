"""Every use of a name FFCV does not publish, in one module. Checked against ffcv 1.0.2
(`CHECKED_VERSION`); tests/test_ffcv_compat.py fails loudly when one of them changes.

- the .beton layout (ffcv.types, ffcv.utils.decode_null_terminated_string): read without a Loader,
  so checks need no numba compilation (ffcv_beton.py);
- ffcv.fields.rgb_image.resizer: the writer's own resize, to compare read-back samples with;
- DatasetWriter._write_common and the writer's attributes: a writer that raises when a worker
  process dies instead of waiting forever (ffcv_writer.py);
- TraversalOrder's binding protocol, QuasiRandom.page_to_samples_array and Loader.next_epoch: an
  epoch-addressable custom order (ffcv_loader.py).

Custom pipeline stages (ffcv_ops.py) use FFCV's documented extension API (Operation, its State,
Compiler.get_iterator), so they are not here. ffcv is imported inside the functions: this module
loads without it.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import queue
import sys
import time
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

from tleg_dist.data.errors import DataError

CHECKED_VERSION = "1.0.2"


def beton_types() -> SimpleNamespace:
    """The numpy dtypes of a .beton's header, field table and allocation table, and helpers."""
    from ffcv.types import ALLOC_TABLE_TYPE, CURRENT_VERSION, FieldDescType, HeaderType, get_handlers
    from ffcv.utils import decode_null_terminated_string

    return SimpleNamespace(HeaderType=HeaderType, FieldDescType=FieldDescType, ALLOC_TABLE_TYPE=ALLOC_TABLE_TYPE,
                           CURRENT_VERSION=CURRENT_VERSION, get_handlers=get_handlers,
                           decode_name=decode_null_terminated_string)


def resize_as_written(image: np.ndarray, max_side: Optional[int]) -> np.ndarray:
    """The resize RGBImageField applies when writing (max_resolution)."""
    from ffcv.fields.rgb_image import resizer

    return resizer(image, max_side)


def start_epoch(loader, epoch: int) -> None:
    """The next iteration of `loader` reads epoch `epoch` (its order is asked for that epoch)."""
    loader.next_epoch = epoch


def epoch_order(sample_order: Callable[[np.ndarray, int, Optional[Callable[[int], np.ndarray]]], np.ndarray],
                quasi: bool):
    """A TraversalOrder instance for Loader(order=...): epoch e reads sample_order(indices, e, quasi_order),
    where indices is the loader's subset and quasi_order(e) is QuasiRandom's order (None unless `quasi`)."""
    from ffcv.traversal_order import QuasiRandom
    from ffcv.traversal_order.base import TraversalOrder

    class EpochOrder(TraversalOrder):
        """Loader(order=instance) calls the instance with itself to bind it."""

        def __init__(self):  # the base __init__ needs the loader, which comes in __call__
            pass

        def __call__(self, loader):
            TraversalOrder.__init__(self, loader)
            self.quasi = QuasiRandom(loader) if quasi else None
            if quasi:  # ffcv shuffles this table in place; restoring it makes epochs replayable
                self.pages = self.quasi.page_to_samples_array.copy()
            return self

        def _quasi_order(self, epoch: int) -> np.ndarray:
            self.quasi.page_to_samples_array = self.pages.copy()
            return self.quasi.sample_order(epoch)

        def sample_order(self, epoch: int):
            return sample_order(self.indices, epoch, self._quasi_order if quasi else None)

    return EpochOrder()


def checked_writer_class():
    """ffcv's DatasetWriter, but a dead worker process raises instead of hanging the progress loop."""
    from ffcv.writer import DatasetWriter

    class CheckedWriter(DatasetWriter):
        desc = ""

        def _write_common(self, num_samples, queue_content, work_fn, extra_worker_args):
            from ffcv.memory_allocator import MemoryAllocator
            from tqdm import tqdm

            self.num_samples = num_samples
            self.prepare()
            work, allocations, done = mp.Queue(), mp.Queue(), mp.Value(ctypes.c_uint64, 0)
            for todo in queue_content:
                work.put(todo)
            for _ in range(self.num_workers):
                work.put(None)
            allocator = MemoryAllocator(self.fname, self.data_region_start, self.page_size)
            args = (work, self.metadata_sm, self.metadata_type, self.fields, allocator, done, allocations,
                    *extra_worker_args)
            procs = [mp.Process(target=work_fn, args=args) for _ in range(self.num_workers)]
            for p in procs:
                p.start()

            def check_alive():
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise DataError(f"an FFCV writer process died (exit code {dead[0].exitcode}); "
                                    "see its traceback above (an image larger than the page? "
                                    "raise --page-size-mib or set --max-side; a full disk?)")

            try:
                with tqdm(total=num_samples, desc=self.desc, unit="img", file=sys.stderr, mininterval=1.0) as bar:
                    while bar.n < num_samples:
                        time.sleep(0.1)
                        bar.update(done.value - bar.n)
                        check_alive()
                table = []
                for _ in procs:
                    # A process still writes its last page after its last image is counted: it can
                    # die there too (a full disk), and then never sends its allocations.
                    while True:
                        try:
                            table.extend(allocations.get(timeout=0.5))
                            break
                        except queue.Empty:
                            check_alive()
                for p in procs:
                    p.join()
                self.finalize(table)
            finally:
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                self.metadata_sm.close()
                self.metadata_sm.unlink()

    return CheckedWriter
