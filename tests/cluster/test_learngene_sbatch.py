"""`sbatch slurm/learngene.sh` on the local Slurm: 2 CPU tasks, and a preemption that resumes."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from slurm_helpers import (LEARNGENE_OVERRIDES, REPO, sacct_states, sbatch_learngene, squeue_state,
                                    train_steps_logged, wait_job_end, wait_until)
from tleg_dist import learngene_file

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


def test_signalled_learngene_job_requeues_resumes_and_matches_uninterrupted_run(tiny_learngene, tmp_path):
    job = sbatch_learngene(tmp_path, LEARNGENE_OVERRIDES)
    run = tmp_path / f"learngene-{job}"
    wait_until(lambda: train_steps_logged(run) >= 3, 300, "the job to take 3 steps")
    # What Slurm does --signal seconds before the time limit: USR1 to every rank.
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    assert wait_job_end(job) == "COMPLETED", (run / "job.log").read_text()

    log = (run / "job.log").read_text()
    assert "preempted at step" in log and "requeued Slurm job" in log, log
    assert "restart 1" in log and "resumed from" in log, log
    assert sacct_states(job)[0] == "REQUEUED"
    ref = load_file(str(tiny_learngene["file"]))
    got = load_file(str(run / "learngene.safetensors"))
    assert ref.keys() == got.keys()
    diff = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert not diff, f"resumed run differs from the uninterrupted one in {diff}"


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
