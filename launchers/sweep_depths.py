"""Fine-tune Des-Nets of several depths from one learngene, as concurrent submitit jobs.

    # local (default): jobs run on this machine, `array_parallelism` at a time
    python launchers/sweep_depths.py --config configs/sweep/cpu_tiny.yaml
    # Slurm array, one task per depth (cluster named explicitly, never guessed)
    python launchers/sweep_depths.py --config configs/sweep/RECIPE.yaml --cluster [--no-wait]
    # overrides of the sweep recipe: depths=[2,4,8] resources.timeout_min=30 output_dir=runs/s2

Re-running skips depths that finished (their result record exists) and resumes the rest
from their checkpoints. Results: OUTPUT_DIR/results.{md,csv,json,png}. See docs/cluster.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="sweep recipe YAML (see configs/sweep/)")
    p.add_argument("--cluster", action="store_true", help="submit a Slurm array instead of running locally")
    p.add_argument("--no-wait", dest="wait", action="store_false", help="submit and return (with --cluster)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between status checks")
    p.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the sweep recipe")
    args = p.parse_args(argv)

    from tleg_dist.config import ConfigError
    from tleg_dist.learngene_file import LearngeneFileError
    from tleg_dist.sweep import config, runner

    try:
        cfg = config.load(args.config, args.overrides)
        outcome = runner.run_sweep(cfg, cluster=args.cluster, wait=args.wait, poll_s=args.poll,
                                   progress_every_s=args.progress_every, echo=lambda s: print(s, flush=True))
    except (ConfigError, LearngeneFileError, runner.SweepError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
