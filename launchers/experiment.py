"""Test the paper's claims at CPU scale: one command, resumable, results in results_dir.

    python launchers/experiment.py --config configs/experiments/fmnist_v3.yaml --executor local resources.parallelism=2
    python launchers/experiment.py --config configs/experiments/fmnist_v3.yaml --smoke     # tiny budget (CI)
    python launchers/experiment.py --config configs/experiments/fmnist_v3.yaml --cluster   # on Slurm
    python launchers/experiment.py --config configs/experiments/fmnist_v3.yaml --dry-run   # runs and budgets
    python launchers/experiment.py --config configs/experiments/fmnist_v3.yaml --timing    # + cost reruns
    python launchers/experiment.py --config configs/experiments/fmnist_v3.yaml --report-only
    python launchers/experiment.py --config X.yaml seeds=[0] settings.same_task.depths=[2,4]   # overrides
    python launchers/experiment.py --config X.yaml --reuse-runs results/fmnist_v3/experiment.json

The first launch writes the pre-registered endpoints to results_dir/experiment.json; phase 1
trains every upstream job and the tuning runs (validation split, tuning seed), phase 2 the
reported runs with the lr and warmup the tuning chose (tleg_dist/experiments/). Rerunning the same
command continues: finished runs are reused, an interrupted one resumes from its checkpoint.
--timing then reruns the cost recipe's jobs alone, one after another, at one thread: run it on an
idle machine. results_dir gets the plans' report (results.{md,json,csv}, acc_vs_depth.png,
acc_vs_wall_clock.png) and experiment.json; --report-only rewrites them from the runs finished so
far (labelled PARTIAL until every planned run has finished). --reuse-runs takes the runs an
earlier results file records for jobs whose run folders are gone (same config fingerprint only).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    from tleg_dist import cli

    return cli.run(_main, argv)


def _main(argv) -> int:
    from tleg_dist import cli
    from tleg_dist.experiments import pipeline, recipe
    from tleg_dist.plans import launch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="an experiment recipe (configs/experiments/*.yaml)")
    p.add_argument("--smoke", action="store_true", help="the recipe's smoke budget (a few minutes)")
    p.add_argument("--dry-run", action="store_true", help="print every planned run and its budget; train nothing")
    p.add_argument("--report-only", action="store_true", help="write results from the runs finished so far")
    p.add_argument("--timing", action="store_true",
                   help="also rerun the cost recipe's jobs alone, in sequence, at one thread (an idle machine)")
    p.add_argument("--reuse-runs", metavar="RESULTS_JSON", type=Path,
                   help="an earlier experiment.json: its runs stand in for jobs whose run folders are gone")
    launch.add_arguments(p, default="in-process")
    p.add_argument("overrides", nargs="*", help="key=value on the experiment recipe")
    args = p.parse_intermixed_args(argv)  # overrides may come before or after options
    # The command that trains these runs (a --report-only rebuild quotes it, not itself).
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "launchers/experiment.py", *(a for a in given if a != "--report-only")])
    with cli.usage():
        x = recipe.load(args.config, args.overrides, smoke=args.smoke)
    if args.dry_run:
        with cli.usage():
            return pipeline.dry_run(x, args.smoke, launch.ranks_per_job(x, args))
    return pipeline.run(x, args, Path(args.config), command)


if __name__ == "__main__":
    sys.exit(main())
