"""The CPU demo: teacher CNN -> learngene (Aux-Net distillation) -> Des-Nets of several
depths, TLEG-initialised and from scratch, on Fashion-MNIST; prints a table, writes a plot.

    python -m tleg_dist.demo                     # configs/pipeline/demo.yaml, <= 15 min on 2 cores
    python -m tleg_dist.demo --smoke             # tiny budget, about a minute
    python -m tleg_dist.demo --cluster           # the same plan on Slurm (docs/cluster.md)
    python -m tleg_dist.demo output_dir=runs/x depths=[2,4]
Re-running continues: finished jobs are reused, interrupted ones resume.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    from tleg_dist import cli

    return cli.run(_main, argv)


def _main(argv) -> int:
    from tleg_dist import cli
    from tleg_dist.plans import demo, launch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/pipeline/demo.yaml")
    p.add_argument("--smoke", action="store_true", help="tiny budget (the recipe's smoke overrides)")
    launch.add_arguments(p, default="in-process")
    p.add_argument("overrides", nargs="*", help="key=value on the demo recipe")
    args = p.parse_intermixed_args(argv)  # overrides may come before or after options
    t0 = time.time()
    with cli.usage():
        recipe = launch.load(demo.DemoRecipe, args.config, args.overrides)
        plan = demo.build(recipe, smoke=args.smoke)
    outcome = launch.run(plan, recipe, args)
    code = launch.write_results(outcome, Path(recipe.output_dir), "TLEG init vs scratch, same fine-tuning budget")
    print(f"[demo] done in {time.time() - t0:.0f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
