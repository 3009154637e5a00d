"""Pieces of the Slurm shell scripts that run without Slurm: no daemon, namespace or job is touched."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shell_function(script: str, name: str) -> str:
    """The text of `name() { ... }` in `script` (a function that starts and ends at column 0)."""
    m = re.search(rf"^{name}\(\) \{{.*?^\}}$", (ROOT / script).read_text(), re.S | re.M)
    assert m, f"{script}: no function {name}"
    return m.group(0)


def test_local_cluster_nodes_option_without_a_value_is_an_error_not_a_hang():
    prog = "\n".join(['set -euo pipefail', 'die() { echo "error: $*" >&2; exit 1; }',
                      shell_function("slurm/local-cluster.sh", "parse_nodes"), 'parse_nodes "$@"; echo "$NODES"'])
    for args, nodes in ((["--nodes", "2"], "2"), (["--nodes=3"], "3"), ([], "1")):
        r = subprocess.run(["bash", "-c", prog, "sh", *args], capture_output=True, text=True, timeout=10,
                           env={"PATH": "/usr/bin:/bin"})
        assert (r.returncode, r.stdout.strip()) == (0, nodes), r.stderr
    # `start --nodes` with the number forgotten looped forever (`shift 2` fails on one argument)
    r = subprocess.run(["bash", "-c", prog, "sh", "--nodes"], capture_output=True, text=True, timeout=10,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and "--nodes: expected a number" in r.stderr


def _fake_slurm(tmp_path: Path, srun_body: str) -> tuple[dict, Path]:
    """An environment in which slurm/learngene.sh finds a stub srun and scontrol, and nothing else of
    Slurm's: PATH holds only links to the few tools the script needs, so no real Slurm command runs."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("mkdir", "date", "head", "stat", "tail", "grep", "sed", "seq"):
        (bin_ / tool).symlink_to(subprocess.run(["bash", "-c", f"type -P {tool}"], capture_output=True, text=True,
                                                check=True).stdout.strip())
    requeued = tmp_path / "requeued"
    stubs = {"srun": srun_body,
             "scontrol": f'case $1 in show) echo node1 ;; requeue) echo "$2" >>{requeued} ;; *) exit 1 ;; esac',
             "python": "exit 0"}
    for name, body in stubs.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    env = {"PATH": str(bin_), "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node1", "TLEG_REPO": str(ROOT),
           "TLEG_RUN_DIR": str(tmp_path / "run"), "TLEG_PYTHON": str(bin_ / "python")}
    return env, requeued


def _learngene_sh(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(ROOT / "slurm" / "learngene.sh"), "configs/cpu/tiny_learngene.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_learngene_sh_requeues_after_a_lost_peer_however_much_the_ranks_print_after_it(tmp_path):
    # A rank's PeerLost line followed by more output than a pipe holds: `tail | grep -q` under
    # pipefail saw tail die of SIGPIPE, missed the line, and the job ended failed, not requeued.
    env, requeued = _fake_slurm(tmp_path, "echo '1: [rank 1 on node2] error: PeerLost: a collective failed'\n"
                                          "for i in $(seq 4000); do printf '0: %0100d\\n' $i; done\nexit 1")
    r = _learngene_sh(env)
    log = (tmp_path / "run" / "job.log").read_text()
    assert r.returncode == 0, log[-2000:]
    assert requeued.read_text().split() == ["4242"]
    assert "learngene.sh: requeued after a lost peer (1/3)" in log


def test_learngene_sh_passes_a_failure_without_lost_peer_on(tmp_path):
    env, requeued = _fake_slurm(tmp_path, "echo '0: Traceback: something else'\nexit 7")
    r = _learngene_sh(env)
    assert r.returncode == 7 and not requeued.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="`make test` starts the local cluster only as root")
@pytest.mark.parametrize("keep", ["0", "1"])
def test_make_test_stops_a_cluster_that_failed_to_start(tmp_path, keep):
    """`make test` in a copy of the Makefile, with a stub local-cluster.sh whose start fails: the real
    cluster and the real suite are never touched."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    calls = tmp_path / "calls"
    stubs = {"scripts/setup.sh": "exit 0",
             "slurm/local-cluster.sh": f'echo "$*" >>{calls}; [ "$1" != start ]',
             ".venv/bin/python": f'echo pytest >>{calls}'}
    for path, body in stubs.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(f"#!/bin/bash\n{body}\n")
        (tmp_path / path).chmod(0o755)
    r = subprocess.run(["make", "-s", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "TLEG_KEEP_CLUSTER": keep})
    assert r.returncode != 0
    # a failed start could leave daemons, namespaces and the bridge up: make stopped there and never cleaned up
    assert calls.read_text().splitlines() == (["start --nodes 2", "stop"] if keep == "0" else ["start --nodes 2"])


def test_local_cluster_failed_package_install_removes_its_policy_rc_d(tmp_path):
    """install_missing blocks daemon starts with a policy-rc.d while apt runs (here a file in tmp_path,
    and stub dpkg-query/apt-get: the system is not touched). A failed apt-get left it behind, so every
    later package install on the machine silently started no service."""
    policy = tmp_path / "policy-rc.d"
    fn = shell_function("slurm/local-cluster.sh", "install_missing").replace("/usr/sbin/policy-rc.d", str(policy))
    assert str(policy) in fn
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("grep", "chmod", "rm"):
        (bin_ / tool).symlink_to(subprocess.run(["bash", "-c", f"type -P {tool}"], capture_output=True, text=True,
                                                check=True).stdout.strip())
    for name, body in {"dpkg-query": "exit 1", "apt-get": "exit 100"}.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    prog = "\n".join(['set -euo pipefail', 'log() { echo "$*" >&2; }', 'die() { log "error: $*"; exit 1; }',
                      'PACKAGES=(slurmd munge)', fn, 'install_missing'])
    r = subprocess.run(["/bin/bash", "-c", prog], capture_output=True, text=True, timeout=30, env={"PATH": str(bin_)})
    assert r.returncode != 0
    assert not policy.exists()


def test_local_nodes_refuse_an_address_range_in_use_whatever_else_ip_lists(tmp_path):
    """net_up must refuse when 198.18.0.x is already on the machine. With `ip -o addr show | grep -q`
    under pipefail, an `ip` that had more to print after the match died of SIGPIPE, the check read as
    false, and the bridge was made anyway. Stub `ip` only; it fails anything but the two queries."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "grep").symlink_to(subprocess.run(["bash", "-c", "type -P grep"], capture_output=True, text=True,
                                              check=True).stdout.strip())
    (bin_ / "ip").write_text('#!/bin/bash\ncase "$*" in\n'
                             '  "link show tleg-br0") exit 1 ;;\n'
                             '  "-o addr show") echo "2: eth9    inet 198.18.0.7/24 scope global eth9"\n'
                             '                  for i in $(seq 3000); do printf "%d: veth%d    inet 10.9.%d.1/32\\n" $i $i $i; done ;;\n'
                             '  *) exit 1 ;;\nesac\n')
    (bin_ / "ip").chmod(0o755)
    (bin_ / "seq").symlink_to(subprocess.run(["bash", "-c", "type -P seq"], capture_output=True, text=True,
                                             check=True).stdout.strip())
    prog = "\n".join(['set -euo pipefail', 'log() { echo "$*" >&2; }', 'die() { log "error: $*"; exit 1; }',
                      (ROOT / "slurm" / "local-nodes.sh").read_text(), 'net_up 2'])
    r = subprocess.run(["/bin/bash", "-c", prog], capture_output=True, text=True, timeout=30, env={"PATH": str(bin_)})
    assert r.returncode == 1 and "198.18.0.0/24 is already in use" in r.stderr, r.stderr
