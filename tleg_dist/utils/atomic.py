"""Atomic file writes: a reader sees the old file or the complete new one, never half."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tleg_dist.utils.errors import UserError


class OutputExistsError(FileExistsError, UserError):
    pass


def check_output(path: str | os.PathLike, force: bool, *, mkdir: bool = True) -> Path:
    """`path`, refused if it exists and not `force`; its folder is created unless `mkdir` is False."""
    path = Path(path)
    for parent in path.parents:  # the nearest one that exists must be a folder, or mkdir/mkstemp fail later
        if parent.exists():
            if not parent.is_dir():
                raise OutputExistsError(f"{parent}: exists and is not a folder, so {path} cannot be written")
            break
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")
    if mkdir and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600; give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def new_folders(*folders: str | os.PathLike):
    """Within: if the block fails, the folders it was to fill that did not exist before (parents
    included) are removed again, deepest first; all-or-nothing writers have left them empty."""
    new = sorted({p for f in folders for p in (Path(f), *Path(f).parents) if not p.exists()},
                 key=lambda p: len(p.parts), reverse=True)
    try:
        yield
    except BaseException:
        for folder in new:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
