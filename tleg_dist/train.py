"""Train one stage (teacher, learngene distillation, or Des-Net fine-tuning).

    # 1 process (CPU or 1 GPU)
    python tleg_dist/train.py --config configs/cpu/learngene_fmnist.yaml
    # 2 ranks on one machine (CPU ranks on gloo when there is no GPU)
    deepspeed --num_gpus 2 tleg_dist/train.py --deepspeed_config configs/ds/zero2.json --config RECIPE.yaml
    torchrun --nproc_per_node 8 tleg_dist/train.py --config configs/paper/aux_small.yaml
    # multi-node: sbatch slurm/learngene.sh
Overrides: trailing key.sub=value pairs, e.g. train.epochs=3 model.depth=4.
Resume: --resume auto continues from the newest complete checkpoint in output_dir.
Errors about inputs and outputs print one line naming the culprit (exit 1); so does a peer rank,
host or network that stopped answering in a collective (exit 3: resumable); TLEG_TRACEBACK=1
shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
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


EXIT_PEER_LOST = 3  # learngene.sh requeues the job on it


def _fail(kind: str, message: str, code: int) -> int:
    # These name their culprit; a traceback would only bury that line. TLEG_TRACEBACK=1 shows it.
    where = os.environ.get("RANK", "0")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        where += f" on {socket.gethostname()}"
    print(f"[rank {where}] error: {kind}: {message}", file=sys.stderr, flush=True)
    return code


def main(argv=None) -> int:
    from tleg_dist import config
    from tleg_dist.training.distributed import peer_failure
    from tleg_dist.training.trainer import train
    from tleg_dist.utils.errors import UserError

    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.deepspeed_config:
        overrides.append(f"deepspeed_config={args.deepspeed_config}")
    try:
        cfg = config.load(args.config, overrides)
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        train(cfg, resume=args.resume)
    except UserError as e:
        if os.environ.get("TLEG_TRACEBACK") == "1":
            raise
        return _fail(type(e).__name__, str(e), 1)
    except Exception as e:
        line = peer_failure(e)
        if line is None or os.environ.get("TLEG_TRACEBACK") == "1":
            raise
        return _fail("PeerLost", line, EXIT_PEER_LOST)
    return 0


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
