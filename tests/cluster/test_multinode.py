"""`slurm/learngene.sh` across two Slurm "hosts" (network namespaces on one machine), and what
a user meets there: a node that dies, a network that drops, a preemption.

Every fault run is the tiny learngene recipe with one rank per node, slowed to 0.2 s per
micro-step (tests/faults/driver.py) so the fault lands mid-run, after the step-4 checkpoint.
Its final learngene must equal the uninterrupted 2-node run's (the `tiny_learngene` fixture)
bit for bit: each resume restarts from a complete checkpoint, reseeds every micro-step from
(seed, step, rank) and replays the same batches, and a 2-rank all-reduce adds the same two
numbers whichever rank runs it.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import torch
from _launch import run_train
from safetensors.torch import load_file
from slurm_helpers import (LEARNGENE_DS, LEARNGENE_OVERRIDES, NODES, REPO, TINY_LG, cluster, log_since,
                           node_peers, sacct_states, sbatch_learngene, squeue_state, train_steps_logged,
                           wait_job_end, wait_until)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

TIMEOUT_S = 10  # train.collective_timeout_s of the fault runs
SLOW = {"TLEG_ENTRY": "tests/faults/driver.py", "TLEG_FAULT_STEP_DELAY_S": "0.2"}
PEER_LOST = re.compile(r"^(\d): \[rank \1 on (tleg-n\d)\] error: PeerLost: .*$", re.M)


def _diff(a: Path, b: Path) -> list[str]:
    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()
    return [k for k in x if not torch.equal(x[k], y[k])]


def _start_slow_job(root: Path) -> tuple[str, Path]:
    job = sbatch_learngene(root, [*LEARNGENE_OVERRIDES, f"train.collective_timeout_s={TIMEOUT_S}"], **SLOW)
    run = root / f"learngene-{job}"
    wait_until(lambda: train_steps_logged(run) >= 6, 300, "step 6 (past the step-4 checkpoint)")
    return job, run


def _finish_and_compare(job: str, run: Path, reference: Path) -> str:
    assert wait_job_end(job) == "COMPLETED", (run / "job.log").read_text()[-4000:]
    log = (run / "job.log").read_text()
    resumed = re.findall(r"resumed from \S+/(step_\d+): epoch \d+, batch \d+, step (\d+)", log)
    assert resumed, log[-4000:]
    diff = _diff(reference, run / "learngene" / "learngene.safetensors")
    assert not diff, f"the resumed run differs from the uninterrupted one in {diff}"
    return resumed[-1][0]


def _wait_peer_lost(run: Path, offset: int, ranks: int, t_fault: float) -> dict[str, float]:
    """Seconds from the fault to each failing rank's one-line error, by node."""
    seen: dict[str, float] = {}

    def lines():
        for m in PEER_LOST.finditer(log_since(run / "job.log", offset)):
            seen.setdefault(m.group(2), time.monotonic() - t_fault)
        return len(seen) >= ranks

    wait_until(lines, TIMEOUT_S + 60, f"{ranks} rank(s) to report the lost peer")
    return seen


def test_two_node_job_equals_two_ranks_on_one_node(tiny_learngene, tmp_path):
    run = tiny_learngene["run_dir"]
    log = (run / "job.log").read_text()
    assert tiny_learngene["state"] == "COMPLETED", log[-4000:]
    assert re.search(r"on tleg-n\[1-2\]", log) and "nodes=2 ranks=2 master=tleg-n1:" in log, log[:2000]
    # the same recipe, 2 ranks of the deepspeed launcher on this host (loopback)
    one_node = tmp_path / "one_node"
    run_train(["--config", TINY_LG, "--deepspeed_config", LEARNGENE_DS, *LEARNGENE_OVERRIDES,
               f"output_dir={one_node}"], nproc=2)
    diff = _diff(one_node / "learngene" / "learngene.safetensors", tiny_learngene["file"])
    assert not diff, f"2 nodes and 2 ranks on one node differ in {diff}"


@pytest.mark.parametrize("launch", ["torchrun", "deepspeed"])
def test_per_node_launchers_across_two_nodes_equal_srun(tiny_learngene, tmp_path, launch):
    """TLEG_LAUNCH: one Slurm task per node, whose launcher starts that node's rank (the
    deepspeed runner needs the hostfile the script writes, or it refuses 2 nodes)."""
    job = sbatch_learngene(tmp_path, LEARNGENE_OVERRIDES, TLEG_LAUNCH=launch)
    run = tmp_path / f"learngene-{job}"
    assert wait_job_end(job) == "COMPLETED", log_since(run / "job.log")[-4000:]
    diff = _diff(tiny_learngene["file"], run / "learngene" / "learngene.safetensors")
    assert not diff, f"TLEG_LAUNCH={launch} differs from srun in {diff}"


def test_node_loss_fails_fast_requeues_and_resumes_exactly(tiny_learngene, tmp_path):
    job, run = _start_slow_job(tmp_path)
    # gloo's sockets run over the namespaces' links, each rank to the other node's address
    assert NODES["tleg-n2"] in node_peers("tleg-n1"), node_peers("tleg-n1")
    assert NODES["tleg-n1"] in node_peers("tleg-n2"), node_peers("tleg-n2")

    offset = len(log_since(run / "job.log"))
    t_kill = time.monotonic()
    cluster("node-kill", "tleg-n2")  # rank 1, its slurmstepd and slurmd: the host is gone
    try:
        took = _wait_peer_lost(run, offset, 1, t_kill)
        print(f"node loss: rank 0 reported it after {took['tleg-n1']:.1f}s")
        assert took["tleg-n1"] < TIMEOUT_S + 15, took
        # Slurm declares the node DOWN (SlurmdTimeout) and requeues the job (NODE_FAIL, --requeue)
        wait_until(lambda: squeue_state(job) == "PENDING", 120, "the job to be requeued")
        t_requeued = time.monotonic() - t_kill
        # slurmctld hands the record to slurmdbd asynchronously: sacct may lag squeue on a busy host
        wait_until(lambda: "NODE_FAIL" in sacct_states(job), 60, f"sacct to record job {job} as NODE_FAIL")
    finally:
        cluster("start", "--nodes", "2")  # the host comes back (also after a failure: the next tests need it)
    tag = _finish_and_compare(job, run, tiny_learngene["file"])
    print(f"node loss: requeued {t_requeued:.0f}s after the kill, resumed from {tag}")


def test_network_partition_fails_both_ranks_and_resumes_once_healed(tiny_learngene, tmp_path):
    job, run = _start_slow_job(tmp_path)
    offset = len(log_since(run / "job.log"))
    t_cut = time.monotonic()
    cluster("link-down", "tleg-n2")
    try:
        took = _wait_peer_lost(run, offset, 1, t_cut)  # rank 0 can still write the log; rank 1 cannot
        time.sleep(max(0.0, TIMEOUT_S + 3 - (time.monotonic() - t_cut)))
    finally:
        cluster("link-up", "tleg-n2")
    # once the link is back, node 2 delivers its rank's line too, and the script requeues the job
    took = _wait_peer_lost(run, offset, 2, t_cut)
    print(f"partition: ranks reported it after {took}")
    assert TIMEOUT_S - 1 < took["tleg-n1"] < TIMEOUT_S + 15, took
    log = log_since(run / "job.log", offset)
    wait_until(lambda: "requeued after a lost peer (1/3)" in log_since(run / "job.log", offset), 120,
               "learngene.sh to requeue the job")
    tag = _finish_and_compare(job, run, tiny_learngene["file"])
    print(f"partition: resumed from {tag}")
    assert "Traceback" not in log, log[-3000:]


def test_preempted_two_node_job_saves_on_every_node_and_resumes(tiny_learngene, tmp_path):
    job = sbatch_learngene(tmp_path, LEARNGENE_OVERRIDES, **SLOW)
    run = tmp_path / f"learngene-{job}"
    wait_until(lambda: train_steps_logged(run) >= 3, 300, "the job to take 3 steps")
    subprocess.run(["scancel", "--signal=USR1", job], check=True)  # what --signal does before the limit
    assert wait_job_end(job) == "COMPLETED", (run / "job.log").read_text()[-4000:]
    log = (run / "job.log").read_text()
    stop = re.search(r"preempted at step (\d+)", log)
    assert stop and "requeued Slurm job" in log and "restart 1" in log, log[-4000:]
    # both nodes saved at the same step, and the next attempt resumed from exactly that checkpoint
    tag = f"step_{int(stop.group(1)):08d}"
    assert re.search(rf"resumed from \S+/{tag}: ", log), log[-4000:]
    # a ZeRO-2 checkpoint is complete only with one optimizer shard from each node's rank
    tags = sorted((run / "checkpoints").glob("step_*"))
    assert tags, "no checkpoint left to check"
    for kept in tags:
        shards = sorted(p.name for p in kept.rglob("*optim_states.pt"))
        assert len(shards) == 2, (kept.name, shards)
    assert sacct_states(job)[0] == "REQUEUED"
    diff = _diff(tiny_learngene["file"], run / "learngene" / "learngene.safetensors")
    assert not diff, f"the preempted run differs from the uninterrupted one in {diff}"


def test_start_is_idempotent_and_lists_both_nodes(slurm_cluster):
    out = cluster("start", "--nodes", "2")
    assert "ready: tleg-n1@" in out and "tleg-n2@" in out, out
    status = subprocess.run(["bash", str(REPO / "slurm" / "local-cluster.sh"), "status"], capture_output=True,
                            text=True)
    assert status.returncode == 0 and "tleg-n1 idle" in status.stdout, status.stdout
    hosts = Path("/etc/hosts").read_text()
    assert all(f"{addr} {node}" in hosts for node, addr in NODES.items()), hosts
