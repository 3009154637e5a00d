"""The one exception the converter's commands raise for bad input."""

from tleg_dist.utils.errors import UserError


class ConvertError(ValueError, UserError):
    """Bad input to a convert command; the message names the offending file."""
