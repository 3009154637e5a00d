"""The README's first command, on a tiny budget: teacher -> learngene -> Des-Nets -> table + plot."""

import json
import subprocess
import sys

import pytest

from _launch import ROOT, clean_env


@pytest.mark.slow
def test_demo_pipeline_smoke(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "tleg_dist.demo", "--smoke", f"output_dir={out}", "depths=[1,2]"]
    r = subprocess.run(cmd, cwd=ROOT, env=clean_env(OMP_NUM_THREADS="2"), capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-5000:]
    results = json.loads((out / "results.json").read_text())
    assert {(d["depth"], d["init"]) for d in results["des"]} == {(1, "learngene"), (1, "scratch"),
                                                                 (2, "learngene"), (2, "scratch")}
    for row in results["des"]:
        assert 0 <= row["top1"] <= 100 and row["params"] > 0
    assert (out / "results.png").stat().st_size > 1000
    assert "| depth |" in (out / "results.md").read_text()
    # The table is printed, and re-running reuses every finished stage.
    assert "top-1 learngene" in r.stdout
    again = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert again.stdout.count("reusing it") == 6
