"""The output directory fills up, is read-only, or already holds a run: the error names the path,
no partial checkpoint counts as complete, and what was saved before is untouched.

Full and read-only filesystems are real mounts (a small tmpfs, a read-only bind mount), so these
tests need root; without it they skip and say why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest
from fault_helpers import (assert_same_weights, complete_steps, resumed_from, run, start, tree_digest,
                           wait_until)

TIMEOUT = 300


@contextlib.contextmanager
def mounted(*args: str, target):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs or a read-only bind mount")
    target.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount here ({r.stderr.strip()})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@contextlib.contextmanager
def read_only(folder):
    """A read-only bind mount of `folder` over itself (root ignores chmod, so a mount it is)."""
    with mounted("--bind", str(folder), target=folder):
        r = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot remount read-only here ({r.stderr.strip()})")
        yield folder


def test_disk_full_names_the_checkpoint_and_keeps_the_last_complete(recipe, reference_1rank, tmp_path):
    # 600 KiB: the logs and one 370 KB checkpoint fit, the second checkpoint does not
    with mounted("-t", "tmpfs", "-o", "size=600k", "tmpfs", target=tmp_path / "small") as small:
        out = small / "run"
        rc, log = run(recipe, out, timeout=TIMEOUT, log_dir=tmp_path)
        assert rc == 1, log[-3000:]
        assert f"CheckpointError: saving checkpoint {out}/checkpoints/step_00000008 failed" in log, log[-3000:]
        assert "bytes free there" in log
        assert complete_steps(out) == [4]
        assert (out / "checkpoints" / "step_00000008").is_dir()  # the partial save, not marked complete
        saved = tmp_path / "moved"
        shutil.copytree(out, saved)  # the user moves the run to a bigger disk
    rc, log = run(recipe, saved, resume="auto", name="resume", timeout=TIMEOUT)
    assert rc == 0, log[-3000:]
    assert resumed_from(log)[0] == "step_00000004"
    assert_same_weights(saved / "learngene" / "learngene.safetensors",
                        reference_1rank / "learngene" / "learngene.safetensors")


def test_read_only_output_dir_names_the_path_and_changes_nothing(recipe, reference_1rank, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference_1rank, out)
    before = tree_digest(out)
    with read_only(out):
        rc, log = run(recipe, out, resume="auto", timeout=TIMEOUT)
    assert rc == 1, log[-3000:]
    assert f"cannot write to output_dir {out}" in log and "Read-only file system" in log, log[-3000:]
    assert tree_digest(out) == before


def test_checkpoints_going_read_only_mid_run(recipe, tmp_path):
    """The checkpoint folder turns read-only during training (a filesystem remounted ro after an
    I/O error): the next save fails naming its folder, and step 4 stays the newest complete one."""
    out = tmp_path / "run"
    r = start(recipe, out, step_delay_s=0.3)  # 1.2 s between two saves to turn it read-only in
    try:
        wait_until(lambda: complete_steps(out) == [4], TIMEOUT, "the step-4 checkpoint", r)
        with read_only(out / "checkpoints"):
            rc = r.wait(TIMEOUT)
            assert rc == 1, r.log[-3000:]
            last = max(complete_steps(out))  # 4 unless the machine stalled for over a second
            assert f"saving checkpoint {out}/checkpoints/step_{last + 4:08d} failed" in r.log, r.log[-3000:]
            assert f"{out}/checkpoints takes no new file: Read-only file system" in r.log, r.log[-3000:]
    finally:
        r.kill_all()


def test_existing_run_without_resume_is_refused_untouched(recipe, reference_1rank, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference_1rank, out)
    before = tree_digest(out)
    rc, log = run(recipe, out, timeout=TIMEOUT)
    assert rc == 1, log[-3000:]
    assert f"{out} already holds checkpoints; pass --resume auto" in log, log[-3000:]
    assert tree_digest(out) == before
