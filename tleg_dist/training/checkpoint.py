"""DeepSpeed checkpoints as the trainer saves, resumes and prunes them.

Every rank writes its shards with engine.save_checkpoint; rank 0 then marks the tag complete
(artifacts/checkpoints.py owns the marker and how complete tags are found).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tleg_dist.artifacts.checkpoints import (CheckpointError, complete_meta, complete_tags, find, newest, read_meta,
                                             tag_for, write_marker)
from tleg_dist.training.distributed import barrier


@dataclass
class Position:
    """Where training stands: resume continues from exactly here."""

    epoch: int = 0            # current epoch
    batch_in_epoch: int = 0   # micro-batches of `epoch` already consumed on each rank
    global_step: int = 0      # optimizer steps taken
    micro_step: int = 0       # micro-batches consumed since the start of training
    best_top1: float = -1.0
    best_tag: str | None = None


def find_resume(root: Path, resume: str | None) -> Path | None:
    """'auto' -> newest complete checkpoint under `root` (or None); a path -> that complete tag
    (a run or checkpoints folder -> its newest complete tag)."""
    if resume is None:
        return None
    if resume == "auto":
        return newest(root)
    try:
        tag_dir = find(resume)
        read_meta(tag_dir)
    except CheckpointError as e:
        raise CheckpointError(f"--resume {resume}: not a complete tleg checkpoint ({e})") from None
    return tag_dir


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
            try:
                write_marker(tag_dir, {**meta, **dataclasses.asdict(pos)})
            except OSError as e:
                raise CheckpointError(f"marking {tag_dir} complete failed ({_free_space(self.root)}); "
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
            if d.name in tags or complete_meta(d) is None:
                shutil.rmtree(d, ignore_errors=True)

    def load(self, engine, tag_dir: Path, stage: str) -> tuple[Position, dict]:
        meta = read_meta(tag_dir)
        if meta.get("stage") != stage:  # another model: DeepSpeed's load would fail on its keys, saying less
            raise CheckpointError(f"{tag_dir}: a {meta.get('stage')}-stage checkpoint; this recipe trains stage "
                                  f"{stage}: resume from one of its own")
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
        pos = Position(**{f.name: meta[f.name] for f in dataclasses.fields(Position) if f.name in meta})
        return pos, client or {}
