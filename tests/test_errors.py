"""Every error about the user's inputs or outputs is a UserError (train.py prints those as one
line) and keeps its builtin base, so existing `except ValueError` / `except OSError` still work."""

from __future__ import annotations

import pytest

from tleg_dist.config import ConfigError
from tleg_dist.data.errors import BadImageError, DataError
from tleg_dist.learngene_file import LearngeneFileError
from tleg_dist.teacher import TeacherError
from tleg_dist.training.checkpoint import CheckpointError
from tleg_dist.training.loop import NonFiniteLossError
from tleg_dist.training.model_factory import InitError
from tleg_dist.utils.atomic import OutputExistsError
from tleg_dist.utils.errors import UserError


@pytest.mark.parametrize("cls, builtin", [
    (ConfigError, ValueError), (DataError, ValueError), (BadImageError, ValueError),
    (LearngeneFileError, ValueError), (TeacherError, ValueError), (InitError, ValueError),
    (CheckpointError, RuntimeError), (NonFiniteLossError, FloatingPointError), (OutputExistsError, OSError),
])
def test_user_errors_keep_their_builtin_base(cls, builtin):
    err = cls("culprit")
    assert isinstance(err, UserError) and isinstance(err, builtin)
    assert str(err) == "culprit"

