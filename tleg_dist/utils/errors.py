"""The one marker for errors about the user's inputs or outputs (recipe, data, weights, disk).

Each module keeps its own error class (ConfigError, DataError, ...) and also derives from
UserError, so entry points can print such errors as one line without listing every class,
while anything else (a bug) keeps its traceback.
"""


class UserError(Exception):
    """Raised for a bad input or an unusable output; the message names the culprit."""
