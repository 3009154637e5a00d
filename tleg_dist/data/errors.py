"""Errors raised by the data sources: every message names the file or folder at fault."""


class DataError(ValueError):
    """A dataset is missing, malformed or does not match the config."""


class BadImageError(DataError):
    """An image file could not be decoded (raised when data.on_bad_image=fail)."""
