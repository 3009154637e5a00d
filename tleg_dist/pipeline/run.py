"""Run teacher -> learngene -> Des-Nets (TLEG init vs scratch), skipping finished stages."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tleg_dist import config as config_lib
from tleg_dist.pipeline.config import PipelineConfig, StageRef
from tleg_dist.pipeline.report import write_report
from tleg_dist.training.trainer import train

log = logging.getLogger("tleg_dist.pipeline")


def stage_config(ref: StageRef, output_dir: Path, seed: int, extra: list[str]) -> config_lib.RunConfig:
    return config_lib.load(ref.recipe, [*ref.overrides, f"output_dir={output_dir}", f"seed={seed}", *extra])


def finished(output_dir: Path) -> dict | None:
    try:
        summary = json.loads((output_dir / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return summary if summary.get("status") in ("completed", "max_steps") else None


def run_stage(name: str, cfg: config_lib.RunConfig) -> dict:
    done = finished(cfg.output_dir)
    if done is not None:
        print(f"[pipeline] {name}: already finished in {cfg.output_dir}, reusing it", flush=True)
        return done
    print(f"[pipeline] {name}: training -> {cfg.output_dir}", flush=True)
    summary = train(cfg, resume="auto")
    if summary["status"] == "preempted":
        raise SystemExit(f"[pipeline] {name} was preempted; rerun the same command to continue")
    return summary


def run_pipeline(p: PipelineConfig, smoke: bool = False) -> list[dict]:
    t0 = time.time()
    root = Path(p.output_dir)
    extra = list(p.smoke) if smoke else []
    teacher_cfg = stage_config(p.teacher, root / "teacher", p.seed, extra)
    run_stage("teacher", teacher_cfg)
    teacher_file = root / "teacher" / "teacher.safetensors"

    lg_cfg = stage_config(p.learngene, root / "learngene", p.seed,
                          [f"distill.teacher.model={teacher_cfg.distill.teacher.model}",
                           f"distill.teacher.checkpoint={teacher_file}", *extra])
    lg = run_stage("learngene", lg_cfg)
    lg_file = root / "learngene" / "learngene.safetensors"

    rows = []
    for depth in p.depths:
        for init in p.inits:
            out = root / "des" / f"depth{depth}_{init}"
            over = [f"model.depth={depth}", f"model.init={init}", *extra]
            if init == "learngene":
                over.append(f"model.learngene={lg_file}")
            s = run_stage(f"Des-Net depth {depth} ({init})", stage_config(p.finetune, out, p.seed, over))
            rows.append({"depth": depth, "init": init, "top1": s["val_top1"], "top5": s["val_top5"],
                         "params": s["params"], "images_seen": s["images_seen"],
                         "wall_time_s": round(s["wall_time_s"], 1)})
    report = write_report(root, rows, aux={"depth": lg_cfg.model.depth, "top1": lg["val_top1"],
                                           "images_seen": lg["images_seen"]})
    print(report, flush=True)
    print(f"[pipeline] done in {time.time() - t0:.0f} s; results in {root}/results.md, plot {root}/results.png",
          flush=True)
    return rows
