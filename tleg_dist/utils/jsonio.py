"""Reading a JSON file the one way: one line naming the file when it cannot be read or parsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable


def read_json(path, error: Callable[[str], Exception] | None = None, what: str | None = None):
    """The JSON value in `path`. If it is missing, unreadable or not JSON: None, or with `error`,
    `error("WHAT: not readable JSON (why)")`, WHAT being `what` or else the path."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # ValueError: a JSONDecodeError or a UnicodeDecodeError
        if error is None:
            return None
        raise error(f"{what or path}: not readable JSON ({e})") from None
