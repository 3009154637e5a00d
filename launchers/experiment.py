"""Reproduce the paper's claims at CPU scale: one command, resumable, results in results_dir.

    python launchers/experiment.py --config configs/experiments/fmnist_v2.yaml             # full run
    python launchers/experiment.py --config configs/experiments/fmnist_v2.yaml --smoke     # tiny budget (CI)
    python launchers/experiment.py --config configs/experiments/fmnist_v2.yaml --cluster   # on Slurm
    python launchers/experiment.py --config configs/experiments/fmnist_v2.yaml --dry-run   # runs and budgets
    python launchers/experiment.py --config configs/experiments/fmnist_v2.yaml --report-only
    python launchers/experiment.py --config X.yaml seeds=[0] depths=[2,4]              # recipe overrides
    python launchers/experiment.py --config X.yaml --reuse-runs results/OTHER/experiment.json

Rerunning the same command continues: finished runs are reused, an interrupted one resumes
from its checkpoint. results_dir gets the plans' report (results.{md,json,csv}, acc_vs_depth.png,
acc_vs_cost.png) and experiment.json (cells, verdicts, cost ratios, storage); --report-only
rewrites them from the runs finished so far (labelled PARTIAL until every planned run has
finished). --reuse-runs takes the runs an earlier experiment.json records for jobs whose run
folders are gone (same config fingerprint only), so a new machine runs just the rest; a reused
job whose files a job still to run needs runs again. It also takes the summary.json that
experiments wrote before the file was renamed (results/fmnist_v2/summary.json). In-process (the default), the stages run
one after another; set OMP_NUM_THREADS to the cores they may use.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    from tleg_dist import cli

    return cli.run(_main, argv)


def _main(argv) -> int:
    from tleg_dist import cli
    from tleg_dist.plans import experiment, experiment_summary, launch
    from tleg_dist.plans.run import Outcome, collect

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="an experiment recipe (configs/experiments/*.yaml)")
    p.add_argument("--smoke", action="store_true", help="the recipe's smoke budget (a few minutes)")
    p.add_argument("--dry-run", action="store_true", help="print every planned run and its budget; train nothing")
    p.add_argument("--report-only", action="store_true", help="write results from the runs finished so far")
    p.add_argument("--reuse-runs", metavar="EXPERIMENT_JSON", type=Path,
                   help="an earlier experiment.json (or an older summary.json): its runs stand in for jobs "
                        "whose run folders are gone")
    launch.add_arguments(p, default="in-process")
    p.add_argument("overrides", nargs="*", help="key=value on the experiment recipe")
    args = p.parse_intermixed_args(argv)  # overrides may come before or after options
    # The command that trains these runs (a --report-only rebuild quotes it, not itself).
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "launchers/experiment.py", *(a for a in given if a != "--report-only")])
    t0 = time.time()
    with cli.usage():
        x = experiment.load(args.config, args.overrides, smoke=args.smoke)
        plan = experiment.build(x, smoke=args.smoke, ranks=launch.ranks_per_job(x, args))
    if args.dry_run:
        for j in plan:
            print(f"{j.name:50s} {j.labels['planned_images']:>9,} images -> {j.out}")
        return cli.EXIT_OK
    earlier = experiment_summary.read_runs(args.reuse_runs) if args.reuse_runs else []
    outcome = (Outcome(collect(plan, earlier), planned=len(plan)) if args.report_only
               else launch.run(plan, x, args, earlier))
    records = experiment.records(plan, outcome.records)
    result = experiment_summary.write(x, plan, records, smoke=args.smoke, command=command,
                                      invocation_s=None if args.report_only else time.time() - t0)
    title = f"Experiment {Path(args.config).name}" + (" (smoke budget, not results)" if args.smoke else "")
    code = launch.write_results(dataclasses.replace(outcome, records=records), Path(x.results_dir), title,
                                names=experiment_summary.NAMES, plots=experiment_summary.PLOTS,
                                notes=experiment_summary.notes(result))
    print(f"[experiment] {len(records)}/{len(plan)} runs finished in {time.time() - t0:.0f} s; "
          f"results in {x.results_dir}/results.md", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
