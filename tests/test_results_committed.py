"""The committed v3 results (results/fmnist_v3/experiment.json) against the code and recipe here:
the protocol they pre-registered is the recipe's, and every verdict recomputes from their own
per-seed records. An edit to the recipe, the statistics or the file that changes a verdict fails."""

from __future__ import annotations

import json
import shutil

import pytest

from _experiment import RECIPE
from _launch import ROOT
from tleg_dist.experiments import endpoints, recipe, results

DOC = json.loads((ROOT / "results" / "fmnist_v3" / results.RESULTS).read_text())


def _close(got, want):
    if isinstance(want, float):
        return got == pytest.approx(want, rel=1e-9, abs=1e-12)
    if isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(_close(g, w) for g, w in zip(got, want))
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_close(got[k], want[k]) for k in want)
    return got == want


def test_the_results_are_complete_and_preregistered_by_this_recipe(tmp_path):
    assert DOC["complete"] and not DOC["smoke"] and DOC["runs_finished"] == DOC["runs_planned"]
    # the launcher's own check: it raises if the recipe plans other endpoints, tuning, seeds or settings
    shutil.copy(ROOT / "results" / "fmnist_v3" / results.RESULTS, tmp_path / results.RESULTS)
    x = recipe.load(RECIPE, [f"results_dir={tmp_path}"])
    assert results.preregister(x, RECIPE) == DOC["preregistration"]


def test_every_verdict_recomputes_from_the_records():
    x = recipe.load(RECIPE)
    cells = DOC["records"]
    for got, want in zip(endpoints.primary(x, cells), DOC["endpoints"], strict=True):
        assert _close(got, want), want["name"]
    for got, want in zip(endpoints.secondary(cells, x.endpoints.alpha), DOC["secondary"], strict=True):
        assert _close(got, want), (want["setting"], want["depth"], want["vs"])


def test_each_cell_is_its_reported_runs():
    runs = {(r["setting"], r["depth"], r["init"], r["seed"]): r["top1"] for r in DOC["runs"] if r["kind"] == "des"}
    for c in DOC["records"]:
        for seed, top1 in zip(c["seeds"], c["top1_per_seed"], strict=True):
            assert runs[(c["setting"], c["depth"], c["init"], seed)] == top1
