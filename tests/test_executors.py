"""plans/executors.py: a status poll that hiccups reads UNKNOWN, a bug in it surfaces."""

from __future__ import annotations

import os

import pytest

from tleg_dist.plans.executors import Handle

submitit = pytest.importorskip("submitit")

GARBLED = "ServiceUnavailable\nslurmdbd: not responding|\n"  # sacct output without its JobID header


@pytest.fixture
def sacct(tmp_path, monkeypatch):
    """sacct(stdout, status): a stand-in `sacct` on PATH, and a fresh submitit status cache."""
    def install(stdout: str, status: int = 0) -> None:
        tool = tmp_path / "bin" / "sacct"
        tool.parent.mkdir(exist_ok=True)
        tool.write_text(f"#!/bin/sh\nprintf '%s' '{stdout}'\nexit {status}\n")
        tool.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")

    # SlurmJob keeps one status cache for all jobs; a fresh one makes the next poll call sacct.
    monkeypatch.setattr(submitit.SlurmJob, "watcher", type(submitit.SlurmJob.watcher)(delay_s=600))
    return install


@pytest.mark.parametrize("stdout, status", [(GARBLED, 0), ("", 1)], ids=["unparsable", "failed"])
def test_a_sacct_hiccup_reads_unknown(sacct, tmp_path, stdout, status):
    sacct(stdout, status)
    job = submitit.SlurmJob(folder=tmp_path / "%j", job_id="123")
    assert Handle(None, job).state() == "UNKNOWN"


def test_a_running_job_reads_its_state(sacct, tmp_path):
    sacct("JobID|State|NodeList\n123|RUNNING|node1\n")
    assert Handle(None, submitit.SlurmJob(folder=tmp_path / "%j", job_id="123")).state() == "RUNNING"


def test_a_bug_in_the_poll_is_not_taken_for_a_hiccup():
    class Broken:  # a submitit job whose state property has a bug
        @property
        def state(self):
            return None.upper()

    with pytest.raises(AttributeError):
        Handle(None, Broken()).state()


def test_a_job_run_in_process_has_no_state_to_follow():
    assert Handle(None).state() == "UNKNOWN"
