"""The experiment as a plan: the paper's protocol in miniature (issue 13). Budgets are in units
u of `unit_images` training images, one u standing for one paper epoch.

Upstream, per setting that trains its own (`upstream_from` borrows another's) and per seed:
  aux        the Aux-Net (learngene stage), distilled from the setting's teacher
  vit        a plain ViT of the Aux-Net's depth, same recipe and distillation (stage finetune
             from scratch): the source of `truncated` and `heur_lg`, and `prefin` at that depth
  pre_L      plain ViTs of each other depth L, distilled the same way: `prefin`'s source
and one teacher per upstream setting (seed `teacher_seed`), shared by every seed.
Then per (setting, seed, depth, init) one descendant, initialised as the init's `start` says
and fine-tuned for its budget. Ablations (one seed, the first setting) add Aux-Nets with
other alphas or budgets and their TLEG descendants, and every init at other learning rates.

    OUT/<upstream>/teacher/  OUT/<upstream>/seed<k>/{aux,vit,pre_d<L>}/  OUT/<setting>/seed<k>/d<L>_<init>/

`--smoke` applies the recipe's `smoke.experiment` overrides before validation and
`smoke.stages` to every stage run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from tleg_dist.config import ConfigError, Section, read_yaml
from tleg_dist.plans import budget, launch
from tleg_dist.plans.job import Input, Job, derive
from tleg_dist.plans.launch import Depths, PlanRecipe, StageRef

# How a descendant starts: the model factory's init, and which upstream job gives its weights
# ("pre": the plain ViT of the descendant's own depth).
STARTS = {"learngene": ("learngene", "aux"), "scratch": ("scratch", None), "truncated": ("truncated", "vit"),
          "heur_lg": ("heur_lg", "vit"), "prefin": ("truncated", "pre")}


class InitSpec(Section):
    start: Literal["learngene", "scratch", "truncated", "heur_lg", "prefin"]
    budget_u: Optional[float] = Field(None, gt=0, description="fine-tuning budget (default: budget_u.finetune)")


class Setting(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    description: str = ""
    upstream: list[str] = Field(default_factory=list, description="overrides for teacher, aux and ViT pretraining")
    upstream_from: Optional[str] = Field(None, description="reuse this setting's upstream jobs instead")
    downstream: list[str] = Field(default_factory=list, description="overrides for every descendant")
    fresh_head: bool = Field(False, description="descendants start with a fresh classifier (new classes)")
    inits: Optional[list[str]] = Field(None, description="default: every init of the recipe")


class Budgets(Section):
    aux: float = Field(gt=0, description="Aux-Net and every distilled plain ViT, in u")
    finetune: float = Field(gt=0, description="a descendant's fine-tuning, in u")
    aux_warmup: float = Field(0.0, ge=0, lt=1, description="fraction of the upstream budget spent warming up")


class Ablations(Section):
    seed: int = 0
    alpha: list[float] = Field(default_factory=list, description="other distillation alphas for the Aux-Net")
    aux_budget_u: list[float] = Field(default_factory=list, description="other Aux-Net budgets")
    lr: list[float] = Field(default_factory=list, description="fine-tuning lrs, for every init")
    lr_inits: Optional[list[str]] = Field(None, description="the inits the lr ablation covers (all if unset)")


class Smoke(Section):
    experiment: list[str] = Field(default_factory=list, description="overrides on this recipe")
    stages: list[str] = Field(default_factory=list, description="overrides on every stage run")


class ExperimentRecipe(PlanRecipe):
    output_dir: Path = Field(Path("runs/experiments/default"), description="runs and checkpoints (not committed)")
    results_dir: Path = Field(Path("results/default"), description="the experiment's numbers, report and plots")
    unit_images: int = Field(1000, gt=0, description="u: training images standing for one paper epoch")
    teacher: StageRef
    aux: StageRef
    finetune: StageRef
    settings: list[Setting] = Field(min_length=1)
    depths: Depths
    inits: dict[str, InitSpec]
    seeds: list[int] = Field(min_length=1)
    teacher_seed: int = 0
    budget_u: Budgets
    ablations: Ablations = Ablations()
    smoke: Smoke = Smoke()

    @model_validator(mode="after")
    def _check(self):
        names = [s.name for s in self.settings]
        for key, items in (("seeds", self.seeds), ("settings", names)):
            if len(set(items)) != len(items):
                raise ValueError(f"{key}: repeated entries in {items}")
        if self.depths != sorted(self.depths):
            raise ValueError(f"depths must be increasing, got {self.depths}")
        if "tleg" not in self.inits or self.inits["tleg"].start != "learngene":
            raise ValueError("inits must have tleg (start: learngene): every other init is compared with it")
        for s in self.settings:
            if s.upstream_from not in (None, *names[:names.index(s.name)]):
                raise ValueError(f"settings.{s.name}.upstream_from: {s.upstream_from!r} is not an earlier setting")
        named = {f"settings.{s.name}.inits": s.inits for s in self.settings}
        named["ablations.lr_inits"] = self.ablations.lr_inits
        for key, inits in named.items():
            unknown = set(inits or ()) - set(self.inits)
            if unknown:
                raise ValueError(f"{key}: unknown {sorted(unknown)}; known {sorted(self.inits)}")
        return self


def load(path: str | Path, overrides: list[str] = (), smoke: bool = False) -> ExperimentRecipe:
    pre = list((read_yaml(path, "experiment recipe").get("smoke") or {}).get("experiment", [])) if smoke else []
    return launch.load(ExperimentRecipe, path, overrides, pre)


class _Builder:
    def __init__(self, x: ExperimentRecipe, smoke: bool, ranks: int):
        self.x, self.extra = x, list(x.smoke.stages) if smoke else []
        self.ranks = ranks  # each job trains on these (launch.ranks_per_job)
        self.root, self.jobs = Path(x.output_dir).resolve(), []
        self.teachers: dict[str, Job] = {}

    def add(self, name: str, base, updates: dict, inputs: list[Input], labels: dict, images: float,
            warmup: float = 0.0) -> Job:
        probe = derive(base, updates, inputs)
        planned, fit = budget.budget_updates(images, probe, self.ranks, warmup)
        job = Job(name, derive(probe, fit, inputs), inputs, {**labels, "planned_images": planned})
        self.jobs.append(job)
        return job

    def teacher(self, s: Setting) -> Job:
        if s.name not in self.teachers:
            cfg = derive(self.x.teacher.load([*s.upstream, *self.extra]),
                         {"output_dir": self.root / s.name / "teacher", "seed": self.x.teacher_seed, "stage": "teacher"})
            self.teachers[s.name] = Job(f"{s.name}: teacher", cfg, labels={
                "kind": "teacher", "setting": s.name, "seed": self.x.teacher_seed,
                "planned_images": budget.stage_images(cfg, self.ranks)})
            self.jobs.append(self.teachers[s.name])
        return self.teachers[s.name]

    def distilled(self, s: Setting, seed: int, kind: str, depth: int, alpha: float | None = None,
                  budget_u: float | None = None, tag: str = "") -> Job:
        """An Aux-Net (kind aux) or a plain ViT (vit, pre) distilled from the setting's teacher."""
        x, t = self.x, self.teacher(s)
        from_teacher = [Input("distill.teacher.checkpoint", t.name, "weights")]
        updates = {"seed": seed, **launch.same_teacher(t.cfg), "model.depth": depth,
                   "output_dir": self.root / s.name / f"seed{seed}" / f"{kind}{tag}"}
        if kind != "aux":  # the same recipe, distillation and budget; only the model is a plain ViT
            updates.update({"stage": "finetune", "model.init": "scratch"})
        if alpha is not None:
            updates["distill.alpha"] = alpha
        u = budget_u or x.budget_u.aux
        return self.add(f"{s.name}/seed{seed}: {kind}{tag}", x.aux.load([*s.upstream, *self.extra]), updates,
                        from_teacher, {"kind": kind, "setting": s.name, "seed": seed, "depth": depth}, u * x.unit_images,
                        x.budget_u.aux_warmup)

    def descendant(self, s: Setting, seed: int, depth: int, init: str, sources: dict, ablation: str = "",
                   updates: dict | None = None) -> Job:
        x, spec = self.x, self.x.inits[init]
        model_init, source = STARTS[spec.start]
        job = sources[f"pre{depth}" if source == "pre" else source] if source else None
        inputs = [] if job is None else [Input("model.learngene" if source == "aux" else "model.pretrained", job.name,
                                               "learngene" if source == "aux" else "weights")]
        u = spec.budget_u or x.budget_u.finetune
        label = f"{init}{' ' + ablation if ablation else ''}"
        return self.add(f"{s.name}/seed{seed}: depth {depth} {label}", x.finetune.load([*s.downstream, *self.extra]),
                        {"seed": seed, "stage": "finetune", "model.depth": depth, "model.init": model_init,
                         "model.fresh_head": s.fresh_head, **(updates or {}),
                         "output_dir": self.root / s.name / f"seed{seed}" / f"d{depth}_{init}{_slug(ablation)}"},
                        inputs, {"kind": "des", "setting": s.name, "seed": seed, "depth": depth, "init": init,
                                 "start": spec.start, "ablation": ablation or None, "budget_u": u}, u * x.unit_images)


def _slug(ablation: str) -> str:
    return "" if not ablation else "_" + ablation.replace("=", "").replace(".", "p")


def build(x: ExperimentRecipe, smoke: bool = False, ranks: int = 1) -> list[Job]:
    """The plan; ranks: those each job trains on (launch.ranks_per_job), which budgets count."""
    b = _Builder(x, smoke, ranks)
    aux_depth = x.aux.load().model.depth
    if max(x.depths) > aux_depth:
        raise ConfigError(f"depths: truncated, heur_lg and the Aux-Net need depths <= the aux depth {aux_depth}, "
                          f"got {max(x.depths)}")
    upstream: dict[tuple[str, int], dict] = {}  # (setting, seed) -> its upstream jobs by role
    # Settings outermost: an interrupted experiment has whole settings done, every seed of
    # each, so each finished table can be read (and tested) on its own.
    for s in x.settings:
        for seed in x.seeds:
            if s.upstream_from is None:
                src = {"aux": b.distilled(s, seed, "aux", aux_depth), "vit": b.distilled(s, seed, "vit", aux_depth)}
                src.update({f"pre{d}": src["vit"] if d == aux_depth else b.distilled(s, seed, "pre", d, tag=f"_d{d}")
                            for d in x.depths})
                upstream[(s.name, seed)] = src
            src = upstream[(s.upstream_from or s.name, seed)]
            for depth in x.depths:
                for init in s.inits or x.inits:
                    b.descendant(s, seed, depth, init, src)
    _ablations(b, x.settings[0], aux_depth, upstream)
    return b.jobs


def _ablations(b: _Builder, s: Setting, aux_depth: int, upstream: dict[tuple[str, int], dict]) -> None:
    """One seed, the first setting (which trains its own upstream): the Aux-Net at other alphas
    and budgets (and TLEG from each), and every init at other fine-tuning lrs (the recipe's own
    lr is the main run)."""
    a, seed = b.x.ablations, b.x.ablations.seed
    if not (a.alpha or a.aux_budget_u or a.lr):
        return
    if seed not in b.x.seeds:
        raise ConfigError(f"ablations.seed {seed} is not one of seeds {b.x.seeds}")
    for what, values in (("alpha", a.alpha), ("aux_budget_u", a.aux_budget_u)):
        for v in values:
            tag = f"{what}={v:g}"
            aux = b.distilled(s, seed, "aux", aux_depth, tag=_slug(tag), **({"alpha": v} if what == "alpha"
                                                                             else {"budget_u": v}))
            aux.labels["ablation"] = tag
            for depth in b.x.depths:
                b.descendant(s, seed, depth, "tleg", {"aux": aux}, ablation=tag)
    own_lr, src = b.x.finetune.load().optim.lr, upstream[(s.name, seed)]
    for lr in a.lr:
        if own_lr is not None and abs(lr - own_lr) < 1e-12:
            continue
        for depth in b.x.depths:
            for init in a.lr_inits or s.inits or b.x.inits:
                b.descendant(s, seed, depth, init, src, ablation=f"lr={lr:g}",
                             updates={"optim.lr": lr})


def records(plan: list[Job], finished: list[dict]) -> list[dict]:
    """The generic records, checked against their budgets (a run that saw other than its planned
    images is an error, never a row: budgets are the point of the comparison), with
    `total_images`: a run's own plus its amortised share of the upstream job it starts from (the
    Aux-Net and the aux-depth ViT over the seed's |D| descendants of each init), except that a
    Pre-Fin descendant pays its depth's pre-training wholly, the aux-depth ViT included. The
    teacher is charged to no one."""
    by_name = {j.name: j for j in plan}
    n_depths = len({j.labels["depth"] for j in plan if j.labels["kind"] == "des"})
    out = []
    for r in finished:
        job = by_name[r["name"]]
        if r["images"] != job.labels["planned_images"]:
            raise ConfigError(f"{r['name']}: planned {job.labels['planned_images']} training images, the run saw "
                              f"{r['images']} ({r['run_dir']}); delete that run folder and rerun")
        share = 0.0
        for i in job.inputs if job.labels["kind"] == "des" else ():
            src = by_name[i.job].labels
            share += src["planned_images"] / (1 if job.labels["start"] == "prefin" else n_depths)
        out.append({**r, "total_images": r["images"] + share, "wall_time_s": r["time_s"]})
    return out
