"""The experiment recipe: stage recipes, settings, depths, initialisations, seeds and budgets.

Validated like a RunConfig: an unknown key or a bad value fails at load time with its
dotted name. `--smoke` applies the recipe's own `smoke.experiment` overrides before
validation and `smoke.stages` to every stage run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, ValidationError, field_validator, model_validator

from tleg_dist.config import ConfigError, Section, _format_error, apply_overrides, read_yaml
from tleg_dist.pipeline.config import StageRef

# tleg: expanded from the learngene. scratch: random init, same fine-tuning budget.
# scratch_long: random init, TLEG's total budget. scratch_2x: twice that (tests "2x lower cost").
# truncated: first L blocks of a plain aux-depth ViT trained like the Aux-Net.
Init = Literal["tleg", "scratch", "scratch_long", "scratch_2x", "truncated"]
INIT_ORDER = ("tleg", "scratch", "scratch_long", "scratch_2x", "truncated")


class Setting(Section):
    """Where the upstream stages (teacher, Aux-Net, truncated baseline) and the descendants train."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    description: str = ""
    upstream: list[str] = Field(default_factory=list, description="overrides for teacher, learngene, pretrain")
    downstream: list[str] = Field(default_factory=list, description="overrides for every descendant")
    fresh_head: bool = Field(False, description="descendants start with a fresh classifier (new classes)")


class Budget(Section):
    finetune_images: int = Field(gt=0, description="every descendant's fine-tuning budget, in images")
    cost: Literal["depth_share", "amortised"] = Field(
        "depth_share", description="TLEG's total = fine-tuning + Aux-Net images x L/L_aux (depth_share) "
                                   "or + Aux-Net images / number of depths (amortised); see budget.py")


class Smoke(Section):
    experiment: list[str] = Field(default_factory=list, description="overrides on this recipe")
    stages: list[str] = Field(default_factory=list, description="overrides on every stage run")


class ExperimentConfig(Section):
    output_dir: Path = Field(Path("runs/experiments/default"), description="runs and checkpoints (not committed)")
    results_dir: Path = Field(Path("results/default"), description="summary.json, results.md, plots")
    docs: Optional[Path] = Field(None, description="also write the Results section here (e.g. docs/results.md)")
    teacher: StageRef
    learngene: StageRef
    finetune: StageRef
    settings: list[Setting] = Field(min_length=1)
    depths: list[int] = Field(min_length=1)
    inits: list[Init] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    teacher_seed: int = Field(0, description="one cached teacher per setting, shared by all seeds")
    budget: Budget
    smoke: Smoke = Smoke()

    @model_validator(mode="after")
    def _check(self):
        for name, items in (("depths", self.depths), ("inits", self.inits), ("seeds", self.seeds),
                            ("settings", [s.name for s in self.settings])):
            if len(set(items)) != len(items):
                raise ValueError(f"{name}: repeated entries in {items}")
        if min(self.depths) < 1:
            raise ValueError(f"depths must be >= 1, got {self.depths}")
        if "tleg" not in self.inits:
            raise ValueError("inits must include tleg: every other init is compared with it")
        return self

    @field_validator("depths")
    @classmethod
    def _sort_depths(cls, v: list[int]) -> list[int]:
        return sorted(v)

    @field_validator("inits")
    @classmethod
    def _order_inits(cls, v: list[str]) -> list[str]:
        return sorted(v, key=INIT_ORDER.index)


def load(path: str | Path, overrides: list[str] = (), smoke: bool = False) -> ExperimentConfig:
    path = Path(path)
    raw = read_yaml(path, "experiment config")
    if smoke:
        raw = apply_overrides(raw, list((raw.get("smoke") or {}).get("experiment", [])))
    raw = apply_overrides(raw, list(overrides))
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, str(path))) from None
