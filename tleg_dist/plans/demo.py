"""The demo as a plan: teacher -> learngene (Aux-Net distillation) -> Des-Nets of several
depths, TLEG-initialised and from scratch with the same fine-tuning budget.

    ROOT/teacher/  ROOT/learngene/  ROOT/des/depth<L>_<init>/  ROOT/results.{md,json,csv,png}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tleg_dist.artifacts import run_folder
from tleg_dist.plans.job import Input, Job, derive
from tleg_dist.plans.launch import Depths, PlanRecipe, StageRef, same_teacher


class DemoRecipe(PlanRecipe):
    output_dir: Path = Path("runs/demo")
    seed: int = 0
    teacher: StageRef
    learngene: StageRef
    finetune: StageRef
    depths: Depths
    inits: list[Literal["learngene", "scratch"]] = ["learngene", "scratch"]
    smoke: list[str] = Field(default_factory=list, description="overrides for every stage under --smoke (tiny budget)")


def build(p: DemoRecipe, smoke: bool = False) -> list[Job]:
    root = Path(p.output_dir).resolve()
    extra = list(p.smoke) if smoke else []
    teacher = derive(p.teacher.load(extra), {"output_dir": root / "teacher", "seed": p.seed})
    from_teacher = [Input("distill.teacher.checkpoint", "teacher", run_folder.WEIGHTS)]
    aux = derive(p.learngene.load(extra), {"output_dir": root / "learngene", "seed": p.seed, **same_teacher(teacher)},
                 from_teacher)
    plan = [Job("teacher", teacher, labels={"kind": "teacher"}),
            Job("learngene", aux, from_teacher, labels={"kind": "learngene", "depth": aux.model.depth})]
    for depth in p.depths:
        for init in p.inits:
            inputs = [Input("model.learngene", "learngene", run_folder.LEARNGENE)] if init == "learngene" else []
            cfg = derive(p.finetune.load(extra), {"output_dir": root / "des" / f"depth{depth}_{init}", "seed": p.seed,
                                                  "model.depth": depth, "model.init": init}, inputs)
            plan.append(Job(f"depth {depth} {init}", cfg, inputs, {"kind": "des", "depth": depth, "init": init}))
    return plan
