"""Every error about the user's inputs or outputs is a UserError (tleg_dist/cli.py prints those as
one line) and keeps its builtin base, so existing `except ValueError` / `except OSError` still work."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import tleg_dist
from tleg_dist.artifacts.checkpoints import CheckpointError
from tleg_dist.artifacts.learngene import LearngeneFileError
from tleg_dist.config import ConfigError
from tleg_dist.convert import ConvertError
from tleg_dist.data.errors import BadImageError, DataError
from tleg_dist.teacher import TeacherError
from tleg_dist.training.loop import NonFiniteLossError
from tleg_dist.training.model_factory import InitError
from tleg_dist.utils.atomic import OutputExistsError
from tleg_dist.utils.errors import UserError


@pytest.mark.parametrize("cls, builtin", [
    (ConfigError, ValueError), (DataError, ValueError), (BadImageError, ValueError),
    (LearngeneFileError, ValueError), (TeacherError, ValueError), (InitError, ValueError),
    (ConvertError, ValueError), (CheckpointError, RuntimeError), (NonFiniteLossError, FloatingPointError), (OutputExistsError, OSError),
])
def test_user_errors_keep_their_builtin_base(cls, builtin):
    err = cls("culprit")
    assert isinstance(err, UserError) and isinstance(err, builtin)
    assert str(err) == "culprit"


def test_every_exception_the_package_defines_is_a_user_error():
    """A class missing here would end a command with a traceback instead of its one line."""
    others = set()
    for m in pkgutil.walk_packages(tleg_dist.__path__, "tleg_dist."):
        if not m.name.endswith("__main__"):  # importing it would run the command
            for c in vars(importlib.import_module(m.name)).values():
                if inspect.isclass(c) and issubclass(c, Exception) and c.__module__ == m.name:
                    others |= set() if issubclass(c, UserError) else {f"{m.name}.{c.__name__}"}
    assert not others, others


# What gloo raised on this machine when a peer's node was killed, and when its link was cut.
GLOO_CLOSED = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
               "[127.0.0.1]:56973. This is typically caused by a remote worker crashing. Check the logs of the "
               "remote worker before reporting an error. GLHF!")
GLOO_TIMEOUT = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
                "20000ms for recv operation to complete")


def test_a_lost_peer_becomes_one_line_naming_it():
    from tleg_dist.cli import peer_failure

    closed = peer_failure(RuntimeError(GLOO_CLOSED))
    assert closed.startswith("a collective failed: Connection closed by peer [127.0.0.1]:56973 (peer ")
    assert "\n" not in closed and "GLHF" not in closed and "pair.cc" not in closed
    assert "resume with --resume auto" in closed
    timeout = peer_failure(RuntimeError(GLOO_TIMEOUT))
    assert "Timed out waiting 20000ms" in timeout and "a peer rank or the network" in timeout


def test_other_errors_are_not_mistaken_for_a_lost_peer():
    from tleg_dist.cli import peer_failure

    assert peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert peer_failure(ValueError("timed out")) is None  # not raised by a collective
