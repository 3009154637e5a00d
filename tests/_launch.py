"""Run the real trainer in fresh processes (1 rank: python; N ranks: the deepspeed launcher).

Subprocesses keep each run's process group and env out of the pytest process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "tleg_dist" / "train.py"
TINY = ROOT / "configs" / "cpu" / "tiny_learngene.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    env.update(extra)
    return env


def train_cmd(args: list[str], nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, str(TRAIN), *args]
    launcher = Path(sys.executable).parent / "deepspeed"
    return [str(launcher), "--num_gpus", str(nproc), "--master_port", str(free_port()), str(TRAIN), *args]


def run_train(args: list[str], nproc: int = 1, timeout: int = 600, check: bool = True, **env):
    r = subprocess.run(train_cmd(args, nproc), cwd=ROOT, env=clean_env(**env), capture_output=True,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"training failed (rc={r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
    return r


def summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def max_abs_diff(file_a: Path, file_b: Path) -> float:
    a, b = load_file(str(file_a)), load_file(str(file_b))
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def weights_equal(file_a: Path, file_b: Path) -> bool:
    a, b = load_file(str(file_a)), load_file(str(file_b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
