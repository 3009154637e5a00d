"""Process-group set-up that works under deepspeed, torchrun, srun and plain python."""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist

from tleg_dist.training import deepspeed_compat
from tleg_dist.utils.threads import threads_per_local_rank


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _fill_env() -> None:
    """Plain `python train.py` or srun: give DeepSpeed the env a launcher would have.

    Without RANK/WORLD_SIZE DeepSpeed falls back to MPI discovery (mpi4py).
    """
    if "RANK" not in os.environ and "SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ:
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
        os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        with socket.socket() as s:  # a free port
            s.bind(("127.0.0.1", 0))
            os.environ.setdefault("MASTER_PORT", str(s.getsockname()[1]))
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")


def init(timeout_s: Optional[float] = None) -> DistInfo:
    import deepspeed

    _fill_env()
    # Oversubscribed cores make gloo collectives crawl: split the cores between local
    # ranks unless the user chose OMP_NUM_THREADS.
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads_per_local_rank())
    cuda = torch.cuda.is_available()
    if timeout_s is not None:
        # DeepSpeed reduces gradients in its own clone of the world group (new_group without a
        # timeout), which takes this module-wide default: without it, only our own collectives
        # would time out, and a step has none of them between log steps.
        dist.distributed_c10d.default_pg_timeout = timedelta(seconds=timeout_s)
        dist.distributed_c10d.default_pg_nccl_timeout = timedelta(seconds=timeout_s)
    if not dist.is_initialized():
        # timeout bounds every collective: a rank stuck on a dead peer raises instead of hanging
        kw = {} if timeout_s is None else {"timeout": timedelta(seconds=timeout_s)}
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", auto_mpi_discovery=False, **kw)
        _unlink_shm_buffers()
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def _unlink_shm_buffers() -> None:
    """DeepSpeed's CPU all-reduce over shared memory maps one 66 MB /dev/shm buffer per rank and
    never unlinks it: each run would leak them until the host reboots. Every rank maps every
    buffer inside init_distributed, so after a barrier the names can go; the mappings live until exit."""
    if not deepspeed_compat.shm_allreduce_in_use(dist.get_world_size()):
        return  # the same on every rank: either all of them reach the barrier or none
    dist.barrier()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(deepspeed_compat.shm_buffer(dist.get_rank()))


def reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In place across ranks, on the tensor's own device (no host copy). Also called at one rank,
    where it is nearly free, so that the collectives a run makes do not depend on its size."""
    if dist.is_initialized():
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return t


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    return reduce_(torch.tensor(values, dtype=torch.float64, device=device)).tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    return all_reduce_sum([float(flag)], device)[0] > 0


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
