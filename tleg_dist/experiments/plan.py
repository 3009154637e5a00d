"""Every stage run of an experiment, in order, as a recipe plus overrides.

Per setting: one cached teacher. Per (seed, setting): the Aux-Net (learngene stage), the
truncated baseline's plain aux-depth ViT ("pretrain": the learngene recipe run as a finetune
stage from scratch, so same distillation, data and budget), then one fine-tuning run per
(depth, init). Seeds are the outer loop, so an interrupted experiment has whole seeds done.

    runs/experiments/fmnist/<setting>/teacher/
    runs/experiments/fmnist/<setting>/seed<k>/{learngene,pretrain}/
    runs/experiments/fmnist/<setting>/seed<k>/des/d<L>_<init>/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tleg_dist import config as config_lib
from tleg_dist.config import ConfigError, RunConfig
from tleg_dist.experiments import budget
from tleg_dist.experiments.config import ExperimentConfig
from tleg_dist.pipeline.config import StageRef

INIT_OVERRIDES = {"tleg": "learngene", "scratch": "scratch", "scratch_long": "scratch",
                  "scratch_2x": "scratch", "truncated": "truncated"}


@dataclass
class Job:
    kind: str  # teacher | learngene | pretrain | des
    setting: str
    seed: int
    out: Path
    recipe: StageRef
    overrides: list[str]
    depth: Optional[int] = None
    init: Optional[str] = None
    images: Optional[int] = None  # training images this run will see
    aux_share: float = 0.0  # images of the Aux-Net (or pretrain) run charged to this descendant
    needs: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        what = self.kind if self.depth is None else f"depth {self.depth} {self.init}"
        return f"{self.setting}/seed{self.seed}: {what}"

    @property
    def total_images(self) -> Optional[float]:
        return None if self.images is None else self.images + self.aux_share

    def config(self, check_paths: bool = True) -> RunConfig:
        return config_lib.load(self.recipe.recipe, [*self.recipe.overrides, *self.overrides],
                               check_paths=check_paths)


def build_plan(x: ExperimentConfig, smoke: bool = False) -> list[Job]:
    ranks = budget.world_size()
    extra = list(x.smoke.stages) if smoke else []
    jobs: list[Job] = []
    teachers: dict[str, tuple[str, Path]] = {}
    for seed in x.seeds:
        for s in x.settings:
            sroot = Path(x.output_dir) / s.name
            up = [*s.upstream, *extra]
            if s.name not in teachers:
                t = Job("teacher", s.name, x.teacher_seed, sroot / "teacher", x.teacher,
                        [*up, f"output_dir={sroot / 'teacher'}", f"seed={x.teacher_seed}", "stage=teacher"])
                tcfg = t.config(check_paths=False)
                t.images = budget.stage_images(tcfg, ranks)
                teachers[s.name] = (tcfg.distill.teacher.model, sroot / "teacher" / "teacher.safetensors")
                jobs.append(t)
            tmodel, tfile = teachers[s.name]
            distilled = [*up, f"distill.teacher.model={tmodel}", f"distill.teacher.checkpoint={tfile}",
                         f"seed={seed}"]
            root = sroot / f"seed{seed}"
            lg = Job("learngene", s.name, seed, root / "learngene", x.learngene,
                     [*distilled, f"output_dir={root / 'learngene'}", "stage=learngene"], needs=[tfile])
            lg_cfg = lg.config(check_paths=False)
            if lg_cfg.distill.type == "none":
                raise ConfigError(f"{x.learngene.recipe}: the Aux-Net must be distilled (distill.type soft|hard)")
            lg.images = budget.stage_images(lg_cfg, ranks)
            aux_depth = lg_cfg.model.depth
            jobs.append(lg)
            pre = None
            if "truncated" in x.inits:
                if max(x.depths) > aux_depth:
                    raise ConfigError(f"depths: truncated init needs depths <= the aux depth {aux_depth}, "
                                      f"got {max(x.depths)}")
                # Same recipe, data, teacher and budget as the Aux-Net; only the model differs.
                pre = Job("pretrain", s.name, seed, root / "pretrain", x.learngene,
                          [*distilled, f"output_dir={root / 'pretrain'}", "stage=finetune",
                           "model.init=scratch"], needs=[tfile])
                pre.images = budget.stage_images(pre.config(check_paths=False), ranks)
                jobs.append(pre)
            for depth in x.depths:
                jobs += _descendants(x, s, seed, depth, aux_depth, lg, pre, root, extra, ranks)
    return jobs


def _descendants(x, s, seed, depth, aux_depth, lg: Job, pre: Optional[Job], root: Path, extra, ranks) -> list[Job]:
    base = [*s.downstream, *extra, f"seed={seed}", "stage=finetune", f"model.depth={depth}",
            f"model.fresh_head={str(s.fresh_head).lower()}"]
    probe = config_lib.load(x.finetune.recipe, [*x.finetune.overrides, *base], check_paths=False)
    share = budget.aux_share(lg.images, depth, aux_depth, x.depths, x.budget.cost)
    ft_images, _ = budget.budget_overrides(x.budget.finetune_images, probe, ranks)
    jobs = []
    for init in x.inits:
        out = root / "des" / f"d{depth}_{init}"
        over = [*base, f"output_dir={out}", f"model.init={INIT_OVERRIDES[init]}"]
        needs: list[Path] = []
        charged = 0.0
        if init == "tleg":
            needs = [lg.out / "learngene.safetensors"]
            over.append(f"model.learngene={needs[0]}")
            charged = share
        elif init == "truncated":
            needs = [pre.out / "final.safetensors"]
            over.append(f"model.pretrained={needs[0]}")
            charged = budget.aux_share(pre.images, depth, aux_depth, x.depths, x.budget.cost)
        # The larger scratch budgets match TLEG's total: its fine-tuning images plus its share.
        want = {"scratch_long": ft_images + share, "scratch_2x": 2 * (ft_images + share)}.get(
            init, x.budget.finetune_images)
        images, bo = budget.budget_overrides(want, probe, ranks)
        jobs.append(Job("des", s.name, seed, out, x.finetune, [*over, *bo], depth=depth, init=init,
                        images=images, aux_share=charged, needs=needs))
    return jobs
