"""One rule splits a host's cores between its ranks (training/distributed.py and the FFCV loader)."""

import os

import pytest

from tleg_dist.utils.threads import local_ranks, threads_per_local_rank


@pytest.fixture
def env(monkeypatch):
    for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    return monkeypatch


def test_alone_a_process_gets_every_core_it_may_run_on(env):
    assert local_ranks() == 1 and threads_per_local_rank() == 8


@pytest.mark.parametrize("values, ranks", [
    ({"LOCAL_WORLD_SIZE": "2", "SLURM_NTASKS_PER_NODE": "4", "WORLD_SIZE": "8"}, 2),
    ({"SLURM_NTASKS_PER_NODE": "4", "WORLD_SIZE": "8"}, 4),
    ({"WORLD_SIZE": "3"}, 3),
    ({"SLURM_NTASKS_PER_NODE": "2(x3)", "WORLD_SIZE": "6"}, 6),  # Slurm's compressed form: unreadable, skipped
])
def test_the_most_specific_count_of_local_ranks_wins(env, values, ranks):
    for k, v in values.items():
        env.setenv(k, v)
    assert local_ranks() == ranks
    assert threads_per_local_rank() == max(1, 8 // ranks)


def test_never_below_one_thread(env):
    env.setenv("LOCAL_WORLD_SIZE", "16")
    assert threads_per_local_rank() == 1
