"""benchmarks/loader_throughput.py: what a case measures is the image count asked for (no loader runs here)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("ffcv")


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "loader_throughput.py"
    spec = importlib.util.spec_from_file_location("loader_throughput", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_another_image_count_gets_its_own_images_and_beton(tmp_path, monkeypatch):
    bench = _bench()
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
