"""The pipeline recipe: which stage recipes to chain, at which depths, how initialised."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tleg_dist.config import Section, apply_overrides, read_yaml, validate


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
    raw = apply_overrides(read_yaml(path, "pipeline config"), list(overrides))
    return validate(PipelineConfig, raw, str(path))
