"""What a run folder (a trainer's output_dir) holds, and its completion marker.

    config.yaml      the resolved recipe, written when the run starts
    metrics.jsonl    one JSON line per logged step and evaluation
    checkpoints/     DeepSpeed tags (artifacts.checkpoints)
    summary.json     written last, by rank 0: the run's outcome and the artefacts it wrote

summary.json is the one completion marker: a run is finished when it exists with a finishing
status. Its "files" maps artefact names ("learngene", "model", "weights", ...) to paths, so
that consumers (the planner, the converter, reports) read paths from it instead of
hard-coding file names, and its "fingerprint" says which config produced it.
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
CHECKPOINTS = "checkpoints"
SUMMARY = "summary.json"
FINISHED = ("completed", "max_steps")  # "preempted" runs continue when resumed
ATTEMPTS = "attempts.jsonl"  # one line per attempt of a planned job (plans/job.py): time and outcome

# Artefact files inside a run folder, written by training/exports.py.
TEACHER_WEIGHTS, TEACHER_CONFIG = "teacher.safetensors", "teacher.json"
LEARNGENE_FILE, LEARNGENE_FOLDER = "learngene.safetensors", "learngene"
MODEL_FOLDER = "model"
LEGACY_WEIGHTS, LEGACY_CONFIG = "final.safetensors", "final.json"  # the pre-folder layout, deprecated


class MissingArtifact(UserError):
    pass


def fingerprint(cfg) -> str:
    """What makes two runs interchangeable: the resolved config, minus where it is written
    and how progress is shown."""
    dump = cfg.model_dump(mode="json")
    dump.pop("output_dir", None)
    dump["train"].pop("progress", None)
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
    if path is None:
        raise MissingArtifact(f"{Path(run_dir) / SUMMARY} lists no '{name}' artefact "
                              f"(it has {sorted(summary.get('files') or {})})")
    return Path(path)  # as the trainer wrote it: absolute when its output_dir was (plans make it so)
