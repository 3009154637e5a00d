"""The teacher-logit cache (distill.teacher.cache): the frozen teacher runs once per training image.

    CACHE_DIR/<key>/logits.npy       n x K float32: row i = the teacher's logits for training image i
                   /key.json         what the key is a hash of (below), for a person to read
                   /complete.json    written last: a folder without it is never read
    CACHE_DIR/.partial-<key>-<token>/   a fill under way, or one that was killed (never read;
                                        delete it once no job is filling that key)

CACHE_DIR is distill.teacher.cache_dir, by default RUN/teacher_logits (run_folder.TEACHER_LOGITS). The key is a sha256 over
the teacher (model name, timm kwargs, pretrained, sha256 of its checkpoint file), the training
data (DataBundle.train_fingerprint: images, labels and `prepare`'s parameters), the row count and
the class count, so a shared CACHE_DIR serves every run with the same teacher and data.

Filling is sharded: every rank computes a contiguous share of the rows into one memory-mapped
table in a partial folder, which rank 0 completes and publishes with one rename. Two jobs filling
the same key at once each fill their own partial folder; the first rename wins and the other job
drops its copy and reads the winner's. In training each rank reads only the rows of its own
batches. Valid only where an image's training input is the same every epoch (config.py refuses
the cache otherwise).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from tleg_dist.artifacts import run_folder
from tleg_dist.config import RunConfig
from tleg_dist.data.base import DataBundle
from tleg_dist.data.device import to_device
from tleg_dist.teacher import build_teacher
from tleg_dist.training import distributed
from tleg_dist.training.distributed import DistInfo
from tleg_dist.utils.errors import UserError

log = logging.getLogger(__name__)

LOGITS, KEY, COMPLETE = "logits.npy", "key.json", "complete.json"
PARTIAL = ".partial-"


class TeacherCacheError(RuntimeError, UserError):
    pass


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe(cfg: RunConfig, data: DataBundle) -> dict:
    """What the cached logits depend on; the key is its hash."""
    if data.train_fingerprint is None or not hasattr(data.train, "fetch"):
        raise TeacherCacheError(f"distill.teacher.cache: data.format={cfg.data.format} cannot identify its "
                                f"training images (no fingerprint); set distill.teacher.cache=false")
    t = cfg.distill.teacher
    return {"teacher": {"model": t.model, "kwargs": t.kwargs, "pretrained": t.pretrained,
                        "checkpoint_sha256": None if t.checkpoint is None else file_sha256(t.checkpoint)},
            "train_fingerprint": data.train_fingerprint, "rows": data.train.n, "num_classes": data.num_classes,
            "in_chans": cfg.model.in_chans}


def key_of(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE).is_file() and (folder / LOGITS).is_file()


class CachedLogits:
    """The published table, memory-mapped: a rank reads only the rows it asks for."""

    def __init__(self, folder: Path, rows: int, num_classes: int, fill_s: float | None = None):
        self.folder, self.fill_s = folder, fill_s  # fill_s: seconds this run spent filling it (None: reused)
        self.table = np.load(folder / LOGITS, mmap_mode="r")
        if self.table.shape != (rows, num_classes) or self.table.dtype != np.float32:
            raise TeacherCacheError(f"{folder / LOGITS}: {self.table.dtype} {self.table.shape}, expected float32 "
                                    f"{(rows, num_classes)}; delete {folder} to refill it")

    def rows(self, indices: list[int], device: torch.device) -> torch.Tensor:
        return torch.from_numpy(self.table[np.asarray(indices)]).to(device, non_blocking=True)

    def batches(self, index_batches: list[list[int]], device: torch.device) -> Iterator[torch.Tensor]:
        """The teacher's logits of each index batch, in order (read as the loop reaches it)."""
        for b in index_batches:
            yield self.rows(b, device)


def _agreed_token(dist: DistInfo) -> int:
    """One random number for every rank of this job (rank 0's), so they all write one partial folder."""
    mine = float(secrets.randbits(48)) if dist.is_main else 0.0
    return int(distributed.all_reduce_sum([mine], dist.device)[0])


@torch.inference_mode()
def _fill_share(cfg: RunConfig, data: DataBundle, dist: DistInfo, table_path: Path) -> None:
    """This rank's contiguous share of the rows, in batches of the training micro-batch's size: per-row
    results can depend on the batch shape (kernels chosen per shape), not on the other rows in it."""
    n = data.train.n
    lo, hi = n * dist.rank // dist.world_size, n * (dist.rank + 1) // dist.world_size
    size = cfg.data.batch_size
    index_batches = [list(range(i, min(i + size, hi))) for i in range(lo, hi, size)]
    teacher = build_teacher(cfg.distill.teacher, data.num_classes, cfg.model.in_chans).to(dist.device)
    table = np.load(table_path, mmap_mode="r+")
    for b, (x, _) in zip(index_batches, to_device(data.train.fetch(index_batches), dist.device, data.prepare)):
        table[b[0]:b[-1] + 1] = teacher(x.float()).float().cpu().numpy()
    table.flush()


def _publish(partial: Path, folder: Path) -> None:
    """Rename the completed partial folder to the key's; if another job got there first, use its copy."""
    try:
        os.rename(partial, folder)
    except OSError:
        if not is_complete(folder):
            raise
        shutil.rmtree(partial, ignore_errors=True)
        log.info("teacher logits: another job published %s first; using its copy", folder)


def fill(cfg: RunConfig, data: DataBundle, dist: DistInfo, description: dict, folder: Path) -> float:
    """Compute every row into a partial folder (all ranks), then publish it (rank 0); the seconds it took."""
    started = time.time()
    partial = folder.parent / f"{PARTIAL}{folder.name}-{_agreed_token(dist):012x}"
    if dist.is_main:
        partial.mkdir(parents=True)
        np.lib.format.open_memmap(partial / LOGITS, mode="w+", dtype=np.float32,
                                  shape=(data.train.n, data.num_classes)).flush()
        (partial / KEY).write_text(json.dumps(description, indent=1))
    distributed.barrier()
    _fill_share(cfg, data, dist, partial / LOGITS)
    distributed.barrier()  # every rank's rows are on disk
    if dist.is_main:
        with open(partial / LOGITS, "rb+") as f:
            os.fsync(f.fileno())
        (partial / COMPLETE).write_text(json.dumps({"rows": data.train.n, "fill_s": time.time() - started,
                                                    "ranks": dist.world_size}))
        _publish(partial, folder)
    log.info("teacher logits: %d rows filled in %.1f s -> %s", data.train.n, time.time() - started, folder)
    return time.time() - started


def open_or_fill(cfg: RunConfig, data: DataBundle, dist: DistInfo, run_dir: Path) -> CachedLogits:
    """The cache for this run's teacher and data: reused if published, else filled first."""
    description = describe(cfg, data)
    root = Path(cfg.distill.teacher.cache_dir or Path(run_dir) / run_folder.TEACHER_LOGITS)
    folder = root / key_of(description)
    fill_s = None
    try:
        if distributed.any_rank(dist.is_main and not is_complete(folder), dist.device):  # rank 0 decides
            fill_s = fill(cfg, data, dist, description, folder)
        else:
            log.info("teacher logits: reusing %s", folder)
    except OSError as e:
        raise TeacherCacheError(f"distill.teacher.cache_dir {root}: cannot write the teacher's logits there "
                                f"({e.strerror or e}); choose another cache_dir") from e
    distributed.barrier()
    return CachedLogits(folder, data.train.n, data.num_classes, fill_s)
