"""The experiment's results file, results_dir/experiment.json: the pre-registration (written before
any reported seed runs, and checked at every later launch), the tuning's choices, per-cell numbers,
the primary endpoints and secondary comparisons (endpoints.py), the cost (cost.py), storage, the
ablations and every run record. Tables and plots are the plans' report (tleg_dist/plans/report.py)
with notes.py's Markdown; what the numbers say is written up by hand in docs/results.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

from tleg_dist.artifacts import run_folder
from tleg_dist.config import ConfigError
from tleg_dist.experiments import cost, endpoints
from tleg_dist.experiments.recipe import ExperimentRecipe
from tleg_dist.plans import report
from tleg_dist.plans.job import Job
from tleg_dist.utils.atomic import atomic_path
from tleg_dist.utils.errors import UserError
from tleg_dist.utils.jsonio import read_json

RESULTS = "experiment.json"
FORMAT, FORMAT_VERSION = "tleg-experiment-results", "4"  # "format": what --reuse-runs accepts


def records(plan: list[Job], finished: list[dict]) -> list[dict]:
    """The plans' records, checked against their budgets (a run that saw other than its planned
    images is an error, never a row: budgets are the point of the comparison), with `total_images`:
    a run's own plus its share of the upstream job it starts from (shared equally by the depths its
    init runs at for that setting and seed), except that a Pre-Fin descendant pays its depth's
    pre-training wholly. The teacher is charged to no one."""
    by_name = {j.name: j for j in plan}
    users: dict[tuple, int] = {}
    for j in plan:
        if j.labels["kind"] == "des":
            for i in j.inputs:
                users[(i.job, j.labels["setting"], j.labels["init"])] = users.get((i.job, j.labels["setting"],
                                                                                   j.labels["init"]), 0) + 1
    out = []
    for r in finished:
        job = by_name[r["name"]]
        if r["images"] != job.labels["planned_images"]:
            raise ConfigError(f"{r['name']}: planned {job.labels['planned_images']} training images, the run saw "
                              f"{r['images']} ({r['run_dir']}); delete that run folder and rerun")
        share = 0.0
        for i in job.inputs if job.labels["kind"] == "des" else ():
            n = 1 if job.labels["start"] == "prefin" else users[(i.job, job.labels["setting"], job.labels["init"])]
            share += by_name[i.job].labels["planned_images"] / n
        out.append({**r, "total_images": r["images"] + share})
    return out


def aggregate(records: list[dict]) -> list[dict]:
    """One cell per (setting, depth, init) of the reported descendants, over seeds."""
    out = []
    for (setting, depth, init), rs in report.cells(records).items():
        rs = sorted(rs, key=lambda r: r["seed"])
        mean, std = report.mean_std([r["top1"] for r in rs])
        out.append({"setting": setting, "depth": depth, "init": init, "top1_mean": mean, "top1_std": std,
                    "n_seeds": len(rs), "seeds": [r["seed"] for r in rs], "top1_per_seed": [r["top1"] for r in rs],
                    "train_images": rs[0]["images"], "total_images": rs[0]["total_images"],
                    "budget_u": rs[0]["budget_u"], "lr": rs[0]["lr"], "warmup": rs[0]["warmup"],
                    "params": rs[0]["params"]})
    return out


def _git_commit() -> str | None:
    r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or None if r.returncode == 0 else None


def preregister(x: ExperimentRecipe, recipe_path: Path) -> dict:
    """The endpoints as fixed before any reported seed runs: written into experiment.json by the
    first launch, and every later launch must plan the same ones (UserError otherwise)."""
    path = Path(x.results_dir) / RESULTS
    fixed = {"endpoints": x.endpoints.model_dump(), "tuning": x.tuning.model_dump(), "seeds": x.seeds,
             "settings": {k: v.model_dump() for k, v in x.settings.items()}}
    old = (read_json(path) or {}).get("preregistration") if path.is_file() else None
    if old is not None:
        drift = [k for k in fixed if json.dumps(old.get(k), sort_keys=True) != json.dumps(fixed[k], sort_keys=True)]
        if drift:
            raise UserError(f"{path}: the recipe's {', '.join(drift)} differ from those pre-registered on "
                            f"{old.get('written')}; a changed protocol needs a new results_dir")
        return old
    pre = {**fixed, "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "git_commit": _git_commit(),
           "recipe": str(recipe_path), "recipe_sha256": hashlib.sha256(Path(recipe_path).read_bytes()).hexdigest()}
    _save(path, {"format": FORMAT, "format_version": FORMAT_VERSION, "preregistration": pre})
    return pre


def write(x: ExperimentRecipe, plan: list[Job], records: list[dict], *, tuning: dict | None, timing: list[dict],
          smoke: bool, command: str, invocation_s: float | None) -> dict:
    """experiment.json; invocation_s: wall time of this training invocation (None for --report-only,
    which keeps the last training invocation's figures)."""
    path = Path(x.results_dir) / RESULTS
    old = read_json(path) or {}
    cells = aggregate(records)
    wall, cpu = (invocation_s, _cpu_time()) if invocation_s is not None else _last_times(old, command)
    wall_clock = cost.wall_clock(x, timing)
    result = {"format": FORMAT, "format_version": FORMAT_VERSION,
              # every planned run, the reported ones included (phase 2 is planned once tuning has finished)
              "complete": tuning is not None and len(records) == len(plan),
              "wall_clock_measured": bool(wall_clock and wall_clock["complete"]),
              "runs_finished": len(records), "runs_planned": len(plan), "smoke": smoke, "command": command,
              "host": f"{os.cpu_count()} CPU cores", "rebuilt": invocation_s is None, "cpu_time_s": cpu,
              "wall_time_s": {"sum_of_runs": sum(r["time_s"] or 0 for r in records), "this_invocation": wall},
              "preregistration": old.get("preregistration"),
              "tuning": None if tuning is None else tuning["table"],
              "records": cells, "endpoints": endpoints.primary(x, cells),
              "secondary": endpoints.secondary(cells, x.endpoints.alpha),
              "cost": {"planned": cost.planned(x, plan), "wall_clock": wall_clock, "timing_runs": timing,
                       "timing_reproduces": _reproduced(timing, records)},
              "storage": _storage(plan, x), "ablations": _ablations(records),
              "experiment": x.model_dump(mode="json"), "runs": records}
    _save(path, result)
    return result


def _reproduced(timing: list[dict], records: list[dict]) -> dict:
    """Do the timing reruns end with the reported runs' top-1 (same config, one thread each)? A rerun
    that differed would time another computation than the one reported."""
    key = lambda r: (r.get("setting"), r.get("init") or r["kind"], r.get("depth"), r["seed"])  # noqa: E731
    reported = {key({**r, "kind": "timing" if r["kind"] == "des" else r["kind"]}): r["top1"] for r in records}
    pairs = [(r["name"], r["top1"], reported[key(r)]) for r in timing if key(r) in reported]
    return {"compared": len(pairs), "equal": sum(a == b for _, a, b in pairs),
            "different": [{"name": n, "timing_top1": a, "reported_top1": b} for n, a, b in pairs if a != b]}


def _save(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, default=str))


def _ablations(records: list[dict]) -> list[dict]:
    """The one-seed ablations next to the main run of the same seed, depth and init."""
    main = {(*cell, r["seed"]): r["top1"] for cell, rs in report.cells(records).items() for r in rs}
    return [{"ablation": r["ablation"], "setting": r["setting"], "depth": r["depth"], "init": r["init"],
             "seed": r["seed"], "top1": r["top1"], "main_top1": main.get((r["setting"], r["depth"], r["init"],
                                                                          r["seed"]))}
            for r in records if r["kind"] == "des" and r.get("ablation")]


def read_runs(path: Path) -> list[dict]:
    """The run records of an earlier results file (launchers/experiment.py --reuse-runs). Checked by
    its "format", not its name: v2's summary.json is one too."""
    doc = read_json(path, UserError, what=f"--reuse-runs {path}")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not doc.get("runs"):
        raise UserError(f"--reuse-runs {path}: not an experiment results file with runs")
    return doc["runs"]


def _last_times(old: dict, command: str) -> tuple[float | None, float | None]:
    """(wall, cpu) of the training invocation that last wrote the results, if it ran `command`."""
    if old.get("command") != command:
        return None, None
    return old.get("wall_time_s", {}).get("this_invocation"), old.get("cpu_time_s")


def _cpu_time() -> float:
    import resource

    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def _storage(plan: list[Job], x: ExperimentRecipe) -> dict:
    """Parameters stored per comparator for the first setting's depths: from a learngene file when a
    run folder has one, else (a report rebuilt from records alone) from the planned Aux-Net's arch,
    the same arithmetic."""
    from tleg_dist.convert import storage
    from tleg_dist.convert.inspect import describe

    aux = [j for j in plan if j.labels.get("kind") == "aux" and not j.labels.get("ablation")]
    depths, paper = next(iter(x.settings.values())).depths, {"paper_default_depths": storage.paper_comparisons()}
    lg = next((run_folder.artifact(j.out, run_folder.LEARNGENE) for j in aux if run_folder.finished(j.out)), None)
    if lg is not None and Path(lg).is_file():
        return describe(lg, depths) | paper
    return {"source": "the planned Aux-Net's arch (no learngene file here)",
            **storage.figures(aux[0].cfg.model.arch(), aux[0].cfg.model.depth, depths)} | paper
