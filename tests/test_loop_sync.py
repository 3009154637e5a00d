"""The training loop waits for the device only at log steps: no `.item()`, no all-reduce per micro-step.

The real trainer runs in this process with Tensor.item/tolist/__bool__/__float__/__int__ and
torch.distributed.all_reduce wrapped to count the calls our package makes, by micro-step.
"""

import os
import sys
from collections import Counter

import pytest
import torch
import torch.distributed

from _launch import TINY
from tleg_dist import config as config_lib
from tleg_dist.training import loop, trainer

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")
LOG_EVERY = 4


@pytest.fixture
def in_process(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    saved = dict(os.environ)
    yield  # the process group stays: DeepSpeed keeps it, and the next in-process run reuses it
    os.environ.clear()
    os.environ.update(saved)


def count_syncs(monkeypatch, tmp_path, *overrides) -> Counter:
    """(micro-step, what) -> calls from tleg_dist while the loop runs (micro-steps count from 1)."""
    counts, now = Counter(), {"step": None}

    def counting(name, original):
        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if now["step"] is not None and caller.startswith("tleg_dist"):
                counts[(now["step"], name)] += 1
            return original(*args, **kwargs)
        return wrapper

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch.distributed, "all_reduce", counting("all_reduce", torch.distributed.all_reduce))
    seed_step = loop.seed_step

    def mark(seed, micro_step, rank):  # called first thing in every micro-step
        now["step"] = micro_step + 1
        seed_step(seed, micro_step, rank)

    def train_steps(*args):
        try:
            return loop.train_steps(*args)
        finally:
            now["step"] = None

    monkeypatch.setattr(loop, "seed_step", mark)
    monkeypatch.setattr(trainer, "train_steps", train_steps)
    cfg = config_lib.load(TINY, [f"output_dir={tmp_path}", "train.epochs=1", "train.progress=false",
                                 f"train.log_every_steps={LOG_EVERY}", "checkpoint.every_steps=8",
                                 "data.synthetic_size=512", "data.batch_size=32", *overrides])
    assert trainer.train(cfg)["global_step"] == 16
    return counts


def test_host_reads_and_all_reduces_only_at_log_steps(monkeypatch, tmp_path, in_process):
    counts = count_syncs(monkeypatch, tmp_path)
    steps = {step for step, _ in counts}
    assert steps <= {s for s in range(1, 17) if s % LOG_EVERY == 0}, sorted(counts.items())
    # Each log step (8 and 16 also save a checkpoint, 16 ends the epoch) reads the loss once, in one all-reduce.
    for s in range(LOG_EVERY, 17, LOG_EVERY):
        assert counts[(s, "all_reduce")] == counts[(s, "tolist")] == 1, sorted(counts.items())


def test_nan_policy_skip_pays_a_sync_every_step(monkeypatch, tmp_path, in_process):
    counts = count_syncs(monkeypatch, tmp_path, "train.nan_policy=skip")
    assert all(counts[(s, "all_reduce")] >= 1 and counts[(s, "item")] >= 1 for s in range(1, 17))
