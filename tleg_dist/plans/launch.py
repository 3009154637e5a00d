"""What every plan (demo, sweep, experiment) shares: its recipe's common part (where it writes,
what each job gets, references to stage recipes), the launcher's executor flags, running the
plan, and the results it writes and prints."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from tleg_dist import cli, config as config_lib
from tleg_dist.config import RunConfig, Section, apply_overrides, read_yaml, validate
from tleg_dist.models.arch import check_depth
from tleg_dist.plans import report
from tleg_dist.plans.executors import EXECUTORS, Executor, ResourcesConfig, Slurm
from tleg_dist.plans.job import Job
from tleg_dist.plans.run import Outcome, execute


class StageRef(Section):
    recipe: Path = Field(description="a RunConfig YAML")
    overrides: list[str] = Field(default_factory=list, description="key.sub=value applied on top")

    def load(self, extra: list[str] = ()) -> RunConfig:
        # Inputs a plan binds (a learngene, a teacher) do not exist yet: checked when the job starts.
        return config_lib.load(self.recipe, [*self.overrides, *extra], check_paths=False)


def _distinct(depths: list[int]) -> list[int]:
    if len(set(depths)) != len(depths):
        raise PydanticCustomError("repeated", "repeated entries")  # shown as "depths: repeated entries (got [..])"
    return depths


# A plan's Des-Net depths: at least one, each a depth (models/arch.py's rule), none twice (a plan
# may add its own rules).
Depths = Annotated[list[Annotated[int, AfterValidator(check_depth)]], Field(min_length=1), AfterValidator(_distinct)]


def same_teacher(teacher: RunConfig) -> dict[str, object]:
    """Updates that make a stage build the model a teacher-stage job trained (its weights are bound
    as an Input): the timm name and its constructor arguments, which can change the architecture."""
    return {"distill.teacher.model": teacher.distill.teacher.model, "distill.teacher.kwargs": teacher.distill.teacher.kwargs}


class PlanRecipe(Section):
    output_dir: Path
    resources: ResourcesConfig = ResourcesConfig()


R = TypeVar("R", bound=PlanRecipe)


def load(cls: type[R], path: str | Path, overrides: list[str] = (), pre: list[str] = ()) -> R:
    """The recipe at `path` with `pre` (e.g. its own smoke overrides), then `overrides`, applied."""
    return validate(cls, apply_overrides(read_yaml(path, f"{cls.__name__} recipe"), [*pre, *overrides]), str(path))


def add_arguments(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--cluster", action="store_true",
                   help="run on Slurm through submitit: an array per stage, afterok between stages")
    p.add_argument("--executor", choices=sorted(EXECUTORS), default=default,
                   help=f"where jobs run without --cluster (default {default})")
    p.add_argument("--no-wait", dest="wait", action="store_false", help="with --cluster: submit and return")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between status checks")
    p.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")


def executor_class(args: argparse.Namespace) -> type[Executor]:
    return Slurm if args.cluster else EXECUTORS[args.executor]


def ranks_per_job(recipe: PlanRecipe, args: argparse.Namespace) -> int:
    """The ranks each job trains on: the ranks of this process's world where jobs run in it,
    else the tasks its executor starts per job (local processes, Slurm tasks)."""
    if executor_class(args).runs_in_submit:
        return int(os.environ.get("WORLD_SIZE", "1"))
    return recipe.resources.tasks_per_job


def run(plan: list[Job], recipe: PlanRecipe, args: argparse.Namespace, earlier: list[dict] = ()) -> Outcome:
    root = Path(recipe.output_dir).resolve()
    executor = executor_class(args)(recipe.resources, root)
    return execute(plan, executor, root, echo=lambda s: print(s, flush=True), wait=args.wait, poll_s=args.poll,
                   progress_every_s=args.progress_every, earlier=earlier)


def write_results(outcome: Outcome, out_dir: Path, title: str, **report_options) -> int:
    """results.{md,json,csv,png}, the table printed; the launcher's exit code.
    report_options: report.write's names, notes and plots."""
    if not outcome.records and outcome.ok:
        return cli.EXIT_OK  # nothing finished and nothing failed yet: a launch that did not wait (--no-wait)
    # Also when every job failed: the report then lists them, and no older report stays behind.
    paths = report.write(out_dir, outcome.records, title, outcome.failed, outcome.blocked, outcome.planned,
                         **report_options)
    if outcome.records:
        print(report.table(outcome.records).rstrip(), flush=True)
    print(f"[plan] {len(outcome.records)}/{outcome.planned} jobs finished; results: {paths['md']} "
          f"(+ .json .csv .png)", flush=True)
    if not outcome.ok:
        print(f"[plan] FAILED: {sorted(outcome.failed)}; not run: {outcome.blocked} (run the same command again "
              f"to retry them; finished jobs are reused)", flush=True)
    return cli.EXIT_OK if outcome.ok else cli.EXIT_JOBS_FAILED
