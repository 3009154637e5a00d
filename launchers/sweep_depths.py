"""Fine-tune Des-Nets of several depths from one learngene, as concurrent submitit jobs.

    # local (default): jobs run on this machine, `resources.parallelism` at a time
    python launchers/sweep_depths.py --config configs/sweep/cpu_tiny.yaml
    # Slurm array, one task per depth (cluster named explicitly, never guessed)
    python launchers/sweep_depths.py --config configs/sweep/RECIPE.yaml --cluster [--no-wait]
    # overrides of the sweep recipe: depths=[2,4,8] resources.timeout_min=30 output_dir=runs/s2

Re-running skips depths that finished (their run's summary.json says so) and resumes the rest
from their checkpoints. Results: OUTPUT_DIR/results.{md,csv,json,png}. See docs/cluster.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    from tleg_dist import cli

    return cli.run(_main, argv)


def _main(argv) -> int:
    from tleg_dist import cli
    from tleg_dist.plans import launch, sweep

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="sweep recipe YAML (see configs/sweep/)")
    launch.add_arguments(p, default="local")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the sweep recipe")
    args = p.parse_intermixed_args(argv)  # overrides may come before or after options
    with cli.usage():
        recipe = launch.load(sweep.SweepRecipe, args.config, args.overrides)
        plan = sweep.build(recipe)
    outcome = launch.run(plan, recipe, args)
    lg = Path(recipe.learngene)
    return launch.write_results(outcome, Path(recipe.output_dir), f"{lg.parent.name}/{lg.name} -> "
                                                                  f"{Path(recipe.finetune_recipe).name}")


if __name__ == "__main__":
    sys.exit(main())
