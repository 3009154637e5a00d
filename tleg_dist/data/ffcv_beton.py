"""FFCV .beton files without the loader (no numba compilation): checks, labels, samples, sidecars.

A .beton is: header, field table, one metadata row per sample, data pages, and an allocation
table (sample id, pointer, size) at the end. `check_beton` validates all of it against the file
size, so a missing, truncated or foreign file fails with its path instead of deep inside FFCV.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from tleg_dist.config import DataConfig
from tleg_dist.data.errors import DataError
from tleg_dist.data.normalize import EVAL_CROP_PCT, SourceStats, imagenet_stats, stats

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "tleg-ffcv"
INSTALL_HINT = ("FFCV is not installed. Install it with: apt-get install libopencv-dev libturbojpeg0-dev "
                "pkg-config && pip install -e '.[ffcv]'  (i.e. ffcv==1.0.2 pillow); see docs/ffcv.md")


class FFCVNotInstalledError(DataError):
    pass


def require_ffcv() -> None:
    try:
        import ffcv.loader  # noqa: F401 - also loads numba, cv2 and the compiled libffcv
    except ImportError as e:
        raise FFCVNotInstalledError(f"{INSTALL_HINT} ({e})") from e


def sidecar_path(beton: Path) -> Path:
    return Path(beton).with_suffix(".json")


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"FFCV file {path} does not exist (write it with python -m tleg_dist.data.write_ffcv)")
    return path


def _tables(path: Path):
    """(header, metadata, allocation table) of a .beton, each checked against the file's size."""
    from ffcv.types import ALLOC_TABLE_TYPE, CURRENT_VERSION, FieldDescType, HeaderType, get_handlers
    from ffcv.utils import decode_null_terminated_string

    path = _existing(path)
    size = path.stat().st_size
    if size < HeaderType.itemsize:
        raise DataError(f"{path}: {size} bytes is too short for an FFCV file (truncated?)")
    header = np.fromfile(path, dtype=HeaderType, count=1)[0]
    if header["version"] != CURRENT_VERSION:
        raise DataError(f"{path}: not an FFCV v{CURRENT_VERSION} file (version field {header['version']})")
    nf, n = int(header["num_fields"]), int(header["num_samples"])
    meta_start = HeaderType.itemsize + nf * FieldDescType.itemsize
    if meta_start > size:
        raise DataError(f"{path}: truncated inside its field table")
    fields = np.fromfile(path, dtype=FieldDescType, count=nf, offset=HeaderType.itemsize)
    names = [decode_null_terminated_string(f["name"]) for f in fields]
    if "image" not in names or "label" not in names:
        raise DataError(f"{path}: fields {names}; expected 'image' and 'label'")
    # ffcv's get_metadata_type with the field names filled in (same aligned layout)
    mtype = np.dtype([(name, h.metadata_type) for name, h in zip(names, get_handlers(fields))], align=True)
    table_at = int(header["alloc_table_ptr"])
    if meta_start + n * mtype.itemsize > size or not meta_start <= table_at <= size \
            or (size - table_at) % ALLOC_TABLE_TYPE.itemsize:
        raise DataError(f"{path}: truncated or corrupt ({size} bytes; {n} samples, table at {table_at})")
    metadata = np.fromfile(path, dtype=mtype, count=n, offset=meta_start)
    alloc = np.fromfile(path, dtype=ALLOC_TABLE_TYPE, offset=table_at)
    return header, metadata, alloc, meta_start


def check_beton(path: Path, expect_samples: Optional[int] = None) -> int:
    """Number of samples; raises DataError naming the file if it is missing, truncated or corrupt."""
    header, metadata, alloc, _ = _tables(path)
    if expect_samples is not None and len(metadata) != expect_samples:
        raise DataError(f"{path}: {len(metadata)} samples, {expect_samples} expected")
    if len(metadata) == 0:
        raise DataError(f"{path}: holds no samples")
    ptrs = metadata["image"]["data_ptr"]
    end = int((alloc["ptr"] + alloc["size"]).max()) if len(alloc) else 0
    if end > int(header["alloc_table_ptr"]) or not np.isin(ptrs, alloc["ptr"]).all():
        raise DataError(f"{path}: image data missing from the allocation table (truncated or corrupt)")
    return len(metadata)


def beton_labels(path: Path) -> np.ndarray:
    return np.asarray(_tables(path)[1]["label"], dtype=np.int64)


def read_image(path: Path, i: int) -> tuple[np.ndarray, str]:
    """Sample i's image (HxWx3 uint8) and how it is stored, straight from the file (no numba)."""
    import cv2

    _, metadata, alloc, _ = _tables(path)
    m = metadata["image"][i]
    size = int(alloc["size"][np.flatnonzero(alloc["ptr"] == m["data_ptr"])[0]])
    data = np.fromfile(path, dtype=np.uint8, count=size, offset=int(m["data_ptr"]))
    h, w = int(m["height"]), int(m["width"])
    if m["mode"] == 1:
        return data.reshape(h, w, 3), "raw"
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), "jpg"


def drop_samples(path: Path, drop: np.ndarray) -> None:
    """Remove flagged samples from a .beton in place: their rows leave the metadata and the
    allocation table (renumbered); their bytes stay as dead space. Cheaper than rewriting the file."""
    header, metadata, alloc, meta_start = _tables(path)
    keep = ~drop.astype(bool)
    new_id = np.cumsum(keep) - 1
    alloc = alloc[keep[alloc["sample_id"].astype(np.int64)]]
    alloc["sample_id"] = new_id[alloc["sample_id"].astype(np.int64)]
    header = header.copy()
    header["num_samples"] = int(keep.sum())
    with open(path, "r+b") as f:
        f.seek(meta_start)
        f.write(metadata[keep].tobytes())
        f.seek(int(header["alloc_table_ptr"]))
        f.write(alloc.tobytes())
        f.truncate()
        f.seek(0)
        f.write(header.tobytes())


def read_sidecar(path: Path) -> dict:
    side = sidecar_path(path)
    if not side.is_file():
        log.warning("%s has no sidecar %s: assuming an RGB ImageNet-style dataset", path, side.name)
        mean, std = imagenet_stats(3)
        return {"grey": False, "mean": mean, "std": std, "eval_crop": EVAL_CROP_PCT}
    info = json.loads(side.read_text())
    if info.get("format") != SIDECAR_FORMAT:
        raise DataError(f"{side}: not a {SIDECAR_FORMAT} sidecar")
    return info


def sidecar_stats(cfg: DataConfig, in_chans: int) -> SourceStats:
    """An FFCV run's statistics (the train sidecar's) and eval crop (the val sidecar's). FFCV resizes
    with OpenCV's area filter, which timm cannot name, so the interpolation is the image-folder one."""
    if cfg.train_path is None or cfg.val_path is None:
        raise DataError("data.format=ffcv needs data.train_path and data.val_path (.beton files from "
                        "python -m tleg_dist.data.write_ffcv)")
    # A beton without a sidecar is read as ImageNet-style data, but one that is gone says nothing.
    tinfo, vinfo = (read_sidecar(_existing(beton)) for beton in (cfg.train_path, cfg.val_path))
    return SourceStats(*stats(in_chans, tinfo["mean"], tinfo["std"]), crop_pct=float(vinfo["eval_crop"]))
