"""Fixtures for the tests against the real local Slurm (slurm/local-cluster.sh).

The cluster (two nodes) is started once per session; it needs root (it starts system daemons) and
the tests skip, saying so, only when that is missing. Everything else is a failure.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from slurm_helpers import LEARNGENE_OVERRIDES, REPO, sbatch_learngene, wait_job_end


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root: slurm/local-cluster.sh starts munge, MariaDB and "
                    "the Slurm daemons (run the cluster tests as root, e.g. in CI)")
    # Two slurmd "hosts" in network namespaces (198.18.0.11-12), one core each: every job of
    # more than one task spans both, as it would on a real cluster.
    r = subprocess.run(["bash", str(REPO / "slurm" / "local-cluster.sh"), "start", "--nodes", "2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"slurm/local-cluster.sh start failed:\n{r.stdout}\n{r.stderr}"
    return True


@pytest.fixture(scope="session")
def tiny_learngene(slurm_cluster, tmp_path_factory):
    """`sbatch slurm/learngene.sh` with the tiny CPU recipe, one rank on each of the 2 nodes;
    the uninterrupted reference of the fault tests, and the learngene of the sweep tests."""
    root = tmp_path_factory.mktemp("learngene_runs")
    job = sbatch_learngene(root, LEARNGENE_OVERRIDES)
    state = wait_job_end(job)
    run_dir = root / f"learngene-{job}"
    return {"job": job, "state": state, "run_dir": run_dir, "root": root,
            "file": run_dir / "learngene" / "learngene.safetensors"}
