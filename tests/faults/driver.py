"""`tleg_dist/train.py` with faults injected from the environment, for tests/faults and benchmarks/soak.py.

    TLEG_FAULT_STEP_DELAY_S=0.2 python tests/faults/driver.py --config RECIPE.yaml [train.py args]

The faults are patched in from here, so the package carries no test hooks:
  TLEG_FAULT_STEP_DELAY_S  sleep this long before every micro-step (widens the window a test
                           has to kill a process mid-epoch on a fast machine)
  TLEG_FAULT_SAVE_DELAY_S  rank 0 sleeps this long after every rank's shards are written and
                           before tleg_meta.json (the completeness marker) is: the window in which
                           a kill leaves a checkpoint folder that looks whole but is not complete
  TLEG_FAULT_NAN_AT        comma-separated global micro-step indices (0-based, counted from the
                           start of training, so they survive a resume) whose loss becomes NaN
  TLEG_FAULT_NAN_RANK      only that rank sees the NaN (default: every rank); the others must
                           still agree to skip or stop
  TLEG_FAULT_DIE_IN_SAVE   a checkpoint tag (step_00000008): the first shard written into it
                           is cut to half its size and the process SIGKILLs itself, as a node
                           dying in the middle of torch.save would leave it
  TLEG_FAULT_DIE_ON_OVERWRITE=1  the same, whenever a shard is about to be written into a tag
                           folder that already holds tleg_meta.json (a complete checkpoint)
Anything else is train.py's command line, unchanged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _floats(name: str) -> float:
    return float(os.environ.get(name, "0") or 0)


def install() -> None:
    from tleg_dist.artifacts import checkpoints
    from tleg_dist.training import loop, setup

    step_delay = _floats("TLEG_FAULT_STEP_DELAY_S")
    save_delay = _floats("TLEG_FAULT_SAVE_DELAY_S")
    nan_at = {int(s) for s in os.environ.get("TLEG_FAULT_NAN_AT", "").split(",") if s.strip()}
    nan_rank = os.environ.get("TLEG_FAULT_NAN_RANK")
    now = {"micro": -1, "rank": 0}

    # The loop reseeds before every micro-batch with the global micro-step: the one place that
    # knows where training stands, looked up through the module, so patching it here is seen.
    seed_step = loop.seed_step

    def patched_seed_step(seed, micro_step, rank):
        now["micro"], now["rank"] = micro_step, rank
        if step_delay:
            time.sleep(step_delay)
        seed_step(seed, micro_step, rank)

    loop.seed_step = patched_seed_step

    if nan_at:
        make_criterion = setup.criterion

        def patched_criterion(*args, **kwargs):
            crit = make_criterion(*args, **kwargs)

            def nan_criterion(*args, **kwargs):
                loss = crit(*args, **kwargs)
                if now["micro"] in nan_at and (nan_rank is None or int(nan_rank) == now["rank"]):
                    loss = loss * float("nan")
                return loss

            return nan_criterion

        setup.criterion = patched_criterion

    if save_delay:
        atomic_path = checkpoints.atomic_path

        @contextlib.contextmanager
        def slow_marker(path):
            if Path(path).name == checkpoints.MARKER:
                print(f"[fault] holding {path} back for {save_delay}s", file=sys.stderr, flush=True)
                time.sleep(save_delay)
            with atomic_path(path) as tmp:
                yield tmp

        checkpoints.atomic_path = slow_marker

    die_tag = os.environ.get("TLEG_FAULT_DIE_IN_SAVE")
    die_on_overwrite = os.environ.get("TLEG_FAULT_DIE_ON_OVERWRITE") == "1"
    if die_tag or die_on_overwrite:
        from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

        save = TorchCheckpointEngine.save

        def dying_save(self, state_dict, path):
            tag_dir = Path(path).parent
            if tag_dir.name == die_tag or (die_on_overwrite and (tag_dir / checkpoints.MARKER).exists()):
                save(self, state_dict, path)
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                print(f"[fault] dying while writing {path}", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            save(self, state_dict, path)

        TorchCheckpointEngine.save = dying_save


if __name__ == "__main__":
    install()
    from tleg_dist.train import run

    run()
