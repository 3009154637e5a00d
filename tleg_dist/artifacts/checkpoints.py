"""Complete checkpoints: the marker that makes a DeepSpeed tag one, and how to find and read it.

    RUN/checkpoints/<tag>/   DeepSpeed's shards (engine.save_checkpoint on every rank)
                 tleg_meta.json   the marker: written last, atomically, by rank 0

The marker is plain JSON (stage, architecture as ViTArch.to_dict(), depth, position, config,
eval preprocessing), so that resume, pruning, inspection and conversion read a checkpoint's
description without unpickling anything. A tag without a valid marker (a save killed half-way, or a DeepSpeed checkpoint
made elsewhere) is incomplete: never resumed from, never converted, pruned later.
"""

from __future__ import annotations

import json
from pathlib import Path

from tleg_dist.artifacts.run_folder import CHECKPOINTS
from tleg_dist.utils.atomic import atomic_path
from tleg_dist.utils.errors import UserError
from tleg_dist.utils.jsonio import read_json

MARKER = "tleg_meta.json"
FORMAT = "tleg-checkpoint"
FORMAT_VERSION = "1"
STAGES = ("learngene", "finetune", "teacher")
PREPROCESSING = "preprocessing"  # meta key: the run's eval transform as timm pretrained_cfg fields


class CheckpointError(RuntimeError, UserError):
    pass


def tag_for(step: int) -> str:
    return f"step_{step:08d}"


def write_marker(tag_dir: Path, meta: dict) -> None:
    """Mark `tag_dir` complete; call only once every rank's shards are on disk."""
    with atomic_path(Path(tag_dir) / MARKER) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **meta}, indent=1))


def shards(tag_dir: Path, kind: str = "model") -> list[Path]:
    """DeepSpeed's `*_model_states.pt` (or `*_optim_states.pt`) files in a tag folder."""
    return sorted(Path(tag_dir).glob(f"*_{kind}_states.pt"))


def read_meta(tag_dir: Path) -> dict:
    """The marker of a complete tag; CheckpointError saying why `tag_dir` is not one."""
    f = Path(tag_dir) / MARKER
    if not f.is_file():
        what = "an incomplete checkpoint" if shards(tag_dir) else "not a DeepSpeed checkpoint"
        raise CheckpointError(f"{tag_dir}: {what}: {MARKER} is missing (rank 0 writes it after every shard is saved)")
    meta = read_json(f, CheckpointError)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{f}: not tleg checkpoint metadata (format={got!r}, expected {FORMAT!r})")
    return meta


def check_meta(tag_dir: Path) -> dict:
    """`read_meta`, also refusing a version or stage this code does not know (before converting)."""
    meta, f = read_meta(tag_dir), Path(tag_dir) / MARKER
    if str(meta.get("format_version")) != FORMAT_VERSION:
        raise CheckpointError(f"{f}: unsupported format_version {meta.get('format_version')!r}")
    if meta.get("stage") not in STAGES:
        raise CheckpointError(f"{f}: unknown stage {meta.get('stage')!r} (expected one of {', '.join(STAGES)})")
    return meta


def complete_meta(tag_dir: Path) -> dict | None:
    try:
        return read_meta(tag_dir)
    except CheckpointError:
        return None


def complete_tags(root: Path) -> list[tuple[int, str]]:
    """(global_step, tag) of every complete checkpoint under `root`, oldest first."""
    root = Path(root)
    dirs = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    return sorted((int(m.get("global_step", -1)), d.name) for d in dirs if (m := complete_meta(d)) is not None)


def newest(root: Path) -> Path | None:
    """The newest complete tag under `root`; an interrupted save is never picked."""
    tags = complete_tags(root)
    return Path(root) / tags[-1][1] if tags else None


def _is_tag_dir(d: Path) -> bool:
    return (d / MARKER).is_file() or bool(shards(d))


def find(path: str | Path, tag: str | None = None) -> Path:
    """A tag folder from `<run>`, `<run>/checkpoints` or a tag folder itself (not checked for
    completeness); without `tag`, the newest complete one."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory" if not path.exists() else
                              f"{path}: not a directory; expected a DeepSpeed checkpoint directory "
                              f"(<run>/{CHECKPOINTS} or a tag folder inside it)")
    if not _is_tag_dir(path) and (path / CHECKPOINTS).is_dir():
        path = path / CHECKPOINTS  # the run folder
    subdirs = sorted(d for d in path.iterdir() if d.is_dir() and _is_tag_dir(d))
    if tag is not None:
        if not (path / tag).is_dir():
            raise CheckpointError(f"{path / tag}: no such checkpoint tag; tags in {path}: "
                                  f"{', '.join(d.name for d in subdirs) or 'none'}")
        return path / tag
    if _is_tag_dir(path):
        return path
    found = newest(path)
    if found is not None:
        return found
    if subdirs:
        raise CheckpointError(f"{path}: no complete checkpoint: no tag folder has a valid {MARKER} (it is written "
                              f"last, so these saves were interrupted or not made by tleg_dist): "
                              f"{', '.join(d.name for d in subdirs)}")
    raise CheckpointError(f"{path}: not a DeepSpeed checkpoint directory (no tag folder with *_model_states.pt)")
