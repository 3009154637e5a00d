"""`sbatch slurm/learngene.sh` on the local Slurm: a 2-node job, and the script's own errors.

Faults across the nodes (node loss, partition, preemption) are in test_multinode.py."""

from __future__ import annotations

import json
import subprocess

import pytest
from slurm_helpers import REPO, squeue_state, wait_job_end
from tleg_dist.artifacts import learngene as learngene_file

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_learngene_job_writes_a_learngene_in_a_folder_named_after_the_job(tiny_learngene):
    run = tiny_learngene["run_dir"]
    log = (run / "job.log").read_text() if (run / "job.log").exists() else "(no job.log)"
    assert tiny_learngene["state"] == "COMPLETED", log
    assert run.name == f"learngene-{tiny_learngene['job']}"
    lg = learngene_file.load(tiny_learngene["file"])
    assert lg.aux_depth == 2 and lg.arch.embed_dim == 32
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == 32  # 4 epochs x 8 steps on 2 ranks
    # both ranks ran, and their output is in the run folder, labelled by rank
    assert "ranks=2" in log and "\n0: " in log and "\n1: " in log


def test_learngene_script_refuses_outside_slurm():
    r = subprocess.run(["bash", "slurm/learngene.sh", "configs/cpu/tiny_learngene.yaml"], cwd=REPO,
                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "sbatch" in r.stderr


def test_learngene_job_without_recipe_fails_with_a_message(slurm_cluster, tmp_path):
    r = subprocess.run(["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=0",
                        "--cpus-per-task=1", f"--output={tmp_path}/out-%j.txt", "slurm/learngene.sh",
                        "configs/cpu/no_such_recipe.yaml"], cwd=REPO, capture_output=True, text=True, check=True)
    job = r.stdout.strip()
    assert wait_job_end(job) == "FAILED"
    assert squeue_state(job) is None
    out = (tmp_path / f"out-{job}.txt").read_text()
    assert "no_such_recipe.yaml does not exist" in out
