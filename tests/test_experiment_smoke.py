"""The experiment (issue 6): budget arithmetic, verdict rules, the plan of the committed
recipe, fresh heads for transfer, and the whole pipeline end to end at the smoke budget."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
import subprocess
import sys

import pytest
import torch

from _launch import ROOT, clean_env
from tleg_dist import config as config_lib
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.config import ConfigError
from tleg_dist.experiments import budget, summary
from tleg_dist.plans import experiment as xconfig
from tleg_dist.plans.experiment import build as build_plan

RECIPE = ROOT / "configs" / "experiments" / "fmnist.yaml"


# ---- budget arithmetic -----------------------------------------------------------------

def test_aux_share_modes():
    assert budget.aux_share(8000, 2, 8, [1, 2, 4, 8], "depth_share") == 2000
    assert budget.aux_share(8000, 8, 8, [1, 2, 4, 8], "depth_share") == 8000  # aux-depth pays all of A
    assert budget.aux_share(8000, 2, 8, [1, 2, 4, 8], "amortised") == 2000
    with pytest.raises(ValueError):
        budget.aux_share(1, 1, 1, [1], "free")


def test_steps_round_up_to_whole_batches():
    cfg = config_lib.from_dict({"data": {"batch_size": 128}})
    assert budget.steps_for(128, cfg) == 1
    assert budget.steps_for(129, cfg) == 2
    assert budget.steps_for(256.0000001, cfg) == 2  # float noise from the share must not add a step
    assert budget.steps_for(10240, cfg, world_size=2) == 40


# ---- verdicts and the cost ratio ---------------------------------------------------------

def cell(mean, std=0.0, n=3, total=1000.0):
    return {"top1_mean": mean, "top1_std": std, "n_seeds": n, "total_images": total}


@pytest.mark.parametrize("t, b, word", [
    (cell(80, 0.5), cell(78, 0.5), "win"),
    (cell(78, 0.5), cell(80, 0.5), "loss"),
    (cell(80, 2.0), cell(79, 2.0), "tie"),
    (cell(80, 0.0), cell(80, 0.0), "tie"),
    (cell(90, 0.0, n=1), cell(10, 0.0), "n/a"),
])
def test_verdict_rule(t, b, word):
    assert summary.verdict(t, b)["verdict"] == word


def test_cost_ratio_bounds_and_log_interpolation():
    tleg = cell(80, total=1000)
    curve = [cell(70, total=500), cell(78, total=1000), cell(82, total=2000)]
    r = summary.cost_ratio(tleg, curve)
    # 80 is halfway from 78 to 82: halfway in log(images) between 1000 and 2000.
    assert r["bound"] == "about" and r["ratio"] == pytest.approx(math.sqrt(2))
    assert summary.cost_ratio(cell(60, total=1000), curve) == {"ratio": 0.5, "bound": "at_most"}
    assert summary.cost_ratio(cell(90, total=1000), curve) == {"ratio": 2.0, "bound": "more_than"}
    assert summary.cost_ratio(tleg, []) is None


def test_comparisons_report_both_accountings():
    cells = [{"setting": "s", "depth": 2, "init": i, **cell(m, 0.1, total=t)}
             for i, m, t in [("tleg", 80, 1000), ("scratch", 70, 500), ("scratch_long", 78, 1000),
                             ("scratch_2x", 82, 2000)]]
    (row,) = summary.comparisons(cells, other_totals={("s", 2): 500.0})
    assert row["vs"]["scratch"]["verdict"] == "win" and row["vs"]["scratch_2x"]["verdict"] == "loss"
    assert row["cost_ratio"]["ratio"] == pytest.approx(math.sqrt(2))
    # Same accuracies, half the total charged to TLEG: twice the ratio.
    assert row["cost_ratio_other"]["ratio"] == pytest.approx(2 * math.sqrt(2))


def test_aggregate_mean_std_per_cell():
    recs = [{"kind": "des", "setting": "s", "depth": 2, "init": "tleg", "seed": k, "top1": v, "images": 256,
             "total_images": 320.0, "aux_share": 64.0, "params": 10, "wall_time_s": 1.0}
            for k, v in enumerate([70.0, 72.0, 74.0])]
    (c,) = summary.aggregate(recs)
    assert (c["top1_mean"], c["top1_std"], c["seeds"], c["finetune_images"]) == (72.0, 2.0, [0, 1, 2], 256)


# ---- the recipe and its plan ------------------------------------------------------------

def test_recipe_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="budget.finetune_imgs: unknown key"):
        xconfig.load(RECIPE, ["budget.finetune_imgs=3"])
    with pytest.raises(ConfigError, match="depths: repeated"):
        xconfig.load(RECIPE, ["depths=[2,2]"])
    with pytest.raises(ConfigError, match="must include tleg"):
        xconfig.load(RECIPE, ["inits=[scratch]"])
    with pytest.raises(ConfigError, match="truncated init needs depths <= the aux depth"):
        build_plan(xconfig.load(RECIPE, ["depths=[2,12]"]))


@pytest.fixture(scope="module")
def full_plan():
    return xconfig.load(RECIPE), build_plan(xconfig.load(RECIPE))


def _view(j):
    """A planned job as the accounting sees it: its labels, config and run folder."""
    lab = {"depth": None, "init": None, "aux_share": 0.0, **j.labels}
    return SimpleNamespace(**lab, images=lab["planned_images"], total_images=lab["planned_images"] + lab["aux_share"],
                           name=j.name, out=j.out, config=lambda check_paths=False: j.cfg)


def test_full_plan_budgets_match_the_accounting(full_plan):
    x, plan = full_plan
    plan = [_view(j) for j in plan]
    per_seed_setting = 2 + len(x.depths) * len(x.inits)  # learngene, pretrain, descendants
    assert len(plan) == len(x.settings) * (1 + len(x.seeds) * per_seed_setting)
    by = {(j.setting, j.seed, j.depth, j.init): j for j in plan if j.kind == "des"}
    lg = {(j.setting, j.seed): j for j in plan if j.kind == "learngene"}
    aux_depth = config_lib.load(x.learngene.recipe, check_paths=False).model.depth
    for (setting, seed, depth, init), j in by.items():
        t = by[(setting, seed, depth, "tleg")]
        assert t.images == x.budget.finetune_images  # whole batches of 128 in the recipe
        assert t.aux_share == pytest.approx(lg[(setting, seed)].images * depth / aux_depth)
        if init in ("scratch", "truncated"):
            assert j.images == t.images
        elif init == "scratch_long":
            assert t.total_images <= j.images < t.total_images + 128
        elif init == "scratch_2x":
            assert 2 * t.total_images <= j.images < 2 * t.total_images + 128


def test_full_plan_configs_validate_and_isolate_settings(full_plan):
    x, plan = full_plan
    for j in map(_view, plan):
        cfg = j.config(check_paths=False)
        assert cfg.output_dir == j.out
        if j.kind == "des":
            assert cfg.model.depth == j.depth and cfg.distill.type == "none"
            assert cfg.train.max_steps == cfg.optim.schedule_steps == j.images // cfg.data.batch_size
            assert cfg.model.fresh_head is (j.setting == "transfer")
            want = [5, 6, 7, 8, 9] if j.setting == "transfer" else None
        else:
            want = [0, 1, 2, 3, 4] if j.setting == "transfer" else None
            if j.kind in ("learngene", "pretrain"):
                assert cfg.model.depth == max(x.depths) and cfg.distill.type == "soft"
                # bound to the teacher job's weights, read from its summary.json when the job starts
                assert str(cfg.distill.teacher.checkpoint) == f"<{j.setting}: teacher:weights>"
                assert j.out.parent.parent == (x.output_dir / j.setting).resolve()
        assert cfg.data.classes == want, j.name


def test_every_stage_recipe_in_configs_experiments_loads():
    for path in sorted((ROOT / "configs" / "experiments").glob("*.yaml")):
        if path != RECIPE:
            assert config_lib.load(path, check_paths=False).model.arch() is not None


# ---- fresh heads (model.fresh_head) ------------------------------------------------------

@pytest.mark.parametrize("init", ["learngene", "truncated"])
def test_fresh_head_is_not_copied(tmp_path, init):
    from safetensors.torch import load_file, save_file

    from tleg_dist.models.aux_net import AuxNet
    from tleg_dist.models.des_net import build_des_net
    from tleg_dist.models.keys import aux_to_file
    from tleg_dist.training.model_factory import build_model

    base = {"stage": "finetune", "model": {"size": "cpu-64", "depth": 2, "num_classes": 5}}
    arch = config_lib.from_dict(base).model.arch()
    if init == "learngene":
        src = tmp_path / "lg.safetensors"
        learngene_file.save(src, aux_to_file(AuxNet(arch, 4).state_dict()), arch, 4)
        where = {"learngene": str(src)}
    else:
        src = tmp_path / "vit.safetensors"
        save_file({k: v.contiguous() for k, v in build_des_net(arch, 4).state_dict().items()}, str(src))
        where = {"pretrained": str(src)}
    old_head = load_file(str(src))["head.weight"]
    for fresh in (False, True):
        cfg = config_lib.from_dict({**base, "model": {**base["model"], "init": init, "fresh_head": fresh, **where}})
        torch.manual_seed(123)
        head = build_model(cfg).state_dict()["head.weight"]
        assert torch.equal(head, old_head) is (not fresh)


# ---- the whole experiment at the smoke budget --------------------------------------------

def launch(*args, timeout=900):
    cmd = [sys.executable, str(ROOT / "launchers" / "experiment.py"), "--config", str(RECIPE), *args]
    return subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_smoke_experiment_end_to_end(tmp_path):
    out, res = tmp_path / "runs", tmp_path / "results"
    over = [f"output_dir={out}", f"results_dir={res}"]
    p = launch("--smoke", *over)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    s = json.loads((res / "summary.json").read_text())
    assert s["complete"] and s["runs_finished"] == s["runs_planned"] == 26 and s["smoke"]
    cells = {(c["setting"], c["depth"], c["init"]): c for c in s["records"]}
    assert len(cells) == 2 * 2 * 5
    for (setting, depth, init), c in cells.items():
        assert 0 <= c["top1_mean"] <= 100 and c["n_seeds"] == 1 and c["seeds"] == [0]
        tleg = cells[(setting, depth, "tleg")]
        assert tleg["total_images"] == pytest.approx(256 + 512 * depth / 6)  # F + A L / L_aux, A = 4 batches
        if init in ("scratch", "truncated"):
            assert c["finetune_images"] == 256
        if init == "scratch_long":
            assert tleg["total_images"] <= c["finetune_images"] < tleg["total_images"] + 128
    # Transfer descendants start with a fresh head; same-task ones inherit it.
    log = p.stdout + p.stderr
    assert log.count("fresh: ['head.weight', 'head.bias']") == 2 and log.count("fresh: none") == 2
    md = (res / "results.md").read_text()
    assert "## Setting `transfer`" in md and "| L | params |" in md and "PARTIAL" not in md
    for png in ("acc_vs_depth.png", "acc_vs_cost.png"):
        assert (res / png).read_bytes()[:4] == b"\x89PNG"
    assert s["storage"]["storage"]["learngene"] == 2 * s["storage"]["storage"]["block"] + s["storage"]["storage"]["shared"]

    # Rerunning reuses every finished run; a missing run makes the report PARTIAL.
    again = launch("--smoke", *over)
    assert again.returncode == 0 and again.stdout.count("already finished") == 26, again.stdout[-2000:]
    (out / "transfer" / "seed0" / "des" / "d2_tleg" / "summary.json").unlink()
    partial = launch("--smoke", "--report-only", *over)
    assert partial.returncode == 0, partial.stderr[-2000:]
    s2 = json.loads((res / "summary.json").read_text())
    assert not s2["complete"] and s2["runs_finished"] == 25
    assert "PARTIAL: 25 of 26 runs" in (res / "results.md").read_text()
