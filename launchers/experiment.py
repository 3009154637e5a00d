"""Reproduce the paper's claims at CPU scale: one command, resumable, results in results/.

    python launchers/experiment.py --config configs/experiments/fmnist.yaml             # full run
    python launchers/experiment.py --config configs/experiments/fmnist.yaml --smoke     # tiny budget (CI)
    python launchers/experiment.py --config configs/experiments/fmnist.yaml --dry-run   # runs and budgets
    python launchers/experiment.py --config configs/experiments/fmnist.yaml --report-only
    python launchers/experiment.py --config X.yaml seeds=[0] depths=[2,4]              # recipe overrides

Rerunning the same command continues: finished runs are reused, an interrupted one resumes
from its checkpoint. --report-only writes the tables and plots from the runs finished so far
(labelled PARTIAL until every planned run has finished). One process runs the stages one
after another; set OMP_NUM_THREADS to the cores it may use.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from tleg_dist.config import ConfigError
    from tleg_dist.experiments import config, report, runner
    from tleg_dist.experiments.plan import build_plan

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="an experiment recipe (configs/experiments/*.yaml)")
    p.add_argument("--smoke", action="store_true", help="the recipe's smoke budget (a few minutes)")
    p.add_argument("--dry-run", action="store_true", help="print every planned run and its budget; train nothing")
    p.add_argument("--report-only", action="store_true", help="write results from the runs finished so far")
    p.add_argument("overrides", nargs="*", help="key=value on the experiment recipe")
    args = p.parse_args(argv)
    # The command that trains these runs (a --report-only rebuild quotes it, not itself).
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "launchers/experiment.py", *(a for a in given if a != "--report-only")])
    t0 = time.time()
    try:
        x = config.load(args.config, args.overrides, smoke=args.smoke)
        plan = build_plan(x, smoke=args.smoke)
        if args.dry_run:
            for j in plan:
                print(f"{j.name:45s} {j.images:>9,} images (+{j.aux_share:,.0f} charged) -> {j.out}")
            return 0

        def write(records, planned):
            report.write(x, plan, records, planned, smoke=args.smoke, command=command,
                         invocation_s=None if args.report_only else time.time() - t0)

        if not args.report_only:
            runner.run(x, smoke=args.smoke, on_progress=write)
        records, planned = runner.collect(plan)
        write(records, planned)
    except (ConfigError, runner.ExperimentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[experiment] {len(records)}/{planned} runs finished in {time.time() - t0:.0f} s; "
          f"results in {x.results_dir}/results.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
