"""One launch of the experiment (launchers/experiment.py): pre-register, phase 1 (tuning and every
upstream job), choose, phase 2 (the reported runs), the optional timing reruns, then the results.

Rerunning continues: finished runs are reused, interrupted ones resume, and phase 2 starts only
once every tuning run has finished (with --cluster --no-wait, a later launch submits it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from tleg_dist import cli
from tleg_dist.config import ConfigError
from tleg_dist.experiments import notes, plan, results, tuning
from tleg_dist.experiments.cost import charged_wall_clock
from tleg_dist.experiments.recipe import ExperimentRecipe
from tleg_dist.plans import launch
from tleg_dist.plans.run import Outcome, collect

MACHINE = "machine.json"  # beside the timing runs: the load the machine had while they ran


def dry_run(x: ExperimentRecipe, smoke: bool, ranks: int) -> int:
    """Every planned run and its budget; phase 2 with the recipe's placeholder lr (tuning chooses it)."""
    chosen = tuning.placeholders(x)
    phase2 = [j for j in plan.reported_plan(x, chosen, smoke, ranks) if j.labels["kind"] == plan.REPORTED]
    for title, jobs in (("phase 1: upstream and tuning", plan.tuning_plan(x, smoke, ranks)),
                        ("phase 2: reported runs (lr and warmup are chosen by the tuning)", phase2),
                        ("timing reruns (--timing)", plan.timing_plan(x, chosen, smoke))):
        print(f"# {title}: {len(jobs)} runs")
        for j in jobs:
            print(f"{j.name:60s} {j.labels['planned_images']:>9,} images -> {j.out}")
    return cli.EXIT_OK


def _phase(jobs, x, args, earlier) -> Outcome:
    if args.report_only:
        return Outcome(collect(jobs, earlier), planned=len(jobs))
    return launch.run(jobs, x, args, earlier)


def _timing(x: ExperimentRecipe, chosen: dict, smoke: bool, args: argparse.Namespace) -> list[dict]:
    """cost.timing's jobs, run now (with --timing) one after another in this process at one thread,
    or only collected; their records."""
    import torch

    jobs = plan.timing_plan(x, chosen, smoke)
    if args.timing and not args.report_only:
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
        before = os.getloadavg()[0]
        timed = argparse.Namespace(**{**vars(args), "cluster": False, "executor": "in-process"})
        launch.run(jobs, x, timed, [])
        machine = {"threads": 1, "load_avg_1m_before": before, "load_avg_1m_after": os.getloadavg()[0],
                   "cpus": os.cpu_count(), "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        (Path(x.output_dir) / plan.TIMING / MACHINE).write_text(json.dumps(machine, indent=1))
    recs = collect(jobs)
    machine_file = Path(x.output_dir) / plan.TIMING / MACHINE
    machine = json.loads(machine_file.read_text()) if machine_file.is_file() else None
    return [{**r, "machine": machine} for r in recs]


def run(x: ExperimentRecipe, args: argparse.Namespace, recipe_path: Path, command: str) -> int:
    smoke, ranks, t0 = args.smoke, launch.ranks_per_job(x, args), time.time()
    if not args.report_only:
        results.preregister(x, recipe_path)
    earlier = results.read_runs(args.reuse_runs) if args.reuse_runs else []
    jobs = plan.tuning_plan(x, smoke, ranks)
    outcome = _phase(jobs, x, args, earlier)
    try:
        tuned = tuning.choose(x, outcome.records)
    except ConfigError as e:  # phase 1 not finished: report what there is
        tuned = None
        print(f"[experiment] phase 2 waits for tuning: {e}", flush=True)
    timing = []
    if tuned is not None:
        jobs = plan.reported_plan(x, tuned["chosen"], smoke, ranks)
        results.write(x, jobs, [], tuning=tuned, timing=[], smoke=smoke, command=command, invocation_s=None)
        outcome = _phase(jobs, x, args, earlier)
        timing = _timing(x, tuned["chosen"], smoke, args)
    recs = results.records(jobs, outcome.records)
    result = results.write(x, jobs, recs, tuning=tuned, timing=timing, smoke=smoke, command=command,
                           invocation_s=None if args.report_only else time.time() - t0)
    charged = charged_wall_clock(x, result["cost"]["wall_clock"])
    recs = [{**r, "wall_clock_s": charged.get((r.get("init"), r.get("depth")))
             if r.get("setting") == x.cost.setting else None} for r in recs]
    title = f"Experiment {Path(recipe_path).name}" + (" (smoke budget, not results)" if smoke else "")
    code = launch.write_results(dataclasses.replace(outcome, records=recs), Path(x.results_dir), title,
                                names=notes.NAMES, plots=notes.PLOTS, notes=notes.render(result))
    print(f"[experiment] {len(recs)}/{len(jobs)} runs finished in {time.time() - t0:.0f} s; results in "
          f"{x.results_dir}/{results.RESULTS} and results.md", flush=True)
    return code
