"""Preemption signals: the trainer's flag and the hand-over from submitit's handler."""

import os
import signal

import pytest

submitit = pytest.importorskip("submitit")

from tleg_dist.training.preempt import ForwardPreemption, PreemptionFlag, submitit_signal  # noqa: E402
from tleg_dist.utils.errors import UserError  # noqa: E402


@pytest.fixture
def restore_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", ["USR1", "TERM"])
def test_submitit_signal_that_the_trainer_uses_is_refused_at_once(monkeypatch, sig):
    """SUBMITIT_PREEMPT_SIGNAL=USR1 (or TERM): while training, the trainer's own handler would take
    it and stop, and submitit would never requeue; the job says so when it starts instead."""
    monkeypatch.setattr(submitit.JobEnvironment, "USR_SIG", sig)
    with pytest.raises(UserError, match=f"SUBMITIT_PREEMPT_SIGNAL={sig}: the trainer stops on USR1 and TERM"):
        ForwardPreemption()


def test_submitit_signal_is_read_from_its_public_field(monkeypatch):
    """submitit's JobEnvironment.USR_SIG (public; SUBMITIT_PREEMPT_SIGNAL, default USR2) names the signal."""
    assert "USR_SIG" in vars(submitit.JobEnvironment)
    monkeypatch.setattr(submitit.JobEnvironment, "USR_SIG", "USR2")
    assert submitit_signal() == signal.SIGUSR2
    monkeypatch.setattr(submitit.JobEnvironment, "USR_SIG", "NOPE")
    with pytest.raises(UserError, match="^SUBMITIT_PREEMPT_SIGNAL=NOPE: not a signal name; leave it unset"):
        submitit_signal()


def test_submitit_signal_while_training_sets_the_trainer_flag(restore_handlers):
    got = []
    signal.signal(submitit_signal(), lambda signum, frame: got.append(signum))
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
