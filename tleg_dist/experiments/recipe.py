"""The experiment's recipe (configs/experiments/*.yaml), validated when loaded: settings, inits,
budgets in units u of `unit_images` training images, the tuning grid, the pre-registered
endpoints and what the wall-clock cost is measured on. How it becomes jobs: plan.py."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from tleg_dist.config import Section, read_yaml
from tleg_dist.plans import launch
from tleg_dist.plans.launch import Depths, PlanRecipe, StageRef

Start = Literal["learngene", "scratch", "truncated", "heur_lg", "heur_lg_paper", "prefin"]


class InitSpec(Section):
    start: Start
    budget_u: Optional[float] = Field(None, gt=0, description="fine-tuning budget (default: the setting's)")


class RunGroup(Section):
    """Inits that run at these seeds and depths (default: every reported seed, the setting's depths)."""

    inits: list[str] = Field(min_length=1)
    seeds: Optional[list[int]] = None
    depths: Optional[Depths] = None


class Setting(Section):
    description: str = ""
    upstream: list[str] = Field(default_factory=list, description="overrides for teacher, aux and ViT pretraining")
    upstream_from: Optional[str] = Field(None, description="reuse this (earlier) setting's upstream jobs instead")
    downstream: list[str] = Field(default_factory=list, description="overrides for every descendant")
    fresh_head: bool = Field(False, description="descendants start with a fresh classifier (new classes)")
    finetune_u: Optional[float] = Field(None, gt=0, description="default budget of a descendant (budget_u.finetune)")
    depths: Depths
    runs: dict[str, RunGroup] = Field(min_length=1)

    def groups(self, seeds: list[int]) -> list[tuple[str, list[int], list[int]]]:
        """(init, seeds, depths) for every init this setting reports."""
        return [(i, g.seeds or seeds, g.depths or self.depths) for g in self.runs.values() for i in g.inits]

    def inits(self) -> list[str]:
        return list(dict.fromkeys(i for g in self.runs.values() for i in g.inits))


class Budgets(Section):
    aux: float = Field(gt=0, description="Aux-Net and every distilled plain ViT, in u")
    finetune: float = Field(gt=0, description="a descendant's fine-tuning, in u")
    aux_warmup: float = Field(0.0, ge=0, lt=1, description="fraction of the upstream budget spent warming up")


class Grid(Section):
    lr: list[float] = Field(min_length=1)
    warmup: list[float] = Field([0.0], min_length=1, description="fractions of the budget")


class Tuning(Section):
    """Candidates per init and budget, judged on the validation split at `seed` (never reported)."""

    seed: int
    depths: Depths
    scratch: Grid
    pretrained: Grid = Field(description="every init that does not start from random")

    def grid(self, start: str) -> Grid:
        return self.scratch if start == "scratch" else self.pretrained


class Endpoint(Section):
    name: str
    setting: str
    comparator: str
    test: Literal["superiority", "equivalence"]
    margin: Optional[float] = Field(None, gt=0, description="equivalence: ± this many top-1 points")
    family: Optional[str] = Field(None, description="endpoints sharing a family are Holm-adjusted together")


class Endpoints(Section):
    alpha: float = Field(0.05, gt=0, lt=1)
    primary: list[Endpoint] = Field(min_length=1)


class Timing(Section):
    seed: int
    inits: list[str] = Field(min_length=1)


class Cost(Section):
    setting: str
    reference: str = Field(description="the paper's comparator, e.g. scratch_100u")
    timing: Timing


class Ablations(Section):
    """One seed of the first setting: the Aux-Net at other distillation alphas or budgets, and
    TLEG descendants from each (fine-tuned with TLEG's tuned values)."""

    seed: int = 0
    alpha: list[float] = Field(default_factory=list)
    aux_budget_u: list[float] = Field(default_factory=list)


class Smoke(Section):
    experiment: list[str] = Field(default_factory=list, description="overrides on this recipe")
    stages: list[str] = Field(default_factory=list, description="overrides on every stage run")


class ExperimentRecipe(PlanRecipe):
    output_dir: Path = Field(Path("runs/experiments/default"), description="runs and checkpoints (not committed)")
    results_dir: Path = Field(Path("results/default"), description="experiment.json, results.*, plots")
    unit_images: int = Field(1000, gt=0, description="u: training images standing for one paper epoch")
    teacher: StageRef
    aux: StageRef
    finetune: StageRef
    settings: dict[str, Setting] = Field(min_length=1)
    inits: dict[str, InitSpec]
    seeds: list[int] = Field(min_length=1, description="the reported seeds")
    teacher_seed: int = 0
    budget_u: Budgets
    tuning: Tuning
    endpoints: Endpoints
    cost: Cost
    ablations: Ablations = Ablations()
    smoke: Smoke = Smoke()

    @model_validator(mode="after")
    def _check(self):
        names = list(self.settings)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: repeated entries in {self.seeds}")
        if self.tuning.seed in self.seeds:
            raise ValueError(f"tuning.seed {self.tuning.seed} is a reported seed: tuning must not see a reported run")
        if "tleg" not in self.inits or self.inits["tleg"].start != "learngene":
            raise ValueError("inits must have tleg (start: learngene): every other init is compared with it")
        for name, s in self.settings.items():
            if s.upstream_from not in (None, *names[:names.index(name)]) or s.upstream_from == name:
                raise ValueError(f"settings.{name}.upstream_from: {s.upstream_from!r} is not an earlier setting")
            for key, g in s.runs.items():
                _known(f"settings.{name}.runs.{key}.inits", g.inits, self.inits)
                if not set(g.seeds or ()) <= set(self.seeds):
                    raise ValueError(f"settings.{name}.runs.{key}.seeds: {g.seeds} are not all reported seeds")
        for e in self.endpoints.primary:
            self._check_pair(f"endpoints {e.name}", e.setting, e.comparator)
            if e.test == "equivalence" and e.margin is None:
                raise ValueError(f"endpoints {e.name}: an equivalence test needs a margin")
        self._check_pair("cost", self.cost.setting, self.cost.reference)
        _known("cost.timing.inits", self.cost.timing.inits, self.settings[self.cost.setting].inits())
        return self

    def _check_pair(self, where: str, setting: str, comparator: str) -> None:
        if setting not in self.settings:
            raise ValueError(f"{where}: unknown setting {setting!r}; known {list(self.settings)}")
        _known(f"{where}: comparator", [comparator, "tleg"], self.settings[setting].inits())

    def budget(self, setting: str, init: str) -> float:
        """A descendant's fine-tuning budget in u."""
        return self.inits[init].budget_u or self.settings[setting].finetune_u or self.budget_u.finetune


def _known(where: str, names: list[str], known) -> None:
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown {unknown}; known {sorted(known)}")


def load(path: str | Path, overrides: list[str] = (), smoke: bool = False) -> ExperimentRecipe:
    pre = list((read_yaml(path, "experiment recipe").get("smoke") or {}).get("experiment", [])) if smoke else []
    return launch.load(ExperimentRecipe, path, overrides, pre)
