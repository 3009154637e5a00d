"""The depth sweep as a plan: Des-Nets of several depths fine-tuned from one learngene file.

    learngene: runs/learngene-1234/learngene/learngene.safetensors
    finetune_recipe: configs/cpu/finetune_fmnist.yaml
    depths: [2, 4, 6, 8]
    resources: {tasks_per_job: 1, cpus_per_task: 2, timeout_min: 120, parallelism: 4}

    ROOT/runs/depth_<L>/   one trainer run per depth;  ROOT/results.{md,json,csv,png}
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field, field_validator

from tleg_dist import config as config_lib
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.config import parse_override
from tleg_dist.plans.job import Job, derive
from tleg_dist.plans.launch import Depths, PlanRecipe


class SweepRecipe(PlanRecipe):
    learngene: Path = Field(description="learngene file (learngene.safetensors of a learngene run)")
    finetune_recipe: Path = Field(description="RunConfig recipe for one Des-Net (its depth is overridden)")
    depths: Depths
    seed: Optional[int] = Field(None, description="every job's seed (default: the fine-tuning recipe's)")
    overrides: list[str] = Field(default_factory=list, description="key.sub=value applied to every job's recipe")
    output_dir: Path = Path("runs/sweep")

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_override(item)  # raises on a malformed item
        return v


def build(s: SweepRecipe) -> list[Job]:
    """One job per depth; the learngene and the recipe are checked now, before anything runs."""
    lg = Path(s.learngene).resolve()
    _, lg_arch, _ = learngene_file.read_header(lg)
    base = config_lib.load(s.finetune_recipe, list(s.overrides), check_paths=False)
    learngene_file.check_arch(lg_arch, base.model.arch(), lg)  # from the header: no tensors read
    if not Path(base.deepspeed_config).is_file():
        raise config_lib.ConfigError(f"deepspeed_config {base.deepspeed_config} (from {s.finetune_recipe}) does not "
                                     f"exist here ({Path.cwd()}); run from the repository root")
    root = Path(s.output_dir).resolve()
    seed = {} if s.seed is None else {"seed": s.seed}
    return [Job(f"depth {d}", derive(base, {"output_dir": root / "runs" / f"depth_{d:03d}", "stage": "finetune",
                                            "model.depth": d, "model.init": "learngene", "model.learngene": lg,
                                            "train.progress": False, **seed}, check_paths=True),
                labels={"kind": "des", "depth": d, "init": "learngene"})
            for d in s.depths]
