"""The experiment as a plan: per setting one cached teacher; per (seed, setting) the Aux-Net
(learngene stage), the truncated baseline's plain aux-depth ViT ("pretrain": the learngene
recipe run as a finetune stage from scratch, so same distillation, data and budget), then one
fine-tuning run per (depth, init). Seeds are the outer loop, so an interrupted experiment has
whole seeds done. Its budgets and statistics are tleg_dist/experiments/{budget,summary}.py.

    OUT/<setting>/teacher/   OUT/<setting>/seed<k>/{learngene,pretrain}/   .../des/d<L>_<init>/

The recipe is validated like a RunConfig; `--smoke` applies its own `smoke.experiment`
overrides before validation and `smoke.stages` to every stage run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from tleg_dist.config import ConfigError, Section, read_yaml
from tleg_dist.experiments import budget
from tleg_dist.plans import recipes
from tleg_dist.plans.job import Input, Job, derive
from tleg_dist.plans.recipes import PlanRecipe, StageRef

# tleg: expanded from the learngene. scratch: random init, same fine-tuning budget.
# scratch_long: random init, TLEG's total budget. scratch_2x: twice that (tests "2x lower cost").
# truncated: first L blocks of a plain aux-depth ViT trained like the Aux-Net.
Init = Literal["tleg", "scratch", "scratch_long", "scratch_2x", "truncated"]
INIT_ORDER = ("tleg", "scratch", "scratch_long", "scratch_2x", "truncated")
MODEL_INIT = {"tleg": "learngene", "truncated": "truncated"}  # the rest start from scratch


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


class ExperimentRecipe(PlanRecipe):
    output_dir: Path = Field(Path("runs/experiments/default"), description="runs and checkpoints (not committed)")
    results_dir: Path = Field(Path("results/default"), description="summary.json, results.{md,json,csv}, plots")
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


def load(path: str | Path, overrides: list[str] = (), smoke: bool = False) -> ExperimentRecipe:
    pre = list((read_yaml(path, "experiment recipe").get("smoke") or {}).get("experiment", [])) if smoke else []
    return recipes.load(ExperimentRecipe, path, overrides, pre)


def build(x: ExperimentRecipe, smoke: bool = False) -> list[Job]:
    ranks = budget.world_size()
    extra = list(x.smoke.stages) if smoke else []
    jobs: list[Job] = []
    teachers: dict[str, Job] = {}
    for seed in x.seeds:
        for s in x.settings:
            sroot = Path(x.output_dir).resolve() / s.name
            up = [*s.upstream, *extra]
            if s.name not in teachers:
                cfg = derive(x.teacher.load(up), {"output_dir": sroot / "teacher", "seed": x.teacher_seed,
                                                  "stage": "teacher"})
                teachers[s.name] = t = Job(f"{s.name}: teacher", cfg, labels=_labels("teacher", s.name, x.teacher_seed))
                t.labels["planned_images"] = budget.stage_images(cfg, ranks)
                jobs.append(t)
            teacher = teachers[s.name]
            from_teacher = [Input("distill.teacher.checkpoint", teacher.name, "weights")]
            distilled = {"seed": seed, "distill.teacher.model": teacher.cfg.distill.teacher.model}
            root = sroot / f"seed{seed}"
            lg = _job(f"{s.name}/seed{seed}: learngene", x.learngene.load(up), from_teacher,
                      {**distilled, "output_dir": root / "learngene", "stage": "learngene"},
                      _labels("learngene", s.name, seed), ranks)
            if lg.cfg.distill.type == "none":
                raise ConfigError(f"{x.learngene.recipe}: the Aux-Net must be distilled (distill.type soft|hard)")
            jobs.append(lg)
            pre = None
            if "truncated" in x.inits:
                if max(x.depths) > lg.cfg.model.depth:
                    raise ConfigError(f"depths: truncated init needs depths <= the aux depth {lg.cfg.model.depth}, "
                                      f"got {max(x.depths)}")
                # Same recipe, data, teacher and budget as the Aux-Net; only the model differs.
                pre = _job(f"{s.name}/seed{seed}: pretrain", x.learngene.load(up), from_teacher,
                           {**distilled, "output_dir": root / "pretrain", "stage": "finetune", "model.init": "scratch"},
                           _labels("pretrain", s.name, seed), ranks)
                jobs.append(pre)
            for depth in x.depths:
                jobs += _descendants(x, s, seed, depth, lg, pre, root, extra, ranks)
    return jobs


def _labels(kind: str, setting: str, seed: int, **more) -> dict:
    return {"kind": kind, "setting": setting, "seed": seed, **more}


def _job(name: str, base, inputs: list[Input], updates: dict, labels: dict, ranks: int) -> Job:
    cfg = derive(base, updates, inputs)
    return Job(name, cfg, inputs, {**labels, "planned_images": budget.stage_images(cfg, ranks)})


def _descendants(x, s: Setting, seed: int, depth: int, lg: Job, pre: Optional[Job], root: Path, extra,
                 ranks: int) -> list[Job]:
    probe = derive(x.finetune.load([*s.downstream, *extra]),
                   {"seed": seed, "stage": "finetune", "model.depth": depth, "model.fresh_head": s.fresh_head})
    aux_depth = lg.cfg.model.depth
    share = budget.aux_share(lg.labels["planned_images"], depth, aux_depth, x.depths, x.budget.cost)
    ft_images, _ = budget.budget_updates(x.budget.finetune_images, probe, ranks)
    jobs = []
    for init in x.inits:
        inputs, charged = [], 0.0
        if init == "tleg":
            inputs, charged = [Input("model.learngene", lg.name, "learngene")], share
        elif init == "truncated":
            inputs = [Input("model.pretrained", pre.name, "weights")]
            charged = budget.aux_share(pre.labels["planned_images"], depth, aux_depth, x.depths, x.budget.cost)
        # The larger scratch budgets match TLEG's total: its fine-tuning images plus its share.
        want = {"scratch_long": ft_images + share, "scratch_2x": 2 * (ft_images + share)}.get(
            init, x.budget.finetune_images)
        images, updates = budget.budget_updates(want, probe, ranks)
        cfg = derive(probe, {**updates, "output_dir": root / "des" / f"d{depth}_{init}",
                             "model.init": MODEL_INIT.get(init, "scratch")}, inputs)
        jobs.append(Job(f"{s.name}/seed{seed}: depth {depth} {init}", cfg, inputs,
                        _labels("des", s.name, seed, depth=depth, init=init, planned_images=images,
                                aux_share=charged)))
    return jobs


def records(plan: list[Job], finished: list[dict]) -> list[dict]:
    """The generic records with the experiment's accounting. Budgets are the point of the
    comparison: a run that saw other than its planned images is an error, never a row."""
    by_name = {j.name: j for j in plan}
    out = []
    for r in finished:
        planned = by_name[r["name"]].labels["planned_images"]
        if r["images"] != planned:
            raise ConfigError(f"{r['name']}: planned {planned} training images, the run saw {r['images']} "
                              f"({r['run_dir']}); delete that run folder and rerun")
        share = r.get("aux_share", 0.0)
        out.append({**r, "aux_share": share, "total_images": r["images"] + share, "wall_time_s": r["time_s"]})
    return out
