"""DeepSpeed internals the trainer relies on, in one place. Checked against DeepSpeed 0.19.8.

DeepSpeed's CPU all-reduce over shared memory (ops/csrc/cpu/comm/shm_interface.cpp, shm.cpp)
is used when every rank is on one host, which it learns from LOCAL_SIZE (set by its launcher)
being the world size. Each rank then creates the POSIX shared-memory segment
    /dev/shm/deepspeed_allreduce_buffer_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank>
and never unlinks it. Nothing public names it; tests/test_deepspeed_compat.py fails if a
DeepSpeed release names or creates it differently.
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
