"""Helpers for the tests against the local Slurm: submit, poll squeue/sacct, run the launcher."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CLUSTER_SH = REPO / "slurm" / "local-cluster.sh"
NODES = {"tleg-n1": "198.18.0.11", "tleg-n2": "198.18.0.12"}  # what `local-cluster.sh start --nodes 2` makes
TINY_LG = "configs/cpu/tiny_learngene.yaml"
LEARNGENE_OVERRIDES = ["train.epochs=4"]  # 32 steps on 2 ranks: long enough to preempt mid-run
# ZeRO-2: each rank writes its own optimizer shard, so a checkpoint needs every node to save.
LEARNGENE_DS = "configs/ds/zero2.json"


def job_env(**extra) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    env.pop("TLEG_REQUEUE", None)
    env.update(extra)
    return env


def wait_until(cond, timeout: float, what: str, every: float = 0.1):
    end = time.time() + timeout
    while time.time() < end:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def squeue_state(job_id: str) -> str | None:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
    return out.split()[0] if out.split() else None


def sacct_states(job_id: str) -> list[str]:
    """States of every attempt of the job's allocation (-D: requeued attempts too)."""
    out = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "-o", "State"],
                         capture_output=True, text=True).stdout
    return [s.split()[0] for s in out.splitlines() if s.strip()]


def wait_job_end(job_id: str, timeout: float = 600) -> str:
    """Wait for the job to leave the queue, then say how its last attempt ended.

    slurmctld knows at once (`scontrol show job`, kept MinJobAge seconds); sacct lags, and for
    a requeued job it may for a moment list only the earlier attempt's end (NODE_FAIL)."""
    wait_until(lambda: squeue_state(job_id) is None, timeout, f"job {job_id} to finish", every=0.5)
    final = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    state = re.search(r"JobState=(\S+)", shown)
    if state and state.group(1) in final:
        return state.group(1)
    states = wait_until(lambda: [s for s in sacct_states(job_id) if s in final], 60,
                        f"sacct to record job {job_id}", every=0.5)
    return states[-1]


def train_steps_logged(run_dir: Path) -> int:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()
             if line.strip() and '"train"' in line]
    return max(steps, default=0)


def sbatch_learngene(runs_root: Path, overrides=(), **env) -> str:
    """The tiny learngene recipe as a 2-node job, one rank per node."""
    cmd = ["sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1",
           f"--output={runs_root}/slurm-%j.out", "slurm/learngene.sh", TINY_LG, *overrides]
    runs_root.mkdir(parents=True, exist_ok=True)
    env = {"TLEG_PYTHON": PYTHON, "TLEG_RUNS_ROOT": str(runs_root), "TLEG_DS_CONFIG": LEARNGENE_DS, **env}
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=job_env(**env))
    assert r.returncode == 0, f"sbatch failed: {r.stderr}"
    return r.stdout.strip().split(";")[0]


def run_sweep_cli(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [PYTHON, "launchers/sweep_depths.py", "--progress-every", "10", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=job_env(), timeout=timeout)




def cluster(*args: str, timeout: float = 300) -> str:
    """slurm/local-cluster.sh ARGS (start --nodes 2, node-kill NODE, link-down NODE, ...)."""
    r = subprocess.run(["bash", str(CLUSTER_SH), *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"local-cluster.sh {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def node_peers(node: str) -> set[str]:
    """Remote addresses of the established TCP connections of python processes on `node`,
    read inside its network namespace."""
    out = subprocess.run(["nsenter", f"--net=/var/run/netns/{node}", "ss", "-tnpH", "state", "established"],
                         capture_output=True, text=True, check=True).stdout
    peers = set()
    for line in out.splitlines():
        if '"python' in line:
            remote = line.split()[3]  # Recv-Q Send-Q Local Peer Process
            peers.add(remote.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:"))
    return peers


def log_since(path: Path, offset: int = 0) -> str:
    return path.read_text()[offset:] if path.exists() else ""
