"""The one exception the converter's commands raise for bad input.

`main` turns it (and the checkpoint, learngene-file and output-exists errors it shares with the
rest of the package) into a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

from tleg_dist.artifacts.checkpoints import CheckpointError
from tleg_dist.artifacts.learngene import LearngeneFileError
from tleg_dist.model_folder import ModelFolderError
from tleg_dist.utils.atomic import OutputExistsError


class ConvertError(ValueError):
    """Bad input to a convert command; the message names the offending file."""


# Everything a command may raise on bad input (anything else is a bug and keeps its traceback).
USER_ERRORS = (ConvertError, CheckpointError, LearngeneFileError, ModelFolderError, OutputExistsError)
