"""One rank of a 2-rank DeepSpeed run dies or hangs: the run fails within a bounded time, and a
relaunch with `--resume auto` ends with an uninterrupted run's weights, bit for bit.

A killed peer closes its sockets, so gloo fails the survivor's next collective at once and the
`deepspeed` launcher then kills the remaining ranks. A peer that hangs (or a host that vanishes
without closing anything) is noticed only by the collective timeout, `train.collective_timeout_s`.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest
from _launch import free_port
from fault_helpers import (DRIVER, STEPS_PER_EPOCH, Run, assert_same_weights, base_env, complete_steps,
                           rank_processes, resumed_from, run, start, train_step, wait_until)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

RANKS = 2


def rank_process(launcher: Run, rank: int) -> psutil.Process:
    """The launcher's child process that runs `rank` (the deepspeed launcher passes --local_rank)."""
    return wait_until(lambda: rank_processes(launcher).get(rank), 120, f"rank {rank}'s process", launcher)


def test_killed_rank_fails_the_run_and_resume_matches_uninterrupted(recipe, reference_2rank, tmp_path):
    out = tmp_path / "run"
    # 0.2 s per micro-step widens the window between two checkpoints, so the kill lands mid-epoch
    r = start(recipe, out, ranks=RANKS, ds="configs/ds/zero2.json", step_delay_s=0.2)
    try:
        victim = rank_process(r, 1)
        survivors = [p for p in psutil.Process(r.proc.pid).children(recursive=True) if p.pid != victim.pid]
        wait_until(lambda: train_step(out) >= 6, 300, "step 6", r)  # past the step-4 checkpoint
        victim.kill()
        t_kill = time.monotonic()
        rc = r.wait(120)
        took = time.monotonic() - t_kill
    finally:
        r.kill_all()
    print(f"launcher exited {took:.1f}s after rank 1 was killed")
    assert rc != 0, r.log[-3000:]
    assert took < 90, f"the run took {took:.0f}s to fail after a rank died"
    assert not [p for p in survivors if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    steps = complete_steps(out)
    assert steps and max(steps) < STEPS_PER_EPOCH[RANKS] * 2, steps

    rc, log = run(recipe, out, ranks=RANKS, ds="configs/ds/zero2.json", resume="auto", name="resume",
                  timeout=600)
    assert rc == 0, log[-3000:]
    tag, epoch, batch, step = resumed_from(log)
    assert step == max(steps) and 0 < batch < STEPS_PER_EPOCH[RANKS], (tag, epoch, batch)  # mid-epoch
    assert_same_weights(out / "learngene" / "learngene.safetensors",
                        reference_2rank / "learngene" / "learngene.safetensors")


def test_hung_rank_makes_the_other_fail_within_the_collective_timeout(recipe, tmp_path):
    """Two plain processes (no launcher to clean up): rank 1 is frozen with SIGSTOP, so its sockets
    stay open and only the timeout can free rank 0."""
    timeout_s = 10
    out = tmp_path / "run"
    port = free_port()
    ranks = []
    try:
        for rank in range(RANKS):
            env = base_env(step_delay_s=0.2)
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(RANKS), LOCAL_WORLD_SIZE=str(RANKS),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            cmd = [sys.executable, str(DRIVER), "--config", str(recipe), "--deepspeed_config",
                   "configs/ds/zero2.json", f"output_dir={out}", f"train.collective_timeout_s={timeout_s}"]
            ranks.append(Run(cmd, tmp_path / f"rank{rank}.log", env))
        wait_until(lambda: train_step(out) >= 5, 300, "step 5", ranks[0])
        os.kill(ranks[1].proc.pid, signal.SIGSTOP)
        t_stop, at_stop = time.monotonic(), train_step(out)
        rc = ranks[0].wait(timeout_s + 120)
        took = time.monotonic() - t_stop
        print(f"rank 0 exited {took:.1f}s after rank 1 froze (collective timeout {timeout_s}s)")
        # one line naming the failure and the way back, no traceback (exit 3: resumable)
        assert rc == 3, ranks[0].log[-3000:]
        assert "[rank 0 on " in ranks[0].log and "error: PeerLost: a collective failed: Timed out" in ranks[0].log
        assert "Traceback" not in ranks[0].log, ranks[0].log[-3000:]
        assert took < timeout_s + 90
        # no step (and so no checkpoint) can complete without rank 1's gradients
        assert max(complete_steps(out)) <= at_stop + 1
    finally:
        for r in ranks:
            r.kill_all()
