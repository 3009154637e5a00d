"""Reading a typed recipe: YAML, `key.sub=value` overrides, and pydantic validation whose errors
name the dotted key (`optim.lr: Input should be greater than 0 (got -0.1)`). tleg_dist/config.py
defines the run's tree with it; the demo, sweep and experiment recipes use it too."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tleg_dist.utils.errors import UserError
from tleg_dist.utils.yamlio import load_yaml


class ConfigError(ValueError, UserError):
    pass


class Section(BaseModel):
    """A recipe section: unknown keys are errors, and so are bad values assigned later."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "missing" or not key else f" (got {got!r})"
        lines.append(f"{key}: {msg}{shown}" if key else f"{msg}{shown}")  # a whole-recipe check names its keys
    return f"{source}: invalid config\n  " + "\n  ".join(lines)


def parse_override(item: str) -> tuple[list[str], object]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, value = item.split("=", 1)
    return key.strip().split("."), load_yaml(value, f"override {item!r}", ConfigError)


def set_dotted(raw: dict, path: list[str], value: object) -> None:
    """Set raw[path[0]][path[1]]... to `value`, creating sections on the way."""
    node = raw
    for i, p in enumerate(path[:-1]):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path)}: {'.'.join(path[:i + 1])} is not a section")
    node[path[-1]] = value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        set_dotted(raw, *parse_override(item))
    return raw


def read_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML mapping from `path`; every config loader (run, pipeline, sweep, experiment) uses it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    raw = load_yaml(path.read_text(), str(path), ConfigError) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return raw


def validate(cls: type[BaseModel], raw: dict, source: str, **context):
    """cls.model_validate with errors turned into one ConfigError naming dotted keys."""
    try:
        return cls.model_validate(raw, context=context or None)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None
