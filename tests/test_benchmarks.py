"""Every script in benchmarks/ runs in its --quick mode here, so that none breaks unseen (their
numbers depend on the machine and are not checked), and the loader benchmark's bookkeeping."""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _launch import ROOT, clean_env

BENCHMARKS = ROOT / "benchmarks"


def load(name: str):
    """benchmarks/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args: str, timeout: int = 600) -> dict:
    """benchmarks/<name>.py in its own process; the JSON object it prints last."""
    r = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), *args], cwd=ROOT, env=clean_env(),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_every_benchmark_has_a_quick_test():
    quick = {name[len("test_"):-len("_quick")] for name in globals() if name.startswith("test_")
             and name.endswith("_quick")}
    assert {p.stem for p in BENCHMARKS.glob("*.py")} == quick, "give the benchmark a --quick mode and a test here"


def test_aux_overhead_quick(capsys):
    threads = torch.get_num_threads()
    try:
        load("aux_overhead").main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    (r,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    assert (r["size"], r["depth"], r["batch"]) == ("cpu-64", 2, 4)
    assert r["aux_step_s"] > 0 and r["vit_step_s"] > 0
    assert r["ratio"] == pytest.approx(r["aux_step_s"] / r["vit_step_s"], rel=1e-2)


# numba's dispatcher finalizer raises a harmless KeyError when ffcv's compiled pipelines are freed.
@pytest.mark.ffcv
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_loader_throughput_quick(tmp_path):
    pytest.importorskip("ffcv")
    result = load("loader_throughput").main(["--quick", "--workdir", str(tmp_path)])
    small = result["cases"]["small"]
    assert small["images"] == 256 and small["ffcv_img_s"] > 0 and small["dataloader_img_s"] > 0
    gc.collect()  # frees ffcv's pipelines here, under this test's filter


def test_loader_throughput_gives_another_image_count_its_own_images_and_beton(tmp_path, monkeypatch):
    """What a case measures is the image count asked for (no loader runs here)."""
    pytest.importorskip("ffcv")
    bench = load("loader_throughput")
    written = []

    def write_split(images, beton, settings, meta):  # stands in for the ffcv writer: records what it was given
        written.append(len(images))
        beton.touch()

    monkeypatch.setattr(bench, "write_split", write_split)
    monkeypatch.setattr(bench, "ffcv_epochs", lambda beton, size, args: iter(lambda: beton, None))
    monkeypatch.setattr(bench, "dataloader_epochs", lambda paths, labels, size, args: iter(lambda: paths, None))
    monkeypatch.setattr(bench, "timed", lambda epoch: (7, 1.0, 1.0))
    args = argparse.Namespace(workdir=tmp_path, workers=1, rounds=1, n_small=0, large_size=32, large_mode="raw",
                              large_max_side=None)
    # A second run with another --n-large used the first run's folder: the older, larger tree of JPEGs
    # (reported as `images`) and the first run's .beton (what FFCV then read), whatever n was asked for.
    for n in (5, 3):
        args.n_large = n
        assert bench.run_case("imagenet_like", args)["images"] == n
    assert written == [5, 3]


def test_trainer_throughput_quick():
    """One worker process runs the real trainer, then the bare loop, for an Aux-Net and a Des-Net."""
    summary = load("trainer_throughput").main(["--quick"])
    assert [(r["model"], r["ranks"]) for r in summary["rows"]] == [("aux", 1), ("des", 1)]
    assert all(r["trainer_img_s"] > 0 and r["bare_img_s"] > 0 for r in summary["rows"])
    assert list(summary["aux_over_vit"]) == ["1rank-tiny-zero2-eager"]


@pytest.mark.slow
def test_sweep_concurrency_quick(tmp_path):
    """A learngene, then the same two-depth sweep with 2 slots and with 1 (local submitit jobs)."""
    result = run_script("sweep_concurrency", "--quick", "--out", str(tmp_path))
    assert result["depths"] == [2, 3] and result["same_results"], result


@pytest.mark.slow
def test_soak_quick(tmp_path):
    """A reference run, then one killed once each way and resumed; every check must pass."""
    result = run_script("soak", "--quick", "--out", str(tmp_path))
    assert result["passed"] and {k["mode"] for k in result["kills"]} == {"kill-rank", "kill-all", "kill-in-save",
                                                                          "preempt"}, result


def test_teacher_cache_quick():
    """The real trainer both ways, live teacher and cached logits, and the fill."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "teacher_cache.py"), "--quick"], cwd=ROOT,
                       env=clean_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "teacher_cache" and result["quick"] is True
    live, cached = result["images_per_s"]["live"], result["images_per_s"]["cached"]
    assert live > 0 and cached > 0 and result["ratio_per_round"] == [result["cached_over_live"]]
    assert result["cached_over_live"] == round(cached / live, 3)
    assert result["fill_rows"] == 256 and result["fill_s"] >= 0
