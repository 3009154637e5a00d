"""The experiment as jobs, in two phases (the reported runs need the tuning's choices):

phase 1 (`tuning_plan`)
  teacher     once per upstream setting (seed `teacher_seed`), shared by every seed
  aux         per upstream setting and seed: the Aux-Net, distilled through the setting's logit cache
  vit         a plain ViT of the Aux-Net's depth, distilled the same way: truncated's, Heur-LG's and
              (at that depth) Pre-Fin's source
  pre_d<L>    plain ViTs of the other depths a Pre-Fin descendant needs
  tune        at `tuning.seed` and `tuning.depths`: every init of every setting at every candidate
              of its grid, judged on the validation split (data.eval_on=val)
phase 2 (`reported_plan`): phase 1, then one descendant per (setting, seed, depth, init) of the
  setting's run groups with the chosen lr and warmup, judged once on the test set; then the ablations.
timing (`timing_plan`): `cost.timing`'s jobs again, from their own teacher and an empty cache of
  their own, to be run alone and one after another (launchers/experiment.py --timing).

    OUT/<up>/teacher/  OUT/<up>/teacher_logits/  OUT/<up>/seed<k>/{aux,vit,pre_d<L>}/
    OUT/<setting>/tune/d<L>_<init>_lr<..>_wu<..>/  OUT/<setting>/seed<k>/d<L>_<init>/  OUT/timing/...
"""

from __future__ import annotations

from pathlib import Path

from tleg_dist.artifacts import run_folder
from tleg_dist.config import ConfigError
from tleg_dist.experiments import budget
from tleg_dist.experiments.recipe import ExperimentRecipe
from tleg_dist.plans import launch
from tleg_dist.plans.job import Input, Job, derive

# How a descendant starts: the model factory's init, and the upstream role giving its weights
# ("pre": the plain ViT of the descendant's own depth).
STARTS = {"learngene": ("learngene", "aux"), "scratch": ("scratch", None), "truncated": ("truncated", "vit"),
          "heur_lg": ("heur_lg", "vit"), "heur_lg_paper": ("heur_lg_paper", "vit"), "prefin": ("truncated", "pre")}
TUNE, REPORTED, TIMING = "tune", "des", "timing"  # the labels' kinds (the report tabulates "des" only)


def hp_slug(lr: float, warmup: float) -> str:
    return f"lr{lr:g}_wu{warmup:g}".replace(".", "p")


class Builder:
    def __init__(self, x: ExperimentRecipe, smoke: bool = False, ranks: int = 1, root: Path | None = None,
                 kind: str = REPORTED):
        self.x, self.extra, self.ranks, self.kind = x, list(x.smoke.stages) if smoke else [], ranks, kind
        self.root, self.jobs = Path(root or x.output_dir).resolve(), []
        self.teachers: dict[str, Job] = {}
        self.upstream: dict[tuple[str, int, str], Job] = {}
        self.aux_depth = x.aux.load().model.depth

    def add(self, name: str, base, updates: dict, inputs: list[Input], labels: dict, images: float,
            warmup: float = 0.0) -> Job:
        probe = derive(base, updates, inputs)
        planned, fit = budget.budget_updates(images, probe, self.ranks, warmup)
        job = Job(name, derive(probe, fit, inputs), inputs, {**labels, "planned_images": planned})
        self.jobs.append(job)
        return job

    def up(self, setting: str) -> str:
        """The setting whose upstream jobs `setting` descends from."""
        return self.x.settings[setting].upstream_from or setting

    def teacher(self, up: str) -> Job:
        if up not in self.teachers:
            s, x = self.x.settings[up], self.x
            cfg = derive(x.teacher.load([*s.upstream, *self.extra]),
                         {"output_dir": self.root / up / "teacher", "seed": x.teacher_seed, "stage": "teacher"})
            self.teachers[up] = Job(f"{self._prefix}{up}: teacher", cfg, labels={
                "kind": "teacher", "setting": up, "seed": x.teacher_seed,
                "planned_images": budget.stage_images(cfg, self.ranks)})
            self.jobs.append(self.teachers[up])
        return self.teachers[up]

    @property
    def _prefix(self) -> str:
        return "timing: " if self.kind == TIMING else ""

    def distilled(self, up: str, seed: int, role: str, depth: int, alpha: float | None = None,
                  budget_u: float | None = None, tag: str = "") -> Job:
        """An Aux-Net (role aux) or a plain ViT (vit, pre) distilled from the setting's teacher, once."""
        key = (up, seed, f"{role}{tag}")
        if key in self.upstream:
            return self.upstream[key]
        x, s, t = self.x, self.x.settings[up], self.teacher(up)
        updates = {"seed": seed, **launch.same_teacher(t.cfg), "model.depth": depth,
                   "distill.teacher.cache_dir": self.root / up / "teacher_logits",
                   "output_dir": self.root / up / f"seed{seed}" / f"{role}{tag}"}
        if role != "aux":  # the same recipe, distillation and budget; only the model is a plain ViT
            updates.update({"stage": "finetune", "model.init": "scratch"})
        if alpha is not None:
            updates["distill.alpha"] = alpha
        job = self.add(f"{self._prefix}{up}/seed{seed}: {role}{tag}", x.aux.load([*s.upstream, *self.extra]), updates,
                       [Input("distill.teacher.checkpoint", t.name, run_folder.WEIGHTS)],
                       {"kind": role, "setting": up, "seed": seed, "depth": depth}, (budget_u or x.budget_u.aux)
                       * x.unit_images, x.budget_u.aux_warmup)
        self.upstream[key] = job
        return job

    def source(self, setting: str, seed: int, depth: int, init: str) -> tuple[str, list[Input]]:
        """The model factory's init and the input binding its weights, creating the upstream job."""
        model_init, role = STARTS[self.x.inits[init].start]
        if role is None:
            return model_init, []
        up = self.up(setting)
        if role == "pre" and depth != self.aux_depth:
            job = self.distilled(up, seed, "pre", depth, tag=f"_d{depth}")
        else:
            job = self.distilled(up, seed, "aux" if role == "aux" else "vit", self.aux_depth)
        field, artifact = (("model.learngene", run_folder.LEARNGENE) if role == "aux"
                           else ("model.pretrained", run_folder.WEIGHTS))
        return model_init, [Input(field, job.name, artifact)]

    def descendant(self, setting: str, seed: int, depth: int, init: str, hp: dict, *, out: str,
                   name: str, labels: dict | None = None, updates: dict | None = None,
                   inputs: list[Input] | None = None) -> Job:
        x, s = self.x, self.x.settings[setting]
        model_init, found = self.source(setting, seed, depth, init)
        u = x.budget(setting, init)
        return self.add(name, x.finetune.load([*s.downstream, *self.extra]),
                        {"seed": seed, "stage": "finetune", "model.depth": depth, "model.init": model_init,
                         "model.fresh_head": s.fresh_head, "optim.lr": hp["lr"], **(updates or {}),
                         "output_dir": self.root / setting / out},
                        found if inputs is None else inputs,
                        {"kind": self.kind, "setting": setting, "seed": seed, "depth": depth, "init": init,
                         "start": x.inits[init].start, "budget_u": u, "lr": hp["lr"], "warmup": hp["warmup"],
                         **(labels or {})}, u * x.unit_images, hp["warmup"])


def _check_depths(x: ExperimentRecipe, aux_depth: int) -> None:
    deepest = max(d for s in x.settings.values() for g in s.runs.values() for d in (g.depths or s.depths))
    if max(deepest, *x.tuning.depths) > aux_depth:
        raise ConfigError(f"depths: truncated, Heur-LG and Pre-Fin need depths <= the aux depth {aux_depth}, "
                          f"got {max(deepest, *x.tuning.depths)}")


def tuning_plan(x: ExperimentRecipe, smoke: bool = False, ranks: int = 1) -> list[Job]:
    """Phase 1: the tuning runs and every upstream job the reported runs will need."""
    b = Builder(x, smoke, ranks, kind=TUNE)
    _check_depths(x, b.aux_depth)
    t = x.tuning
    for setting, s in x.settings.items():
        for init in s.inits():
            grid = t.grid(x.inits[init].start)
            for lr in grid.lr:
                for warmup in grid.warmup:
                    hp = {"lr": lr, "warmup": warmup}
                    for depth in t.depths:
                        b.descendant(setting, t.seed, depth, init, hp, out=f"tune/d{depth}_{init}_{hp_slug(lr, warmup)}",
                                     name=f"{setting}/tune: depth {depth} {init} {hp_slug(lr, warmup)}",
                                     updates={"data.eval_on": "val"})
    for setting, s in x.settings.items():  # the reported runs' upstream, trained while tuning runs
        for init, seeds, depths in s.groups(x.seeds):
            for seed in seeds:
                for depth in depths:
                    b.source(setting, seed, depth, init)
    return b.jobs


def reported_plan(x: ExperimentRecipe, chosen: dict[tuple[str, str], dict], smoke: bool = False,
                  ranks: int = 1) -> list[Job]:
    """Phase 1's jobs, then the reported descendants with `chosen` {(setting, init): {lr, warmup}} and
    the ablations. Settings outermost: an interrupted phase leaves whole settings done."""
    plan = tuning_plan(x, smoke, ranks)
    b = Builder(x, smoke, ranks)
    b.jobs, b.teachers = [], {j.labels["setting"]: j for j in plan if j.labels["kind"] == "teacher"}
    b.upstream = {(j.labels["setting"], j.labels["seed"], j.out.name): j for j in plan
                  if j.labels["kind"] in ("aux", "vit", "pre")}
    for setting, s in x.settings.items():
        for seed in x.seeds:
            for init, seeds, depths in s.groups(x.seeds):
                for depth in depths if seed in seeds else ():
                    b.descendant(setting, seed, depth, init, chosen[(setting, init)], out=f"seed{seed}/d{depth}_{init}",
                                 name=f"{setting}/seed{seed}: depth {depth} {init}")
    _ablations(b, x, chosen)
    return plan + b.jobs


def _ablations(b: Builder, x: ExperimentRecipe, chosen: dict) -> None:
    a, setting = x.ablations, next(iter(x.settings))
    for what, values in (("alpha", a.alpha), ("aux_budget_u", a.aux_budget_u)):
        for v in values:
            tag = f"{what}={v:g}"
            slug = "_" + tag.replace("=", "").replace(".", "p")
            aux = b.distilled(b.up(setting), a.seed, "aux", b.aux_depth, tag=slug,
                              **({"alpha": v} if what == "alpha" else {"budget_u": v}))
            aux.labels["ablation"] = tag
            for depth in x.settings[setting].depths:
                b.descendant(setting, a.seed, depth, "tleg", chosen[(setting, "tleg")],
                             out=f"seed{a.seed}/d{depth}_tleg{slug}", name=f"{setting}/seed{a.seed}: depth {depth} "
                             f"tleg {tag}", labels={"ablation": tag},
                             inputs=[Input("model.learngene", aux.name, run_folder.LEARNGENE)])


def timing_plan(x: ExperimentRecipe, chosen: dict[tuple[str, str], dict], smoke: bool = False) -> list[Job]:
    """cost.timing's jobs under OUT/timing/: the teacher, the Aux-Net (filling an empty cache of its own)
    and the timed inits at every depth their run group has, with the chosen values; one rank."""
    c = x.cost
    b = Builder(x, smoke, 1, root=Path(x.output_dir) / TIMING, kind=TIMING)
    depths = {i: d for i, seeds, d in x.settings[c.setting].groups(x.seeds)}
    for init in c.timing.inits:
        for depth in depths[init]:
            b.descendant(c.setting, c.timing.seed, depth, init, chosen[(c.setting, init)],
                         out=f"seed{c.timing.seed}/d{depth}_{init}", name=f"timing: {c.setting}: depth {depth} {init}")
    return b.jobs
