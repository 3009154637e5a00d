"""What does the teacher-logit cache buy? Aux-Net stage images/s with the cache over the live teacher.

The experiment's Aux-Net recipe (configs/experiments/v3_aux.yaml: an 8-layer cpu-64 Aux-Net,
patch 7, distilled from a resnet10t teacher on Fashion-MNIST, batch 64) trains twice per round in
this process, once with distill.teacher.cache=false and once with true, the order swapped every
round so that a machine shared with other work slows both alike. Each run's figure is the median of the images/s the trainer logs itself,
after the first log interval (warm-up); `cached_over_live` is the median over rounds of the ratio
within a round (the two runs of a round are back to back, so a load that drifts cancels better). The teacher's weights are random (the speed does not depend on
them). The cache's one-off cost, its fill, is reported on its own line.

    python benchmarks/teacher_cache.py             # 3 rounds of 40 steps of 64 images per path
    python benchmarks/teacher_cache.py --quick     # seconds: a tiny Aux-Net on synthetic images

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RECIPE = ROOT / "configs" / "experiments" / "v3_aux.yaml"
QUICK_RECIPE = ROOT / "configs" / "cpu" / "tiny_learngene.yaml"
INTERVALS = 4  # log intervals per run; the first is warm-up


def overrides(quick: bool, teacher: Path, out: Path, cached: bool, cache_dir: Path) -> list[str]:
    batch, every = (32, 2) if quick else (64, 10)
    steps = every * INTERVALS
    data = ["data.synthetic_size=256"] if quick else [f"data.train_limit={batch * steps}", "data.val_limit=500"]
    return [f"output_dir={out}", f"data.batch_size={batch}", *data, "train.epochs=1", f"train.max_steps={steps}",
            f"train.log_every_steps={every}", "train.progress=false", "checkpoint.every_steps=100000",
            "distill.type=soft", f"distill.teacher.checkpoint={teacher}",
            f"distill.teacher.cache={str(cached).lower()}", f"distill.teacher.cache_dir={cache_dir}"]


def save_teacher(cfg, path: Path) -> None:
    """A random teacher of the recipe's shape."""
    from safetensors.torch import save_file

    from tleg_dist.teacher import create_teacher_model

    model = create_teacher_model(cfg.distill.teacher, cfg.model.num_classes, cfg.model.in_chans)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def images_per_s(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return statistics.median([r["images_per_s"] for r in rows if r["kind"] == "train"][1:])


def fill_record(cache_dir: Path) -> dict:
    """The published cache's completion marker: rows, fill_s, ranks."""
    from tleg_dist.training.teacher_cache import COMPLETE

    [marker] = cache_dir.glob(f"*/{COMPLETE}")
    return json.loads(marker.read_text())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a tiny Aux-Net on synthetic images, one round (a smoke test)")
    p.add_argument("--rounds", type=int, default=None, help="live/cached pairs (default 3; 1 with --quick)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    import torch

    from tleg_dist import config as config_lib
    from tleg_dist.training.trainer import train

    recipe, rounds = (QUICK_RECIPE if args.quick else RECIPE), args.rounds or (1 if args.quick else 3)
    measured = {"live": [], "cached": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp, teacher = Path(tmp), Path(tmp) / "teacher.safetensors"
        save_teacher(config_lib.load(recipe, ["distill.type=soft"], check_paths=False), teacher)
        for r in range(rounds):
            for case in ("live", "cached") if r % 2 == 0 else ("cached", "live"):
                out = tmp / f"{case}{r}"
                train(config_lib.load(recipe, overrides(args.quick, teacher, out, case == "cached", tmp / "cache")))
                measured[case].append(round(images_per_s(out), 1))
        fill = fill_record(tmp / "cache")  # the first cached run filled it, the others reused it
        cfg = config_lib.load(recipe, overrides(args.quick, teacher, tmp, True, tmp / "cache"))
    live, cached = statistics.median(measured["live"]), statistics.median(measured["cached"])
    ratios = [round(c / v, 3) for c, v in zip(measured["cached"], measured["live"])]
    summary = {
        "benchmark": "teacher_cache", "recipe": str(recipe.relative_to(ROOT)), "quick": args.quick,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else
        f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "omp_threads": os.environ["OMP_NUM_THREADS"], "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "batch": cfg.data.batch_size, "steps_per_run": cfg.train.max_steps,
        "images_per_s": {"live": live, "cached": cached}, "rounds": measured,
        "cached_over_live": statistics.median(ratios), "ratio_per_round": ratios,
        "fill_s": round(fill["fill_s"], 2), "fill_rows": fill["rows"],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
