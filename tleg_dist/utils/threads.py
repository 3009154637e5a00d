"""How many CPU threads one process may use: the cores it may run on, split between the ranks on
its host, so that local ranks do not oversubscribe the cores (gloo collectives and FFCV's numba
workers both crawl when they do)."""

from __future__ import annotations

import os

# Where launchers put the number of ranks on this host, most specific first: torchrun/deepspeed,
# then Slurm (srun), then the whole world (a single-host run).
_LOCAL_RANKS_ENV = ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE", "WORLD_SIZE")


def local_ranks() -> int:
    for name in _LOCAL_RANKS_ENV:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def threads_per_local_rank() -> int:
    """The cores this process may run on (its affinity mask, which Slurm and taskset narrow), divided
    evenly between the ranks on this host; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // local_ranks())
