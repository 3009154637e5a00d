"""The pipeline recipe: which stage recipes to chain, at which depths, how initialised."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from tleg_dist.config import ConfigError, Section, _format_error, apply_overrides


class StageRef(Section):
    recipe: Path = Field(description="a RunConfig YAML")
    overrides: list[str] = Field(default_factory=list, description="key.sub=value applied on top")


class PipelineConfig(Section):
    output_dir: Path = Path("runs/demo")
    seed: int = 0
    teacher: StageRef
    learngene: StageRef
    finetune: StageRef
    depths: list[int] = Field(min_length=1)
    inits: list[Literal["learngene", "scratch"]] = ["learngene", "scratch"]
    smoke: list[str] = Field(default_factory=list,
                             description="overrides for every stage under --smoke (tiny budget)")

    def model_post_init(self, _):
        bad = [d for d in self.depths if d < 1]
        if bad:
            raise ValueError(f"depths must be >= 1, got {bad}")


def load(path: str | Path, overrides: list[str] = ()) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pipeline config {path} does not exist")
    raw = apply_overrides(yaml.safe_load(path.read_text()) or {}, list(overrides))
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, str(path))) from None
