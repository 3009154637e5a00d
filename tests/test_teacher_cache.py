"""The teacher-logit cache (distill.teacher.cache, training/teacher_cache.py).

Real trainer runs (tiny Aux-Net, synthetic images, a resnet10t teacher from a file): the cached path
logs the same loss as the live teacher at every step, on 1 and 2 ranks, and a cached run stopped
and resumed ends with the weights of an uninterrupted one. Equality is exact: on the CPU the
teacher's logits for an image do not depend on the other images in its batch (the fill uses the
training micro-batch's size, so each batch has the same shape as in training). Fills in child
processes: one killed mid-way is never read, two at once end up reading one cache.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from _launch import ROOT, TINY, clean_env, run_train, weights_equal
from safetensors.torch import save_file

from tleg_dist import config as config_lib
from tleg_dist.artifacts import run_folder
from tleg_dist.config import ConfigError
from tleg_dist.data import build_data
from tleg_dist.training import teacher_cache
from tleg_dist.training.distributed import DistInfo

CPU = DistInfo(0, 1, 0, torch.device("cpu"))
COMMON = ["train.epochs=2", "train.log_every_steps=1", "train.progress=false", "data.synthetic_size=256",
          "model.drop_path_rate=0.1", "checkpoint.every_steps=3", "distill.type=soft", "distill.tau=2.0"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    torch.manual_seed(1)
    save_file(timm.create_model("resnet10t", num_classes=10, in_chans=1).state_dict(), str(path))
    return path


def args(out: Path, teacher: Path, *extra: str) -> list[str]:
    return ["--config", str(TINY), f"output_dir={out}", *COMMON, f"distill.teacher.checkpoint={teacher}", *extra]


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]


def published(cache_dir: Path) -> list[Path]:
    return sorted(d for d in cache_dir.iterdir() if not d.name.startswith(teacher_cache.PARTIAL))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, teacher):
    """An uninterrupted live run and an uninterrupted cached run filling a shared cache folder."""
    tmp = tmp_path_factory.mktemp("cache_runs")
    run_train(args(tmp / "live", teacher))
    r = run_train(args(tmp / "cached", teacher, "distill.teacher.cache=true", f"distill.teacher.cache_dir={tmp / 'shared'}"))
    assert "teacher logits: 256 rows filled" in r.stderr, r.stderr[-3000:]
    return tmp


@pytest.mark.slow
def test_cached_teacher_gives_the_live_losses_step_for_step(runs):
    live, cached = train_losses(runs / "live"), train_losses(runs / "cached")
    assert len(live) == 16 and cached == live
    assert weights_equal(runs / "live" / "learngene" / "learngene.safetensors", runs / "cached" / "learngene" / "learngene.safetensors")
    assert not (runs / "live" / run_folder.TEACHER_LOGITS).exists()


@pytest.mark.slow
def test_cached_run_resumed_ends_like_an_uninterrupted_one(runs, teacher):
    parts = runs / "parts"
    shared = ["distill.teacher.cache=true", f"distill.teacher.cache_dir={runs / 'shared'}"]
    r = run_train(args(parts, teacher, *shared, "train.max_steps=5"))  # stops mid-epoch
    assert "teacher logits: reusing" in r.stderr, r.stderr[-3000:]  # the shared folder: same teacher, same data
    run_train(args(parts, teacher, *shared) + ["--resume", "auto"])
    assert train_losses(parts) == train_losses(runs / "cached")
    assert weights_equal(runs / "cached" / "learngene" / "learngene.safetensors", parts / "learngene" / "learngene.safetensors")
    assert len(published(runs / "shared")) == 1


@pytest.mark.slow
def test_two_ranks_fill_their_shares_and_match_the_live_teacher(tmp_path, teacher):
    run_train(args(tmp_path / "live", teacher), nproc=2)
    run_train(args(tmp_path / "cached", teacher, "distill.teacher.cache=true"), nproc=2)
    assert train_losses(tmp_path / "cached") == train_losses(tmp_path / "live")
    [folder] = published(tmp_path / "cached" / run_folder.TEACHER_LOGITS)  # the default: in the run folder
    assert json.loads((folder / teacher_cache.COMPLETE).read_text())["ranks"] == 2
    assert not np.any(np.load(folder / teacher_cache.LOGITS) == 0)  # both halves were written


# --- fills in child processes --------------------------------------------------------------------

CHILD = """
import logging, os, signal, sys, time
from pathlib import Path
import torch
from tleg_dist import config
from tleg_dist.data import build_data
from tleg_dist.training import teacher_cache
from tleg_dist.training.distributed import DistInfo

logging.basicConfig(level=logging.INFO)
cfg = config.load(sys.argv[1], sys.argv[2:])
data = build_data(cfg.data, cfg.model.arch(), rank=0, world_size=1, seed=0)
mode, build = os.environ["FILL"], teacher_cache.build_teacher

def hooked(*a, **k):
    t, calls = build(*a, **k), []
    def hook(module, inputs, output):
        calls.append(1)
        if mode == "die" and len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # as a node dying mid-fill
        if mode == "race" and len(calls) == 1:  # wait until the other job is filling too
            Path(os.environ["MEET"], str(os.getpid())).touch()
            while len(os.listdir(os.environ["MEET"])) < 2:
                time.sleep(0.05)
    t.register_forward_hook(hook)
    return t

teacher_cache.build_teacher = hooked
print(teacher_cache.open_or_fill(cfg, data, DistInfo(0, 1, 0, torch.device("cpu")), Path(".")).folder)
"""


def cache_cfg(teacher: Path, cache_dir: Path) -> list[str]:
    return [str(TINY), *COMMON, f"distill.teacher.checkpoint={teacher}", "distill.teacher.cache=true",
            f"distill.teacher.cache_dir={cache_dir}"]


def child(teacher: Path, cache_dir: Path, mode: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, *cache_cfg(teacher, cache_dir)], cwd=ROOT,
                            env=clean_env(FILL=mode, PYTHONPATH=str(ROOT), **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def reference(teacher: Path, cache_dir: Path) -> np.ndarray:
    """The rows as this process fills them."""
    cfg = config_lib.load(TINY, cache_cfg(teacher, cache_dir)[1:])
    data = build_data(cfg.data, cfg.model.arch(), rank=0, world_size=1, seed=0)
    return np.asarray(teacher_cache.open_or_fill(cfg, data, CPU, Path(".")).table)


def test_a_killed_fill_is_never_used(tmp_path, teacher):
    p = child(teacher, tmp_path / "cache", "die")
    p.communicate(timeout=300)
    assert p.returncode == -9
    [partial] = list((tmp_path / "cache").iterdir())
    assert partial.name.startswith(teacher_cache.PARTIAL) and not (partial / teacher_cache.COMPLETE).exists()
    table = reference(teacher, tmp_path / "cache")  # fills anew, beside the partial folder
    assert not np.any(table == 0) and np.array_equal(table, reference(teacher, tmp_path / "other"))
    assert len(published(tmp_path / "cache")) == 1 and partial.exists()


def test_two_jobs_filling_one_key_at_once_read_one_cache(tmp_path, teacher):
    (tmp_path / "meet").mkdir()
    jobs = [child(teacher, tmp_path / "cache", "race", MEET=str(tmp_path / "meet")) for _ in range(2)]
    outs = [j.communicate(timeout=300) for j in jobs]
    assert [j.returncode for j in jobs] == [0, 0], outs
    folders = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(folders) == 1 and sum("published" in err and "first" in err for _, err in outs) == 1, outs
    assert list((tmp_path / "cache").iterdir()) == [Path(folders.pop())]  # the loser dropped its copy
    assert np.array_equal(reference(teacher, tmp_path / "cache"), reference(teacher, tmp_path / "other"))


# --- what the key and the recipe allow ------------------------------------------------------------

def test_the_key_changes_with_the_teacher_and_the_data(tmp_path, teacher):
    def key(*overrides):
        cfg = config_lib.load(TINY, [*COMMON, f"distill.teacher.checkpoint={teacher}", *overrides])
        return teacher_cache.key_of(teacher_cache.describe(cfg, build_data(cfg.data, cfg.model.arch(), rank=0,
                                                                           world_size=1, seed=0)))

    other = tmp_path / "other.safetensors"
    save_file(timm.create_model("resnet10t", num_classes=10, in_chans=1).state_dict(), str(other))
    base = key()
    assert key("seed=3", "output_dir=elsewhere", "distill.tau=4") == base  # nothing the teacher sees
    assert len({base, key(f"distill.teacher.checkpoint={other}"), key("data.synthetic_size=128"),
                key("distill.teacher.kwargs={drop_rate: 0.1}")}) == 4


@pytest.mark.parametrize("overrides, words", [
    (["data.aug.hflip=0.5"], "distill.teacher.cache needs the same training input every epoch, but data.aug.hflip "
                             "changes it: turn data.aug.hflip off or set distill.teacher.cache=false"),
    (["data.aug.mixup=0.8"], "but data.aug.mixup changes it"),
    (["data.format=imagefolder"], "distill.teacher.cache: data.format=imagefolder reads its training images from "
                                  "files every epoch"),
    (["data.format=ffcv"], "distill.teacher.cache: data.format=ffcv"),
])
def test_recipes_whose_images_change_between_epochs_are_refused(overrides, words):
    with pytest.raises(ConfigError) as e:
        config_lib.load(TINY, ["distill.type=soft", "distill.teacher.cache=true", *overrides], check_paths=False)
    assert words in str(e.value) and len(str(e.value).splitlines()) == 2, e.value  # "invalid config" + the reason


def test_cache_is_ignored_without_distillation():
    cfg = config_lib.load(TINY, ["distill.type=none", "distill.teacher.cache=true", "data.aug.hflip=0.5"])
    assert cfg.distill.teacher.cache


def test_a_source_without_a_fingerprint_is_named(teacher):
    cfg = config_lib.load(TINY, [*COMMON, f"distill.teacher.checkpoint={teacher}", "distill.teacher.cache=true"])
    data = build_data(cfg.data, cfg.model.arch(), rank=0, world_size=1, seed=0)
    data.train_fingerprint = None
    with pytest.raises(teacher_cache.TeacherCacheError, match="^distill.teacher.cache: data.format=synthetic cannot "
                                                             "identify its training images"):
        teacher_cache.describe(cfg, data)


def test_a_published_table_of_the_wrong_shape_is_refused(tmp_path):
    np.save(tmp_path / teacher_cache.LOGITS, np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(teacher_cache.TeacherCacheError, match=r"float32 \(4, 3\), expected float32 \(5, 3\); delete"):
        teacher_cache.CachedLogits(tmp_path, 5, 3)
