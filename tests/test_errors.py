"""Every error the package defines names its culprit in one line through cli.run (and exits 1),
and a collective that failed because a peer went away is told apart from a bug."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import tleg_dist
from tleg_dist import cli


def _defined_exceptions() -> list[type[Exception]]:
    found = []
    for m in pkgutil.walk_packages(tleg_dist.__path__, "tleg_dist."):
        if not m.name.endswith("__main__"):  # importing it would run the command
            found += [c for c in vars(importlib.import_module(m.name)).values()
                      if inspect.isclass(c) and issubclass(c, Exception) and c.__module__ == m.name]
    return found


@pytest.mark.parametrize("cls", _defined_exceptions(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_error_the_package_defines_ends_a_command_in_one_line(cls, capsys, monkeypatch):
    """A class that failed here would end a command with a traceback instead of its one line."""
    for name in ("WORLD_SIZE", "TLEG_TRACEBACK"):
        monkeypatch.delenv(name, raising=False)

    def fail():
        raise cls("culprit")

    assert cli.run(fail) == cli.EXIT_USER
    assert capsys.readouterr().err == f"error: {cls.__name__}: culprit\n"


# What gloo raised on this machine when a peer's node was killed, and when its link was cut.
GLOO_CLOSED = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
               "[127.0.0.1]:56973. This is typically caused by a remote worker crashing. Check the logs of the "
               "remote worker before reporting an error. GLHF!")
GLOO_TIMEOUT = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
                "20000ms for recv operation to complete")


def test_a_lost_peer_becomes_one_line_naming_it():
    closed = cli.peer_failure(RuntimeError(GLOO_CLOSED))
    assert closed.startswith("a collective failed: Connection closed by peer [127.0.0.1]:56973 (peer ")
    assert "\n" not in closed and "GLHF" not in closed and "pair.cc" not in closed
    assert "resume with --resume auto" in closed
    timeout = cli.peer_failure(RuntimeError(GLOO_TIMEOUT))
    assert "Timed out waiting 20000ms" in timeout and "a peer rank or the network" in timeout


def test_other_errors_are_not_mistaken_for_a_lost_peer():
    assert cli.peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert cli.peer_failure(ValueError("timed out")) is None  # not raised by a collective
