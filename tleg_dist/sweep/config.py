"""The sweep recipe: one learngene, many Des-Net depths, one fine-tuning recipe.

    learngene: runs/learngene-1234/learngene.safetensors
    finetune_recipe: configs/cpu/finetune_fmnist.yaml
    depths: [2, 4, 6, 8]
    resources: {tasks_per_job: 1, cpus_per_task: 2, timeout_min: 120}
    array_parallelism: 4

Validated like the run config: unknown keys and bad values fail with their dotted name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tleg_dist.config import ConfigError, _format_error, apply_overrides, parse_override, read_yaml


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourcesConfig(_Section):
    """What one depth's job gets. A job with several tasks runs DeepSpeed across them."""

    nodes: int = Field(1, ge=1)
    tasks_per_job: int = Field(1, ge=1, description="ranks per job (all on one node unless nodes > 1)")
    gpus_per_task: int = Field(0, ge=0, description="0 on CPU-only allocations")
    cpus_per_task: int = Field(1, ge=1, description="also the torch thread count of each rank")
    mem_gb: Optional[float] = Field(None, gt=0)
    timeout_min: int = Field(60, ge=1)
    signal_delay_s: int = Field(120, ge=1, description="preemption signal this long before the time limit")
    max_requeues: int = Field(3, ge=0, description="time-outs a job may requeue after")
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    slurm_additional: dict[str, str] = Field(default_factory=dict, description="extra sbatch options")


class SweepConfig(_Section):
    learngene: Path = Field(description="learngene file (learngene.safetensors of a learngene run)")
    finetune_recipe: Path = Field(description="RunConfig recipe for one Des-Net (its depth is overridden)")
    depths: list[int] = Field(min_length=1)
    seed: Optional[int] = Field(None, description="every job's seed (default: the fine-tuning recipe's)")
    overrides: list[str] = Field(default_factory=list, description="key.sub=value applied to every job's recipe")
    output_dir: Path = Path("runs/sweep")
    resources: ResourcesConfig = ResourcesConfig()
    array_parallelism: int = Field(4, ge=1, description="jobs running at once (Slurm array or local)")

    @field_validator("depths")
    @classmethod
    def _depths(cls, v: list[int]) -> list[int]:
        if any(d < 1 for d in v):
            raise ValueError(f"depths must be >= 1, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"depths must be distinct, got {v}")
        return v

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_override(item)  # raises on a malformed item
        return v

    def absolute(self, base: Path | None = None) -> "SweepConfig":
        """Paths made absolute: jobs run from another directory (the Slurm spool, a node)."""
        base = Path(base or Path.cwd())
        fix = {k: (base / getattr(self, k)).resolve() for k in ("learngene", "finetune_recipe", "output_dir")}
        return self.model_copy(update=fix)


def from_dict(raw: dict, source: str = "<sweep>") -> SweepConfig:
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None


def load(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    return from_dict(apply_overrides(read_yaml(path, "sweep recipe"), list(overrides)), str(path))
