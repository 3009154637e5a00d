"""Errors raised by the data sources: every message names the file or folder at fault."""

from tleg_dist.utils.errors import UserError


class DataError(ValueError, UserError):
    """A dataset is missing, malformed or does not match the config."""


class BadImageError(DataError):
    """An image file could not be decoded (raised when data.on_bad_image=fail)."""
