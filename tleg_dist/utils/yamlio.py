"""Reading YAML text the one way: a syntax error is one line naming its source (yaml's own
message says "<unicode string>"), with where the parser was and what it found there."""

from __future__ import annotations

from typing import Callable

import yaml


def load_yaml(text: str, what: str, error: Callable[[str], Exception]):
    """yaml.safe_load(text); on a syntax error, `error("WHAT: not valid YAML: ... (line L, column C)")`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        said = [f"{msg} (line {mark.line + 1}, column {mark.column + 1})" for msg, mark in
                ((getattr(e, "context", None), getattr(e, "context_mark", None)),
                 (getattr(e, "problem", None), getattr(e, "problem_mark", None))) if msg and mark]
        raise error(f"{what}: not valid YAML: {'; '.join(said) or e}") from None
