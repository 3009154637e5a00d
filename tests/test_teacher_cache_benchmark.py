"""benchmarks/teacher_cache.py --quick runs the real trainer both ways and prints its one JSON object."""

import json
import subprocess
import sys

from _launch import ROOT, clean_env


def test_quick_mode_measures_both_paths_and_the_fill():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "teacher_cache.py"), "--quick"], cwd=ROOT,
                       env=clean_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "teacher_cache" and result["quick"] is True
    live, cached = result["images_per_s"]["live"], result["images_per_s"]["cached"]
    assert live > 0 and cached > 0 and result["ratio_per_round"] == [result["cached_over_live"]]
    assert result["cached_over_live"] == round(cached / live, 3)
    assert result["fill_rows"] == 256 and result["fill_s"] >= 0
