"""Train one stage (teacher, learngene distillation, or Des-Net fine-tuning).

    # 1 process (CPU or 1 GPU)
    python tleg_dist/train.py --config configs/cpu/learngene_fmnist.yaml
    # 2 ranks on one machine (CPU ranks on gloo when there is no GPU)
    deepspeed --num_gpus 2 tleg_dist/train.py --deepspeed_config configs/ds/zero2.json --config RECIPE.yaml
    torchrun --nproc_per_node 8 tleg_dist/train.py --config configs/paper/aux_small.yaml
    # multi-node: sbatch slurm/learngene.sh
Overrides: trailing key.sub=value pairs, e.g. train.epochs=3 model.depth=4.
Resume: --resume auto continues from the newest complete checkpoint in output_dir.
Errors print one line naming the culprit and exit as tleg_dist/cli.py says: a bad recipe 2,
another bad input or output 1, a peer rank lost in a collective 3 (resumable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args(argv=None) -> argparse.Namespace:
    import deepspeed

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="recipe YAML (see configs/)")
    p.add_argument("--resume", default=None, help="'auto' or a checkpoint tag directory")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help="set by launchers")
    p.add_argument("overrides", nargs="*", help="key.sub=value")
    p = deepspeed.add_config_arguments(p)
    return p.parse_intermixed_args(argv)  # overrides may come before or after options


def main(argv=None) -> int:
    from tleg_dist import cli

    return cli.run(_main, argv)


def _main(argv) -> None:
    from tleg_dist import cli, config
    from tleg_dist.training.trainer import train

    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.deepspeed_config:
        overrides.append(f"deepspeed_config={args.deepspeed_config}")
    with cli.usage():
        cfg = config.load(args.config, overrides)
    train(cfg, resume=args.resume)


def run() -> None:
    """The command line: main(), then leave without the interpreter's C++ teardown.

    After a peer left (and, rarely, after a clean finish) the process group's threads abort
    the process at exit ("terminate called without an active exception", exit 134), which
    turns a finished run into a failed job and a resumable PeerLost (3) into a crash. Every
    artefact is written and closed by now, so flushing the streams is all that exit owes us.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
