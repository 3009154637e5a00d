"""Writing one split to an FFCV `.beton` file and its JSON sidecar, checked by reading it back.

The command line is write_ffcv.py; ffcv itself is imported only inside the functions that need it.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tleg_dist.data.errors import BadImageError, DataError
from tleg_dist.data.ffcv_beton import (SIDECAR_FORMAT, beton_labels, check_beton, drop_samples, read_image,
                                       require_ffcv, sidecar_path)
from tleg_dist.data.ffcv_compat import checked_writer_class, resize_as_written
from tleg_dist.utils.atomic import atomic_path, check_output

log = logging.getLogger(__name__)
# A decoder needs some image in every slot; flagged samples are dropped or the run fails afterwards.
_PLACEHOLDER = np.zeros((8, 8, 3), np.uint8)


@dataclass(frozen=True)
class WriteSettings:
    write_mode: str = "raw"            # raw | jpg | proportion (a random share is JPEG-compressed)
    max_side: Optional[int] = None     # longest side after resizing (ffcv's max_resolution); None keeps it
    jpeg_quality: int = 90
    compress_prob: float = 0.5         # proportion mode only
    chunk_size: int = 100              # images per work item handed to a writer process
    workers: int = 0                   # writer processes; 0 = all cores
    page_size_mib: int = 8             # FFCV page; one (resized) image must fit in a page
    on_bad_image: str = "fail"         # fail | skip
    verify: int = 8                    # samples read back and compared with the source
    limit: Optional[int] = None        # first N images only (smoke tests)

    def __post_init__(self):
        if self.write_mode not in ("raw", "jpg", "proportion"):
            raise DataError(f"write_mode must be raw, jpg or proportion, got {self.write_mode!r}")
        if not 1 <= self.jpeg_quality <= 100 or not 0 <= self.compress_prob <= 1:
            raise DataError("jpeg_quality must be in 1..100 and compress_prob in [0, 1]")
        if self.page_size_mib < 2 or self.page_size_mib & (self.page_size_mib - 1):
            raise DataError(f"page_size_mib must be a power of two >= 2, got {self.page_size_mib}")
        if self.on_bad_image not in ("fail", "skip"):
            raise DataError(f"on_bad_image must be fail or skip, got {self.on_bad_image!r}")


def beton_name(source: str, split: str, s: WriteSettings) -> str:
    """The file name states everything that changes the file's content."""
    mode = {"raw": "raw", "jpg": f"jpg_q{s.jpeg_quality}",
            "proportion": f"prop{s.compress_prob:.2f}_q{s.jpeg_quality}"}[s.write_mode]
    parts = [source, split, mode, f"max{s.max_side}" if s.max_side else "maxorig"]
    if s.limit:
        parts.append(f"n{s.limit}")
    return "_".join(parts) + ".beton"


class SourceImages:
    """Indexable (image HxWx3 uint8, label) for ffcv's writer processes, which must never raise:
    a raising worker leaves ffcv 1.0.2's writer waiting forever. Bad images are flagged instead."""

    def __init__(self, labels: np.ndarray, *, arrays: Optional[np.ndarray] = None,
                 paths: Optional[list[str]] = None, stop_on_bad: bool = True):
        self.labels, self.arrays, self.paths = labels, arrays, paths
        self.bad = mp.Array(ctypes.c_bool, len(labels), lock=False)
        self.abort = mp.Value(ctypes.c_bool, False, lock=False)
        self.stop_on_bad = stop_on_bad

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, i: int) -> str:
        return self.paths[i] if self.paths is not None else f"image #{i}"

    def load(self, i: int) -> np.ndarray:
        if self.arrays is not None:
            return np.repeat(self.arrays[i][:, :, None], 3, axis=2)  # grey -> RGB, as ffcv stores 3 channels
        from PIL import Image
        with Image.open(self.paths[i]) as im:
            return np.asarray(im.convert("RGB"))  # convert() forces the full decode: truncation shows here

    def __getitem__(self, i: int):
        if self.abort.value:  # on_bad_image=fail: finish quickly, the file is discarded
            return _PLACEHOLDER, int(self.labels[i])
        try:
            img = self.load(i)
        except Exception:  # noqa: BLE001 - PIL raises OSError/ValueError/SyntaxError/...; all mean "unreadable"
            self.bad[i] = True
            if self.stop_on_bad:
                self.abort.value = True
            return _PLACEHOLDER, int(self.labels[i])
        return img, int(self.labels[i])

    def bad_report(self) -> list[tuple[str, str]]:
        """(path, reason) of each flagged image; decoded again here to get the message."""
        out = []
        for i in np.flatnonzero(np.frombuffer(self.bad, dtype=np.bool_)):
            try:
                self.load(int(i))
                reason = "failed in a writer process"
            except Exception as e:  # noqa: BLE001 - see __getitem__
                reason = f"{type(e).__name__}: {e}"
            out.append((self.describe(int(i)), reason))
        return out


def _verify(path: Path, src: SourceImages, keep: np.ndarray, s: WriteSettings) -> int:
    """Read a few samples back from the written file and compare them with the source."""
    labels = beton_labels(path)
    picks = np.unique(np.linspace(0, len(keep) - 1, num=min(s.verify, len(keep))).astype(int))
    for j in picks.tolist():
        i = int(keep[j])
        expected = resize_as_written(src.load(i), s.max_side)
        got, mode = read_image(path, j)
        what = f"{path}: sample {j} ({src.describe(i)})"
        if labels[j] != src.labels[i]:
            raise DataError(f"{what}: label {labels[j]} read back, {src.labels[i]} written")
        if got.shape != expected.shape:
            raise DataError(f"{what}: shape {got.shape} read back, {expected.shape} expected")
        err = float(np.abs(got.astype(np.int16) - expected.astype(np.int16)).mean())
        # raw must be exact; JPEG at quality >= 50 stays well under 10/255 on average per pixel
        if (mode == "raw" and err > 0) or err > 10:
            raise DataError(f"{what}: {mode} read back with mean abs error {err:.2f}")
    return len(picks)


def write_split(src: SourceImages, out: Path, s: WriteSettings, meta: dict, *, force: bool = False) -> dict:
    """Write `src` to `out` (a .beton) plus its sidecar; returns the sidecar's content."""
    require_ffcv()
    from ffcv.fields import IntField, RGBImageField

    check_output(out, force)
    Writer = checked_writer_class()
    with atomic_path(out) as tmp:
        writer = Writer(str(tmp), {
            "image": RGBImageField(write_mode=s.write_mode, max_resolution=s.max_side,
                                   jpeg_quality=s.jpeg_quality, compress_probability=s.compress_prob),
            "label": IntField()}, page_size=s.page_size_mib << 20, num_workers=s.workers or mp.cpu_count())
        writer.desc = out.name
        t0 = time.time()
        writer.from_indexed_dataset(src, chunksize=s.chunk_size)
        bad = src.bad_report()
        if bad and s.on_bad_image == "fail":
            listed = "\n  ".join(f"{p}: {r}" for p, r in bad[:20])
            raise BadImageError(f"unreadable image(s); nothing was written to {out}:\n  {listed}\n"
                                "(pass --on-bad-image skip to leave them out)")
        flags = np.frombuffer(src.bad, dtype=np.bool_).copy()
        if bad:
            drop_samples(tmp, flags)
            for p, r in bad:
                log.warning("skipped unreadable image %s (%s)", p, r)
        keep = np.flatnonzero(~flags)
        check_beton(tmp, expect_samples=len(keep))
        verified = _verify(tmp, src, keep, s)
        sidecar = {"format": SIDECAR_FORMAT, **meta, "settings": asdict(s), "num_samples": int(len(keep)),
                   "skipped": len(bad), "skipped_images": [p for p, _ in bad], "verified_samples": verified,
                   "write_seconds": round(time.time() - t0, 1)}
    with atomic_path(sidecar_path(out)) as tmp_json:
        tmp_json.write_text(json.dumps(sidecar, indent=1))
    return sidecar
