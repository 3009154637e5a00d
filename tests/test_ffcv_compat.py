"""The FFCV names data/ffcv_compat.py relies on, which FFCV does not publish: this fails loudly,
naming the name, when an FFCV upgrade moves or reshapes one of them. Re-check ffcv_compat.py then."""

import inspect
from importlib.metadata import version

import numpy as np
import pytest

from tleg_dist.data import ffcv_compat

pytest.importorskip("ffcv")
pytestmark = pytest.mark.ffcv


def test_installed_ffcv_is_the_version_the_compat_module_was_checked_against():
    assert version("ffcv") == ffcv_compat.CHECKED_VERSION, (
        f"ffcv {version('ffcv')} is installed; tleg_dist/data/ffcv_compat.py was checked against "
        f"{ffcv_compat.CHECKED_VERSION}: re-check its private names, then update CHECKED_VERSION")


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_beton_layout_names():
    t = ffcv_compat.beton_types()
    for dtype, fields in ((t.HeaderType, {"version", "num_fields", "num_samples", "alloc_table_ptr"}),
                          (t.FieldDescType, {"name"}), (t.ALLOC_TABLE_TYPE, {"sample_id", "ptr", "size"})):
        assert fields <= set(dtype.names), dtype
    assert isinstance(t.CURRENT_VERSION, int) and callable(t.get_handlers)
    assert t.decode_name(np.frombuffer(b"image\0\0", np.uint8)) == "image"


def test_writer_internals():
    from ffcv.memory_allocator import MemoryAllocator
    from ffcv.writer import DatasetWriter

    assert params(DatasetWriter._write_common) == ["self", "num_samples", "queue_content", "work_fn",
                                                   "extra_worker_args"]
    assert params(MemoryAllocator.__init__) == ["self", "fname", "offset_start", "page_size"]
    assert params(DatasetWriter.finalize) == ["self", "allocations"] and params(DatasetWriter.prepare) == ["self"]
    source = inspect.getsource(DatasetWriter)
    for attribute in ("fname", "page_size", "num_workers", "fields", "metadata_type", "metadata_sm",
                      "data_region_start"):
        assert f"self.{attribute} =" in source, attribute
    from ffcv.fields.rgb_image import resizer
    assert params(resizer) == ["image", "target_resolution"]


def test_traversal_order_internals():
    from ffcv.loader import Loader
    from ffcv.traversal_order import QuasiRandom
    from ffcv.traversal_order.base import TraversalOrder

    assert params(TraversalOrder.__init__) == ["self", "loader"]
    assert "self.indices = " in inspect.getsource(TraversalOrder.__init__)
    assert "self.page_to_samples_array" in inspect.getsource(QuasiRandom)
    loader = inspect.getsource(Loader)
    assert "self.next_epoch" in loader and "isinstance(order, TraversalOrder)" in loader
    assert "order(self)" in loader  # an order instance is bound by calling it with the loader
