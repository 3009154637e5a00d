"""The demo and the experiment's smoke plan on the local 2-node Slurm (`--cluster`): the same
table as in-process, a half-finished plan rerun, and a failed job with its dependents."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _experiment import EVERY_INIT, RECIPE
from slurm_helpers import PYTHON, REPO, job_env

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1200)]

DEMO = ["-m", "tleg_dist.demo", "--smoke", "depths=[1,2]"]
# One reported seed: every kind of upstream job, the tuning phase and every init, in a few minutes.
EXPERIMENT = ["launchers/experiment.py", "--config", str(RECIPE), "--smoke", "seeds=[0]", *EVERY_INIT]


def launch(args: list[str], *more: str, timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = [PYTHON, *args, "--progress-every", "20", *more]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=job_env(), timeout=timeout)
    print(r.stdout[-3000:])
    return r


def tops(out: Path) -> dict[str, float]:
    doc = json.loads((out / "results.json").read_text())
    return {r["name"]: r["top1"] for r in doc["upstream"] + doc["des"]}


def test_demo_on_slurm_gives_the_in_process_table_and_reruns_only_what_is_missing(slurm_cluster, tmp_path):
    here = launch(DEMO, f"output_dir={tmp_path / 'here'}")
    assert here.returncode == 0, here.stdout[-3000:] + here.stderr[-3000:]
    there = launch(DEMO, f"output_dir={tmp_path / 'slurm'}", "--cluster")
    assert there.returncode == 0, there.stdout[-3000:] + there.stderr[-3000:]
    assert tops(tmp_path / "here") == tops(tmp_path / "slurm")
    assert (tmp_path / "here" / "results.md").read_text() == (tmp_path / "slurm" / "results.md").read_text()
    # one array per stage and set of inputs, queued behind its inputs with afterok
    jobs = json.loads((tmp_path / "slurm" / "jobs.json").read_text())
    arrays = {name: j["job_id"].split("_")[0] for name, j in jobs.items()}
    assert arrays["teacher"] == arrays["depth 1 scratch"] == arrays["depth 2 scratch"]
    assert arrays["depth 1 learngene"] == arrays["depth 2 learngene"] != arrays["learngene"]
    dep = subprocess.run(["sacct", "-n", "-X", "-P", "-j", arrays["learngene"], "-o", "State"],
                         capture_output=True, text=True).stdout
    assert "COMPLETED" in dep, dep

    # half-finished: one Des-Net lost its completion marker; the rerun submits only that one
    (tmp_path / "slurm" / "des" / "depth2_learngene" / "summary.json").unlink()
    again = launch(DEMO, f"output_dir={tmp_path / 'slurm'}", "--cluster")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "[plan] 5 done, 1 to run on slurm" in again.stdout and again.stdout.count("submitted job") == 1
    assert tops(tmp_path / "here") == tops(tmp_path / "slurm")


def test_a_failed_job_on_slurm_is_named_its_users_cancelled_the_rest_kept(slurm_cluster, tmp_path):
    broken = "learngene.overrides=[data.format=imagefolder,data.root=/nonexistent/tleg_images]"
    r = launch(DEMO, f"output_dir={tmp_path}", broken, "--cluster")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[plan] learngene: FAILED" in r.stdout and "/nonexistent/tleg_images" in r.stdout
    for d in (1, 2):  # queued behind it with afterok: cancelled instead of waiting forever
        assert f"[plan] depth {d} learngene: cancelled, it needs learngene" in r.stdout
    doc = json.loads((tmp_path / "results.json").read_text())
    assert sorted(x["name"] for x in doc["des"]) == ["depth 1 scratch", "depth 2 scratch"]
    assert list(doc["failed"]) == ["learngene"] and sorted(doc["blocked"]) == ["depth 1 learngene",
                                                                                "depth 2 learngene"]
    queue = subprocess.run(["squeue", "-h", "-o", "%j %T"], capture_output=True, text=True).stdout
    assert "tleg-" not in queue, queue


def test_experiment_smoke_on_slurm_gives_the_in_process_table(slurm_cluster, tmp_path):
    def run(where: str, *more: str):
        over = [f"output_dir={tmp_path / where}", f"results_dir={tmp_path / where / 'results'}"]
        r = launch(EXPERIMENT, *over, *more)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return json.loads((tmp_path / where / "results" / "experiment.json").read_text())

    here, there = run("here"), run("slurm", "--cluster", "resources.parallelism=4")
    assert there["complete"] and there["runs_finished"] == there["runs_planned"] == 51 + 20
    cell = lambda s: {(c["setting"], c["depth"], c["init"]): c["top1_per_seed"] for c in s["records"]}  # noqa: E731
    assert cell(here) == cell(there)
    assert here["tuning"] == there["tuning"]  # the same choices, made after phase 1 finished on Slurm
