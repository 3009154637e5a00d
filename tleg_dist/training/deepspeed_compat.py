"""DeepSpeed internals the trainer relies on, in one place. Checked against DeepSpeed 0.19.8.

DeepSpeed's CPU all-reduce over shared memory (ops/csrc/cpu/comm/shm_interface.cpp, shm.cpp)
is used when every rank is on one host, which it learns from LOCAL_SIZE (set by its launcher)
being the world size. Each rank then creates the POSIX shared-memory segment
    /dev/shm/deepspeed_allreduce_buffer_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank>
and never unlinks it. Nothing public names it; tests/test_deepspeed_compat.py fails if a
DeepSpeed release names or creates it differently.

ZeRO checkpoint shards pickle a few plain-data classes from DeepSpeed's internal modules beside
the tensors; the converter admits exactly these to torch's weights-only unpickler
(`checkpoint_classes`), so a release that moves one fails the import here, by name.
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKED_WITH = "0.19.8"
SHM_DIR = Path("/dev/shm")
SHM_BUFFER_PREFIX = "deepspeed_allreduce_buffer"
SHM_BUFFER_GLOB = f"{SHM_BUFFER_PREFIX}_*"


def shm_allreduce_in_use(world_size: int) -> bool:
    """Whether DeepSpeed's init_distributed maps the shared-memory buffers (the same on every rank)."""
    return os.environ.get("LOCAL_SIZE") == str(world_size)


def shm_buffer(rank: int) -> Path:
    """The segment rank `rank` created, from the environment DeepSpeed read when it made it."""
    return SHM_DIR / (f"{SHM_BUFFER_PREFIX}_{os.getuid()}_{os.environ.get('MASTER_ADDR', '')}_"
                      f"{os.environ.get('MASTER_PORT', '')}_{rank}")


def checkpoint_classes() -> list:
    """The plain-data DeepSpeed classes found in ZeRO checkpoints' pickles (loss scalers, the ZeRO
    stage enum, fragment addresses)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]
