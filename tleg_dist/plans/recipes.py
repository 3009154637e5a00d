"""What every plan recipe shares: stage references, where it writes, what each job gets."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import Field

from tleg_dist import config as config_lib
from tleg_dist.config import RunConfig, Section, apply_overrides, read_yaml, validate
from tleg_dist.plans.executors import ResourcesConfig


class StageRef(Section):
    recipe: Path = Field(description="a RunConfig YAML")
    overrides: list[str] = Field(default_factory=list, description="key.sub=value applied on top")

    def load(self, extra: list[str] = ()) -> RunConfig:
        # Inputs a plan binds (a learngene, a teacher) do not exist yet: checked when the job starts.
        return config_lib.load(self.recipe, [*self.overrides, *extra], check_paths=False)


class PlanRecipe(Section):
    output_dir: Path
    resources: ResourcesConfig = ResourcesConfig()


R = TypeVar("R", bound=PlanRecipe)


def load(cls: type[R], path: str | Path, overrides: list[str] = (), pre: list[str] = ()) -> R:
    """The recipe at `path` with `pre` (e.g. its own smoke overrides), then `overrides`, applied."""
    raw = apply_overrides(read_yaml(path, f"{cls.__name__} recipe"), [*pre, *overrides])
    return validate(cls, raw, str(path))
