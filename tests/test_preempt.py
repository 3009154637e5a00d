"""Preemption signals: the trainer's flag and the hand-over from submitit's handler."""

import os
import signal

import pytest

submitit = pytest.importorskip("submitit")

from tleg_dist.training.preempt import ForwardPreemption, PreemptionFlag  # noqa: E402


@pytest.fixture
def restore_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_submitit_signal_usr1_outside_training_reaches_submitit(monkeypatch, restore_handlers):
    """SUBMITIT_PREEMPT_SIGNAL=USR1: with no trainer running, the forwarder's own handler is the
    SIGUSR1 handler; it must pass the signal to submitit, not call itself until RecursionError."""
    monkeypatch.setattr(submitit.JobEnvironment, "USR_SIG", "USR1")
    got = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))  # submitit's handler
    forward = ForwardPreemption().install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        forward.uninstall()
    assert got == [signal.SIGUSR1]
    assert not forward.received


def test_submitit_signal_while_training_sets_the_trainer_flag(restore_handlers):
    got = []
    signal.signal(submitit.JobEnvironment._usr_sig(), lambda signum, frame: got.append(signum))
    forward = ForwardPreemption().install()
    flag = PreemptionFlag().install()
    try:
        os.kill(os.getpid(), forward.sig)
    finally:
        flag.uninstall()
        forward.uninstall()
    assert forward.received and flag.received == signal.SIGUSR1 and got == []
    forward.hand_back()
    assert got == [forward.sig]
