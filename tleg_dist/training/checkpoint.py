"""DeepSpeed checkpoints with a completeness marker, resume discovery and pruning.

Layout: <output_dir>/checkpoints/<tag>/ is written by engine.save_checkpoint on every
rank; rank 0 writes <tag>/tleg_meta.json last, atomically. A tag without it (a save
that was killed half-way) is never resumed from and is cleaned up later.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tleg_dist.training.distributed import barrier
from tleg_dist.utils.atomic import atomic_path
from tleg_dist.utils.errors import UserError

log = logging.getLogger(__name__)

META = "tleg_meta.json"
FORMAT = "tleg-checkpoint"
FORMAT_VERSION = "1"


class CheckpointError(RuntimeError, UserError):
    pass


@dataclass
class Position:
    """Where training stands: resume continues from exactly here."""

    epoch: int = 0            # current epoch
    batch_in_epoch: int = 0   # micro-batches of `epoch` already consumed on each rank
    global_step: int = 0      # optimizer steps taken
    micro_step: int = 0       # micro-batches consumed since the start of training
    best_top1: float = -1.0
    best_tag: str | None = None


def tag_for(step: int) -> str:
    return f"step_{step:08d}"


def read_meta(tag_dir: Path) -> dict | None:
    try:
        meta = json.loads((Path(tag_dir) / META).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return meta if meta.get("format") == FORMAT else None


def complete_tags(root: Path) -> list[tuple[int, str]]:
    """(global_step, tag) of every complete checkpoint, oldest first."""
    out = []
    if Path(root).is_dir():
        for d in Path(root).iterdir():
            meta = read_meta(d) if d.is_dir() else None
            if meta is not None:
                out.append((int(meta["global_step"]), d.name))
    return sorted(out)


def find_resume(root: Path, resume: str | None) -> Path | None:
    """'auto' -> newest complete checkpoint (or None); a path -> that checkpoint tag dir."""
    if resume is None:
        return None
    if resume == "auto":
        tags = complete_tags(root)
        return Path(root) / tags[-1][1] if tags else None
    path = Path(resume)
    if read_meta(path) is None:
        if path.is_dir() and complete_tags(path):
            return path / complete_tags(path)[-1][1]
        raise CheckpointError(f"--resume {path}: not a complete tleg checkpoint (no valid {META})")
    return path


def _free_space(path: Path) -> str:
    """Free space, and whether `path` takes a new file: DeepSpeed logs and swallows the OSError
    of its makedirs, so the error that reaches us may not say the disk is full or read-only."""
    try:
        said = f"{shutil.disk_usage(path).free:,} bytes free there"
    except OSError:
        said = "free space unknown"
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        said += f"; {path} takes no new file: {e.strerror}"
    return said


class Checkpointer:
    def __init__(self, root: Path, keep_last: int, keep_best: bool, is_main: bool):
        self.root, self.keep_last, self.keep_best, self.is_main = Path(root), keep_last, keep_best, is_main
        self._current = None  # tag whose shards hold the engine's present state (saved or loaded)

    def save(self, engine, pos: Position, meta: dict, client_state: dict) -> str:
        tag = tag_for(pos.global_step)
        tag_dir = self.root / tag
        # Same step as the last save or load (an epoch that ends on a periodic save): the engine
        # has not stepped since, so only the position in the marker moves on. Rewriting the shards
        # in place would leave the old marker beside half-written files if the process died.
        if tag != self._current:
            if self.is_main:
                self.root.mkdir(parents=True, exist_ok=True)
                if tag_dir.exists():
                    # a half-written save of this step, or a complete one from another history (a
                    # run resumed from an older tag): un-marked before it is rewritten, never after
                    shutil.rmtree(tag_dir)
            barrier()
            try:
                engine.save_checkpoint(str(self.root), tag=tag, client_state=client_state)
            except (OSError, RuntimeError) as e:
                # torch.save reports a full disk as "RuntimeError: ... unexpected pos", naming no file
                raise CheckpointError(f"saving checkpoint {tag_dir} failed ({_free_space(self.root)}); "
                                      f"it stays incomplete and is never resumed from: {e}") from e
            barrier()  # every rank's shards are on disk before the marker exists
        if self.is_main:
            full = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta,
                    "epoch": pos.epoch, "batch_in_epoch": pos.batch_in_epoch,
                    "global_step": pos.global_step, "micro_step": pos.micro_step,
                    "best_top1": pos.best_top1, "best_tag": pos.best_tag}
            try:
                with atomic_path(tag_dir / META) as tmp:
                    tmp.write_text(json.dumps(full, indent=1))
            except OSError as e:
                raise CheckpointError(f"writing {tag_dir / META} failed ({_free_space(self.root)}); "
                                      f"the marker is as before (none for a new checkpoint): {e}") from e
            self.prune(protect={tag, pos.best_tag} if self.keep_best else {tag})
        self._current = tag
        barrier()
        return tag

    def prune(self, protect: set) -> None:
        """Keep the newest `keep_last` complete tags and `protect`; drop incomplete ones."""
        tags = [t for _, t in complete_tags(self.root)]
        keep = set(tags[-self.keep_last:]) | protect
        for d in self.root.iterdir():
            if not d.is_dir() or d.name in keep:
                continue
            if d.name in tags or read_meta(d) is None:
                shutil.rmtree(d, ignore_errors=True)

    def load(self, engine, tag_dir: Path) -> tuple[Position, dict]:
        meta = read_meta(tag_dir)
        if meta is None:
            raise CheckpointError(f"{tag_dir}: incomplete checkpoint")
        try:
            path, client = engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name,
                                                  load_optimizer_states=True, load_lr_scheduler_states=True)
        except Exception as e:  # a damaged shard surfaces as almost any exception type
            first = (str(e).splitlines() or [""])[0]
            raise CheckpointError(f"{tag_dir}: marked complete but unreadable ({type(e).__name__}: {first}); "
                                  f"nothing was changed. Resume from an older tag with --resume PATH/TO/TAG, "
                                  f"or move this one aside.") from e
        if path is None:
            raise CheckpointError(f"DeepSpeed could not load checkpoint {tag_dir}")
        if Path(tag_dir).parent.resolve() == self.root.resolve():
            self._current = Path(tag_dir).name
        pos = Position(epoch=meta["epoch"], batch_in_epoch=meta["batch_in_epoch"],
                       global_step=meta["global_step"], micro_step=meta["micro_step"],
                       best_top1=meta.get("best_top1", -1.0), best_tag=meta.get("best_tag"))
        return pos, client or {}
