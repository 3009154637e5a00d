"""Kill/resume soak of a learngene-stage run: killed again and again, it must end bit-identical.

    python benchmarks/soak.py                  # the full soak: >= 30 min CPU time, 4 kills, 2 ranks
    python benchmarks/soak.py --quick          # a minute or two: proves the script itself works (tests run it)
    python benchmarks/soak.py --ranks 1 --kills 5 --epochs 12 --out runs/soak --seed 3

Not part of CI (it takes an hour of CPU time). It runs the recipe below twice, under the
`deepspeed` launcher with ZeRO-2 when --ranks is 2: once uninterrupted (the reference) and once
interrupted --kills times at random optimizer steps, each time relaunched with `--resume auto`.
The ways to die, taken in turn in a random order:
  kill-rank     SIGKILL one rank (the last), as a crashed process; the launcher ends the rest
  kill-all      SIGKILL every process of the run at once, as a lost node
  kill-in-save  SIGKILL everything while rank 0 holds a checkpoint's completeness marker back
                (tests/faults/driver.py, TLEG_FAULT_SAVE_DELAY_S): its shards are on disk, and
                DeepSpeed's `latest` already names it, but it is not complete
  preempt       SIGTERM every process, as Slurm does before preemption: save, then exit
The defaults (cpu-64 width, depth 6, 36 epochs of 16384 images, 2 ranks: 4608 optimizer steps)
were sized from about 0.23 CPU-s per rank and step, to pass 30 CPU-minutes with some margin.
It checks that (1) every relaunch resumed from the newest complete checkpoint left behind, at its
exact epoch, batch and step; (2) every training loss the interrupted run logged, replayed steps
included, equals the reference's loss at that step, bit for bit; (3) the final learngene equals
the reference's, bit for bit; (4) the interrupted run used at least --min-cpu-minutes of CPU time
(all its processes, sampled every 0.5 s, so slightly under-counted). The last line printed is one
JSON object; the exit status is 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "faults"), str(REPO / "tests")]  # fault_helpers, and the _launch it uses
from fault_helpers import RECIPE, assert_same_weights, rank_processes, resumed_from, start, write_recipe  # noqa: E402

from tleg_dist.artifacts.checkpoints import complete_tags, read_meta  # noqa: E402

MODES = ("kill-rank", "kill-all", "kill-in-save", "preempt")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "soak", help="work folder (emptied first)")
    p.add_argument("--ranks", type=int, default=None, choices=(1, 2), help="default: 2 (--quick: 1)")
    p.add_argument("--kills", type=int, default=4, help="kill/resume cycles (>= 3 for the issue)")
    p.add_argument("--epochs", type=int, default=36)
    p.add_argument("--images", type=int, default=16384, help="synthetic training images per epoch")
    p.add_argument("--depth", type=int, default=6, help="Aux-Net depth (cpu-64 width)")
    p.add_argument("--every", type=int, default=20, help="checkpoint every N optimizer steps")
    p.add_argument("--seed", type=int, default=0, help="draws the kill points and their order")
    p.add_argument("--min-cpu-minutes", type=float, default=30.0)
    p.add_argument("--quick", action="store_true", help="tiny run (a minute or two): 1 rank, 2 epochs of 512 "
                   "images at depth 2, 4 kills (one of each kind), no CPU-time target")
    args = p.parse_args(argv)
    # A step of the tiny run takes milliseconds: the interrupted run sleeps before each one, so
    # that it is still running when the kill comes (the random wait after the target step is
    # shortened to match); sleeping changes no number the checks compare.
    args.step_delay_s, args.kill_jitter_s = 0.0, 1.0
    if args.quick:
        args.epochs, args.images, args.depth, args.every, args.kills, args.min_cpu_minutes = 2, 512, 2, 4, 4, 0
        args.step_delay_s, args.kill_jitter_s = 0.2, 0.1
    args.ranks = args.ranks or (1 if args.quick else 2)
    return args


class CpuMeter:
    """CPU seconds of a process tree: the latest user+system seen per process, summed."""

    def __init__(self):
        self.seen: dict[tuple[int, float], float] = {}

    def sample(self, root_pid: int) -> None:
        try:
            procs = [psutil.Process(root_pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                t = p.cpu_times()
                self.seen[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:
                pass

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())


def segment(recipe, out, args, resume, name, **faults):
    return start(recipe, out, ranks=args.ranks, ds="configs/ds/zero2.json" if args.ranks > 1 else
                 "configs/ds/zero0.json", resume=resume, name=name, **faults)


def watch(r, meter, until=lambda: False, timeout=6 * 3600):
    """Sample CPU until the run exits (returns its status) or `until()` holds (returns None)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        meter.sample(r.proc.pid)
        if r.proc.poll() is not None:
            return r.proc.returncode
        if until():
            return None
        time.sleep(0.5)
    raise TimeoutError(f"{r.log_path}: still running after {timeout}s")


def ranks_of(r) -> list[psutil.Process]:
    ranks = rank_processes(r)
    return [ranks[k] for k in sorted(ranks)] or [psutil.Process(r.proc.pid)]


def newest_complete(out: Path):
    tags = complete_tags(out / "checkpoints")
    if not tags:
        return None
    meta = read_meta(out / "checkpoints" / tags[-1][1])
    return tags[-1][1], meta["epoch"], meta["batch_in_epoch"], meta["global_step"]


def logged_lines(out: Path) -> int:
    try:
        return len((out / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def step_since(out: Path, skip: int) -> int:
    """Newest optimizer step logged after the first `skip` lines (earlier segments' lines)."""
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()[skip:]
    except FileNotFoundError:
        return 0
    return max((json.loads(x)["step"] for x in lines if x.endswith("}") and '"train"' in x), default=0)


def interrupt(r, mode, target, out, skip, meter, rng, args) -> dict:
    """Let `r` reach optimizer step `target`, then end it the `mode` way."""
    if watch(r, meter, lambda: step_since(out, skip) >= target) is not None:
        raise RuntimeError(f"run ended before step {target}:\n{r.log[-3000:]}")
    if mode == "kill-in-save":
        held = r.log.count("back for")
        watch(r, meter, lambda: r.log.count("back for") > held)  # a marker is being held back now
    else:
        time.sleep(rng.uniform(0, args.kill_jitter_s))  # anywhere within a step, a save or an evaluation
    meter.sample(r.proc.pid)
    at = step_since(out, skip)
    if mode == "kill-rank":
        ranks_of(r)[-1].kill()
    elif mode == "preempt":
        os.killpg(r.proc.pid, signal.SIGTERM)
    else:
        os.killpg(r.proc.pid, signal.SIGKILL)
    rc = watch(r, meter, timeout=300)
    r.kill_all()  # whatever is left (the launcher ends the other ranks itself after kill-rank)
    return {"mode": mode, "target_step": target, "logged_step_at_kill": at, "exit_status": rc,
            "left_behind": newest_complete(out)}


def loss_by_step(out: Path) -> dict[int, list[float]]:
    found: dict[int, list[float]] = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "train":
            found.setdefault(rec["step"], []).append(rec["loss"])
    return found


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in ("reference", "interrupted"):
        if (args.out / stale).exists():
            shutil.rmtree(args.out / stale)
    recipe = write_recipe(
        args.out / "soak.yaml",
        model={**RECIPE["model"], "embed_dim": 64, "num_heads": 4, "patch_size": 4, "depth": args.depth},
        data={"synthetic_size": args.images, "batch_size": 64},
        train={"epochs": args.epochs, "log_every_steps": 1, "collective_timeout_s": 300},
        checkpoint={"every_steps": args.every, "keep_last": 2})
    steps_total = args.epochs * (args.images // (64 * args.ranks))
    t0 = time.time()

    ref_meter, ref = CpuMeter(), args.out / "reference"
    r = segment(recipe, ref, args, None, "run")
    if watch(r, ref_meter) != 0:
        raise SystemExit(f"reference run failed:\n{r.log[-3000:]}")
    print(f"[soak] reference: {steps_total} steps, {ref_meter.seconds / 60:.1f} CPU-min", file=sys.stderr)

    meter, out = CpuMeter(), args.out / "interrupted"
    # after the first checkpoint, so that every kill leaves one behind to resume from
    targets = sorted(rng.sample(range(args.every + 1, steps_total - 1), args.kills))
    modes = [MODES[i % len(MODES)] for i in range(args.kills)]
    rng.shuffle(modes)
    kills, resume, base = [], None, 0
    for i, (target, mode) in enumerate(zip(targets, modes)):
        faults = {"save_delay_s": 1.5} if mode == "kill-in-save" else {}
        if args.step_delay_s:
            faults["step_delay_s"] = args.step_delay_s
        skip = logged_lines(out)
        r = segment(recipe, out, args, resume, f"seg{i}", **faults)
        if resume:
            kills[-1]["resumed_from"] = resumed_from_log(r, meter)
            base = kills[-1]["resumed_from"][3] if kills[-1]["resumed_from"] else 0
        kills.append(interrupt(r, mode, max(target, base + 1), out, skip, meter, rng, args))
        print(f"[soak] {kills[-1]}", file=sys.stderr)
        resume = "auto"
    r = segment(recipe, out, args, resume, "final")
    kills[-1]["resumed_from"] = resumed_from_log(r, meter)
    status = watch(r, meter)

    checks = {"final_run_completed": status == 0}
    checks["every_resume_exact"] = all(k["left_behind"] is not None and k["resumed_from"] is not None
                                       and tuple(k["resumed_from"]) == tuple(k["left_behind"]) for k in kills)
    ours, theirs = loss_by_step(out), loss_by_step(ref)
    bad = [s for s, losses in ours.items() if any(v != theirs.get(s, [None])[0] for v in losses)]
    checks["losses_equal_reference"] = not bad and set(ours) == set(theirs)
    try:
        assert_same_weights(out / "learngene" / "learngene.safetensors",
                            ref / "learngene" / "learngene.safetensors")
        checks["final_weights_equal"] = True
    except (AssertionError, FileNotFoundError) as e:
        print(f"[soak] weights: {e}", file=sys.stderr)
        checks["final_weights_equal"] = False
    checks["cpu_target_met"] = meter.seconds >= 60 * args.min_cpu_minutes
    result = {"ranks": args.ranks, "steps": steps_total, "seed": args.seed, "kills": kills,
              "replayed_steps": sum(len(v) - 1 for v in ours.values()), "mismatched_loss_steps": bad[:10],
              "cpu_minutes_interrupted": round(meter.seconds / 60, 2),
              "cpu_minutes_reference": round(ref_meter.seconds / 60, 2),
              "wall_minutes": round((time.time() - t0) / 60, 2), "checks": checks, "passed": all(checks.values())}
    print(json.dumps(result))
    return 0 if result["passed"] else 1


def resumed_from_log(r, meter):
    """(tag, epoch, batch, step) once the relaunched run has logged where it resumed."""
    watch(r, meter, lambda: "resumed from" in r.log or "stage=" in r.log)
    watch(r, meter, lambda: "stage=" in r.log)  # the banner comes after the resume line
    try:
        return resumed_from(r.log)
    except AssertionError:
        return None


if __name__ == "__main__":
    sys.exit(main())
