"""What a run folder (a trainer's output_dir) holds, and its completion marker.

    config.yaml      the resolved recipe, written when the run starts
    metrics.jsonl    one JSON line per logged step and evaluation (and tb/: the same as TensorBoard scalars)
    checkpoints/     DeepSpeed tags (artifacts.checkpoints)
    teacher.safetensors | learngene/ | model/    what the stage exports (artifacts.export)
    summary.json     written last, by rank 0: the run's outcome and the artefacts it wrote

summary.json is the one completion marker: a run is finished when it exists with a finishing
status. Its "files" maps artefact keys to paths, so that consumers (the planner, the converter,
reports) read paths from it instead of hard-coding file names, and its "fingerprint" says
which config produced it. What each stage lists:

    teacher     {"weights": RUN/teacher.safetensors}
    learngene   {"learngene": RUN/learngene/learngene.safetensors, "folder": RUN/learngene}
    finetune    {"model": RUN/model, "weights": RUN/model/model.safetensors}

This module owns every name inside a run folder, every artefact key and every status:
other modules import them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tleg_dist.utils.atomic import atomic_path
from tleg_dist.utils.errors import UserError
from tleg_dist.utils.jsonio import read_json

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
TB = "tb"  # TensorBoard event files
CHECKPOINTS = "checkpoints"
SUMMARY = "summary.json"
ATTEMPTS = "attempts.jsonl"  # one line per attempt of a planned job (plans/job.py): time and outcome

# Statuses in summary.json; a preempted run continues when resumed.
COMPLETED, MAX_STEPS, PREEMPTED = "completed", "max_steps", "preempted"
FINISHED = (COMPLETED, MAX_STEPS)

# What a stage exports (artifacts/export.py writes them), and the keys summary.json lists them under.
TEACHER_WEIGHTS = "teacher.safetensors"
LEARNGENE_FOLDER = "learngene"
MODEL_FOLDER = "model"
TEACHER_LOGITS = "teacher_logits"  # the teacher-logit cache, unless distill.teacher.cache_dir names another
WEIGHTS, LEARNGENE, MODEL, FOLDER = "weights", "learngene", "model", "folder"


class MissingArtifact(UserError):
    pass


def fingerprint(cfg) -> str:
    """What makes two runs interchangeable: the resolved config, minus where it is written, when it
    saves checkpoints, where its teacher's cached logits are kept (the same logits wherever they
    are) and how progress is shown: none of them changes what the run computes."""
    dump = cfg.model_dump(mode="json")
    dump.pop("output_dir", None)
    dump.pop("checkpoint", None)
    dump["train"].pop("progress", None)
    dump["distill"]["teacher"].pop("cache_dir", None)
    return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:16]


def write_summary(run_dir: str | Path, summary: dict) -> None:
    with atomic_path(Path(run_dir) / SUMMARY) as tmp:
        tmp.write_text(json.dumps(summary, indent=1, default=str))


def read_summary(run_dir: str | Path) -> dict | None:
    summary = read_json(Path(run_dir) / SUMMARY)  # None while missing or unreadable
    return summary if isinstance(summary, dict) else None


def finished(run_dir: str | Path) -> dict | None:
    """The run's summary when it finished; None while it is missing, running or preempted."""
    summary = read_summary(run_dir)
    return summary if summary is not None and summary.get("status") in FINISHED else None


def artifact(run_dir: str | Path, name: str) -> Path:
    """The path of artefact `name` that a finished run wrote, as its summary.json says."""
    summary = finished(run_dir)
    if summary is None:
        raise MissingArtifact(f"{run_dir} has not finished (no {SUMMARY} with status {'/'.join(FINISHED)})")
    path = (summary.get("files") or {}).get(name)
    if path is not None and _old_layout(summary, name, path):
        model = Path(run_dir) / MODEL_FOLDER
        how = (f"load its model folder {model}" if model.is_dir() else
               f"convert the run: python -m tleg_dist.convert export {run_dir} --out {model}")
        raise MissingArtifact(f"{Path(run_dir) / SUMMARY} lists '{name}' as {Path(path).name}, the layout before "
                              f"model folders; {how}")
    if path is None:
        raise MissingArtifact(f"{Path(run_dir) / SUMMARY} lists no '{name}' artefact "
                              f"(it has {sorted(summary.get('files') or {})})")
    return Path(path)  # as the trainer wrote it: absolute when its output_dir was (plans make it so)


def _old_layout(summary: dict, name: str, path: str) -> bool:
    """A fine-tune run's weights are RUN/model/model.safetensors; older runs listed a file beside RUN/model."""
    return summary.get("stage") == "finetune" and name == WEIGHTS and Path(path).parent.name != MODEL_FOLDER
