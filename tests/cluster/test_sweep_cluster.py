"""`launchers/sweep_depths.py` against the local Slurm, and locally, on the tiny CPU recipes."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from slurm_helpers import run_sweep_cli, sacct_states, train_steps_logged, wait_job_end, wait_until

from tleg_dist.artifacts import run_folder

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SWEEP = "configs/sweep/cpu_tiny.yaml"
DEPTHS = [2, 3, 4]


def _learngene(tiny_learngene) -> Path:
    assert tiny_learngene["state"] == "COMPLETED", "the learngene job failed; see test_learngene_sbatch"
    return tiny_learngene["file"]


def _args(lg: Path, out: Path, depths=DEPTHS, overrides=()) -> list[str]:
    args = ["--config", SWEEP, f"learngene={lg}", f"output_dir={out}", f"depths={list(depths)}"]
    if overrides:
        args.append("overrides=[" + ",".join(overrides) + "]")
    return args


def _records(out: Path) -> dict[int, dict]:
    return {r["depth"]: r for r in json.loads((out / "results.json").read_text())["des"]}


def _same_weights(a: Path, b: Path) -> list[str]:
    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()
    return [k for k in x if not torch.equal(x[k], y[k])]


@pytest.fixture(scope="module")
def cluster_sweep(tiny_learngene, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "cluster"
    r = run_sweep_cli(*_args(_learngene(tiny_learngene), out), "--cluster")
    return out, r


def test_cluster_sweep_runs_one_array_task_per_depth(cluster_sweep):
    out, r = cluster_sweep
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = json.loads((out / "jobs.json").read_text())
    ids = [jobs[f"depth {d}"]["job_id"] for d in DEPTHS]
    array = {i.split("_")[0] for i in ids}
    assert len(array) == 1 and all("_" in i for i in ids), f"not one array: {ids}"
    for i in ids:
        assert wait_until(lambda: "COMPLETED" in sacct_states(i), 60, f"sacct COMPLETED for {i}")
    recs = _records(out)
    assert sorted(recs) == DEPTHS
    for d, rec in recs.items():
        assert run_folder.finished(out / "runs" / f"depth_{d:03d}")  # the one completion marker
        assert Path(rec["weights"]).exists() and rec["params"] > 0 and rec["time_s"] > 0
        assert 0 <= rec["top1"] <= 100
    assert recs[2]["params"] < recs[3]["params"] < recs[4]["params"]
    for ext in ("md", "csv", "json", "png"):
        assert (out / f"results.{ext}").stat().st_size > 0
    assert "| 3 |" in (out / "results.md").read_text()
    for d in DEPTHS:
        assert f"depth {d}: done" in r.stdout


def test_cluster_sweep_runs_depths_on_different_nodes_at_once(cluster_sweep):
    """resources.parallelism 2 on two 1-core nodes: the first two depths run side by side, one per node."""
    out, r = cluster_sweep
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = json.loads((out / "jobs.json").read_text())
    spans = {}
    for d in DEPTHS:
        job = jobs[f"depth {d}"]["job_id"]
        rows = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "NodeList,Start,End", "-s", "CD"],
                              capture_output=True, text=True, check=True).stdout.split()
        node, start, end = rows[-1].split("|")
        spans[d] = (node, datetime.fromisoformat(start), datetime.fromisoformat(end))
    print("array tasks (node, start, end):", spans)
    overlapping = [(a, b) for a in DEPTHS for b in DEPTHS if a < b
                   and spans[a][0] != spans[b][0] and spans[a][1] < spans[b][2] and spans[b][1] < spans[a][2]]
    assert {s[0] for s in spans.values()} == {"tleg-n1", "tleg-n2"}, spans
    assert overlapping, f"no two depths ran on different nodes at the same time: {spans}"


def test_rerun_skips_finished_depths(cluster_sweep, tiny_learngene):
    out, first = cluster_sweep
    assert first.returncode == 0, first.stdout + first.stderr
    r = run_sweep_cli(*_args(_learngene(tiny_learngene), out), "--cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 done, 0 to run" in r.stdout and "submitted" not in r.stdout


def test_local_sweep_gives_the_cluster_results(cluster_sweep, tiny_learngene):
    cluster_out, first = cluster_sweep
    assert first.returncode == 0, first.stdout + first.stderr
    out = cluster_out.parent / "local"
    r = run_sweep_cli(*_args(_learngene(tiny_learngene), out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "started local job" in r.stdout and "submitted" not in r.stdout
    local, cluster = _records(out), _records(cluster_out)
    for d in DEPTHS:
        for key in ("top1", "top5", "val_loss", "params", "global_step", "seed", "fingerprint"):
            assert local[d][key] == cluster[d][key], (d, key)
        assert not _same_weights(Path(local[d]["weights"]), Path(cluster[d]["weights"]))


def test_preempted_two_task_job_resumes_and_matches_uninterrupted_run(tiny_learngene, tmp_path):
    lg = _learngene(tiny_learngene)
    long = ["train.epochs=8"]  # 64 steps on two ranks: room for two interruptions
    two_tasks = "resources.tasks_per_job=2"  # one job = 2 DeepSpeed ranks (Slurm tasks / local processes)
    two_nodes = "resources.nodes=2"  # on the cluster, one rank on each node
    out = tmp_path / "preempted"
    r = run_sweep_cli(*_args(lg, out, [3], long), two_tasks, two_nodes, "--cluster", "--no-wait")
    assert r.returncode == 0, r.stdout + r.stderr
    job = json.loads((out / "jobs.json").read_text())["depth 3"]["job_id"]
    run = out / "runs" / "depth_003"

    # 1. Slurm takes the node back: SIGTERM, then the job goes back to the queue.
    wait_until(lambda: train_steps_logged(run) >= 3, 300, "3 steps")
    subprocess.run(["scontrol", "requeue", job], check=True)
    # 2. submitit's own preemption/timeout signal, once it runs again past the first stop.
    first = wait_until(lambda: _attempts(run), 300, "the first attempt to stop")[0]["global_step"]
    wait_until(lambda: train_steps_logged(run) >= first + 5, 300, "5 more steps after the requeue")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)

    # A second launch follows the job (no resubmission) and collects it.
    r = run_sweep_cli(*_args(lg, out, [3], long), two_tasks, two_nodes, "--cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"following job {job}" in r.stdout
    assert wait_job_end(job) == "COMPLETED"
    attempts = _attempts(run)
    assert [a["status"] for a in attempts] == ["preempted", "preempted", "completed"], attempts
    assert _records(out)[3]["attempts"] == 3

    ref = tmp_path / "reference"
    r = run_sweep_cli(*_args(lg, ref, [3], long), two_tasks)  # locally, uninterrupted
    assert r.returncode == 0, r.stdout + r.stderr
    assert _records(ref)[3]["global_step"] == 64
    assert _records(ref)[3]["top1"] == _records(out)[3]["top1"]
    diff = _same_weights(run / "model" / "model.safetensors",
                         ref / "runs" / "depth_003" / "model" / "model.safetensors")
    assert not diff, f"preempted run differs from the uninterrupted one in {diff}"


def _attempts(run: Path) -> list[dict]:
    path = run / run_folder.ATTEMPTS
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_failing_job_shows_its_error_and_log(tiny_learngene, tmp_path):
    out = tmp_path / "failing"
    # Valid config, but the job cannot read its data: it raises inside the array task.
    bad = ["data.format=imagefolder", "data.root=/nonexistent/tleg_images"]
    r = run_sweep_cli(*_args(_learngene(tiny_learngene), out, [2], bad), "--cluster")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "depth 2: FAILED" in r.stdout
    assert "/nonexistent/tleg_images" in r.stdout  # the job's own error message
    log = [line.split("log: ", 1)[1] for line in r.stdout.splitlines() if "log: " in line]
    assert log and Path(log[0].strip()).exists()
    assert run_folder.finished(out / "runs" / "depth_002") is None
