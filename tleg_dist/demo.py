"""The CPU demo: teacher CNN -> learngene (Aux-Net distillation) -> Des-Nets of several
depths, TLEG-initialised and from scratch, on Fashion-MNIST; prints a table, writes a plot.

    python -m tleg_dist.demo                     # configs/pipeline/demo.yaml, <= 15 min on 2 cores
    python -m tleg_dist.demo --smoke             # tiny budget, about a minute
    python -m tleg_dist.demo output_dir=runs/x depths=[2,4]
Re-running continues: finished stages are reused, interrupted ones resume.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from tleg_dist.config import ConfigError
    from tleg_dist.pipeline import config as pconfig
    from tleg_dist.pipeline.run import run_pipeline

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/pipeline/demo.yaml")
    p.add_argument("--smoke", action="store_true", help="tiny budget (the recipe's smoke overrides)")
    p.add_argument("overrides", nargs="*", help="key=value on the pipeline recipe")
    args = p.parse_args(argv)
    try:
        cfg = pconfig.load(args.config, args.overrides)
        run_pipeline(cfg, smoke=args.smoke)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
