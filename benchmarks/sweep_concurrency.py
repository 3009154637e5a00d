"""Sweep concurrency: K depths with K slots against the same K depths with one slot.

    python benchmarks/sweep_concurrency.py                      # local executor, depths 2,3
    python benchmarks/sweep_concurrency.py --cluster            # Slurm array (local-cluster.sh start first)
    python benchmarks/sweep_concurrency.py --depths 2,3,4,5 --finetune train.epochs=4
    python benchmarks/sweep_concurrency.py --quick --out /tmp/x   # a minute or two: proves the script works

Each run starts from a fresh output folder, so nothing is skipped. The last line is JSON:
{"ratio": wall(1 slot) / wall(K slots), ...}; the ideal is K when every job has its own
cores (each job here uses cpus_per_task=1 thread). Per-job process start-up (importing
torch and DeepSpeed) is part of the wall time, as it is for users.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent


def make_learngene(out: Path) -> Path:
    """The tiny learngene (one process), unless it is already there."""
    path = out / "learngene" / "learngene" / "learngene.safetensors"  # the run folder's learngene folder
    if not path.exists():
        shutil.rmtree(out / "learngene", ignore_errors=True)
        subprocess.run([sys.executable, "tleg_dist/train.py", "--config", "configs/cpu/tiny_learngene.yaml",
                        f"output_dir={out / 'learngene'}"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return path


def timed_sweep(args, lg: Path, slots: int, out: Path) -> tuple[float, list[dict]]:
    from tleg_dist.plans import launch, sweep
    from tleg_dist.plans.executors import Local, Slurm
    from tleg_dist.plans.run import execute

    shutil.rmtree(out, ignore_errors=True)
    overrides = [f"learngene={lg}", f"output_dir={out}", f"depths=[{args.depths}]", f"resources.parallelism={slots}"]
    if args.finetune:
        overrides.append("overrides=[" + ",".join(args.finetune) + "]")
    recipe = launch.load(sweep.SweepRecipe, args.config, overrides)
    executor = (Slurm if args.cluster else Local)(recipe.resources, out)
    t0 = time.perf_counter()
    outcome = execute(sweep.build(recipe), executor, out, poll_s=0.2, progress_every_s=1e9,
                      echo=lambda s: print(s, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    if not outcome.ok:
        raise SystemExit(f"sweep with {slots} slot(s) failed: {sorted(outcome.failed)}")
    return wall, sorted(outcome.records, key=lambda r: r["depth"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/sweep/cpu_tiny.yaml", help="sweep recipe")
    p.add_argument("--depths", default="2,3", help="comma-separated; K = their number")
    p.add_argument("--learngene", type=Path, default=None, help="default: train the tiny one")
    p.add_argument("--finetune", nargs="*", default=["train.epochs=4"], help="fine-tuning overrides")
    p.add_argument("--cluster", action="store_true", help="Slurm array instead of local processes")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_sweep_concurrency")
    p.add_argument("--quick", action="store_true", help="depths 2,3 fine-tuned for one epoch: proves the script "
                   "works (a test runs it); not a measurement")
    args = p.parse_args(argv)
    if args.quick:
        args.depths, args.finetune = "2,3", ["train.epochs=1"]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.chdir(REPO)
    k = len(args.depths.split(","))
    lg = args.learngene or make_learngene(args.out)
    wall_k, recs_k = timed_sweep(args, lg, k, args.out / f"slots_{k}")
    wall_1, recs_1 = timed_sweep(args, lg, 1, args.out / "slots_1")
    same = [a["top1"] for a in recs_k] == [b["top1"] for b in recs_1]
    print(json.dumps({"benchmark": "sweep_concurrency", "mode": "slurm" if args.cluster else "local",
                      "depths": [int(d) for d in args.depths.split(",")], "slots": k, "cpus": os.cpu_count(),
                      "wall_1_slot_s": round(wall_1, 2), "wall_k_slots_s": round(wall_k, 2),
                      "ratio": round(wall_1 / wall_k, 3), "same_results": same,
                      "job_train_time_s": [r["time_s"] for r in recs_k]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
