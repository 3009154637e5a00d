"""Pieces of the Slurm shell scripts that run without Slurm: no daemon, namespace or job is touched."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
