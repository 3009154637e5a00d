"""Real trainer processes for the fault tests: start, watch, kill, compare.

Every run goes through tests/faults/driver.py (train.py plus faults from TLEG_FAULT_* variables);
with ranks=2 it runs under the `deepspeed` launcher, as users run it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
import yaml
from _launch import free_port
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "tests" / "faults" / "driver.py"
VENV_BIN = Path(sys.executable).parent

# Pinned here rather than taken from configs/cpu so that a recipe edit cannot move the step
# numbers the tests rely on. 512 images / batch 32: 16 steps per epoch on 1 rank, 8 on 2;
# a checkpoint every 4 steps, so a periodic save also lands on every epoch's end.
RECIPE = {
    "stage": "learngene", "seed": 0,
    "model": {"embed_dim": 32, "num_heads": 2, "depth": 2, "patch_size": 7, "img_size": 28, "in_chans": 1,
              "num_classes": 10},
    "data": {"format": "synthetic", "synthetic_size": 512, "batch_size": 32, "eval_batch_size": 128},
    "distill": {"type": "none"},
    "optim": {"lr": 0.001, "warmup_epochs": 0},
    # collective_timeout_s: a test that goes wrong fails in a minute instead of DeepSpeed's ten
    "train": {"epochs": 2, "log_every_steps": 1, "progress": False, "collective_timeout_s": 60},
    "checkpoint": {"every_steps": 4, "keep_last": 2},
}
STEPS_PER_EPOCH = {1: 16, 2: 8}


def write_recipe(path: Path, **sections) -> Path:
    raw = json.loads(json.dumps(RECIPE))
    for name, values in sections.items():
        raw[name] = {**raw[name], **values} if isinstance(values, dict) else values
    path.write_text(yaml.safe_dump(raw))
    return path


def base_env(**faults) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions")))
    for k in [k for k in env if k.startswith("TLEG_FAULT_") or k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")]:
        del env[k]
    env.update({f"TLEG_FAULT_{k.upper()}": str(v) for k, v in faults.items()})
    return env


def command(recipe: Path, out: Path, *overrides: str, ranks: int = 1, resume: str | None = None,
            ds: str = "configs/ds/zero0.json") -> list[str]:
    args = ["--config", str(recipe), "--deepspeed_config", ds, f"output_dir={out}", *overrides]
    if resume:
        args += ["--resume", resume]
    if ranks == 1:
        return [sys.executable, str(DRIVER), *args]
    return [str(VENV_BIN / "deepspeed"), "--num_gpus", str(ranks), "--master_port", str(free_port()),
            str(DRIVER), *args]


class Run:
    """A trainer started in its own session, so a test can always clean up what it started."""

    def __init__(self, cmd: list[str], log: Path, env: dict):
        self.log_path = log
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_all(self) -> None:
        """SIGKILL the process group this run created (its launcher and ranks), if still there."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


def rank_processes(run: Run) -> dict[int, psutil.Process]:
    """The run's rank processes by local rank (the deepspeed launcher passes --local_rank=N).

    The launcher also starts short-lived helpers; one may exit between listing and reading its
    command line, so processes that vanish meanwhile are skipped, not an error.
    """
    ranks = {}
    for p in psutil.Process(run.proc.pid).children(recursive=True):
        try:
            args = p.cmdline()
        except psutil.Error:
            continue
        for a in args:
            if a.startswith("--local_rank="):
                ranks[int(a.split("=", 1)[1])] = p
    return ranks


def start(recipe: Path, out: Path, *overrides: str, ranks: int = 1, resume: str | None = None,
          ds: str = "configs/ds/zero0.json", name: str = "run", log_dir: Path | None = None, **faults) -> Run:
    """The log goes beside `out` unless `log_dir` says where (not on a disk a test fills up)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log = (log_dir or out.parent) / f"{out.name}.{name}.log"
    return Run(command(recipe, out, *overrides, ranks=ranks, resume=resume, ds=ds), log, base_env(**faults))


def run(recipe: Path, out: Path, *overrides: str, timeout: float = 300, **kw) -> tuple[int, str]:
    r = start(recipe, out, *overrides, **kw)
    try:
        rc = r.wait(timeout)
    finally:
        r.kill_all()
    return rc, r.log


def wait_until(pred, timeout: float, what: str, run: Run | None = None, poll: float = 0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        if run is not None and run.proc.poll() is not None:
            raise AssertionError(f"run exited ({run.proc.returncode}) before {what}:\n{run.log[-3000:]}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f":\n{run.log[-3000:]}" if run else ""))


def train_step(out: Path) -> int:
    """Newest optimizer step rank 0 has logged (0 before the first)."""
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [json.loads(line)["step"] for line in lines if line.endswith("}") and '"train"' in line]
    return max(steps, default=0)


def complete_steps(out: Path) -> list[int]:
    from tleg_dist.artifacts.checkpoints import complete_tags
    return [s for s, _ in complete_tags(out / "checkpoints")]


def resumed_from(log: str) -> tuple[str, int, int, int]:
    """(tag, epoch, batch, step) from the trainer's 'resumed from' line."""
    m = re.search(r"resumed from \S*/(step_\d+): epoch (\d+), batch (\d+), step (\d+)", log)
    assert m, f"no 'resumed from' line in the log:\n{log[-3000:]}"
    return m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))


def assert_same_weights(a: Path, b: Path) -> None:
    """Bit-for-bit equality of two exported files (same keys, same dtypes, equal tensors)."""
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    diff = [k for k in ta if ta[k].dtype != tb[k].dtype or not torch.equal(ta[k], tb[k])]
    assert not diff, f"{a} and {b} differ in {diff}"


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes: to prove a failed run changed nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
