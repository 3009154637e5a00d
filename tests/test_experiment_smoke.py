"""The experiment (issue 13's protocol): budgets in units u, the statistics, the plan of the
committed recipe, fresh heads, and the whole experiment end to end at the smoke budget."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

from _launch import ROOT, clean_env
from tleg_dist import config as config_lib
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.config import ConfigError
from tleg_dist.plans import budget, experiment
from tleg_dist.plans import experiment_summary as summary
from tleg_dist.utils.errors import UserError

RECIPE = ROOT / "configs" / "experiments" / "fmnist_v2.yaml"


# ---- budgets and statistics ------------------------------------------------------------------

def test_steps_round_up_to_whole_batches():
    cfg = config_lib.from_dict({"data": {"batch_size": 128}})
    assert budget.steps_for(128, cfg) == 1
    assert budget.steps_for(129, cfg) == 2
    assert budget.steps_for(256.0000001, cfg) == 2  # float noise must not add a step
    assert budget.steps_for(10240, cfg, world_size=2) == 40


@pytest.mark.parametrize("t, df, p", [(4.303, 2, 0.05), (2.776, 4, 0.05), (1.0, 1, 0.5), (0.0, 2, 1.0),
                                      (9.925, 2, 0.01)])
def test_t_test_p_values_match_the_tables(t, df, p):
    assert summary.t_two_sided_p(t, df) == pytest.approx(p, abs=2e-4)


def cell(values, seeds=(0, 1, 2)):
    return {"top1_per_seed": list(values), "seeds": list(seeds)}


def test_paired_comparison_and_verdicts():
    # differences 2.0, 2.1, 1.9: mean 2, se 0.0577, t 34.6 -> a win
    win = summary.paired(cell([80.0, 81.1, 79.9]), cell([78.0, 79.0, 78.0]))
    assert win["verdict"] == "win" and win["diff"] == pytest.approx(2.0) and win["p"] < 0.01
    loss = summary.paired(cell([78.0, 79.0, 78.0]), cell([80.0, 81.1, 79.9]))
    assert loss["verdict"] == "loss"
    # differences +3, -2, +1: mean 0.67, se 1.45 -> a tie
    assert summary.paired(cell([83.0, 78.0, 81.0]), cell([80.0, 80.0, 80.0]))["verdict"] == "tie"
    assert summary.paired(cell([90.0], [0]), cell([10.0], [0]))["verdict"] == "n/a"  # one seed
    # only the seeds both have are paired
    assert summary.paired(cell([80.0, 81.0, 99.0]), cell([79.0, 80.0], (0, 1)))["n"] == 2


# ---- the recipe and its plan -------------------------------------------------------------------

def test_recipe_errors_name_the_key():
    with pytest.raises(ConfigError, match="budget_u.aux_epochs: unknown key"):
        experiment.load(RECIPE, ["budget_u.aux_epochs=3"])
    with pytest.raises(ConfigError, match="depths: repeated"):
        experiment.load(RECIPE, ["depths=[2,2]"])
    with pytest.raises(ConfigError, match="must have tleg"):
        experiment.load(RECIPE, ["inits={scratch: {start: scratch}}"])
    with pytest.raises(ConfigError, match="inits: unknown"):
        experiment.load(RECIPE, ["settings=[{name: s, inits: [tleg, bogus]}]"])
    with pytest.raises(ConfigError, match=r"ablations.lr_inits: unknown \['bogus'\]"):
        experiment.load(RECIPE, ["ablations.lr_inits=[tleg, bogus]"])
    with pytest.raises(ConfigError, match="need depths <= the aux depth 8"):
        experiment.build(experiment.load(RECIPE, ["depths=[2,12]"]))


@pytest.fixture(scope="module")
def full_plan():
    x = experiment.load(RECIPE)
    return x, experiment.build(x)


def test_full_plan_has_every_cell_and_the_paper_budgets(full_plan):
    x, plan = full_plan
    des = [j for j in plan if j.labels["kind"] == "des" and not j.labels.get("ablation")]
    n_inits = {s.name: len(s.inits or x.inits) for s in x.settings}
    assert len(des) == len(x.seeds) * len(x.depths) * sum(n_inits.values())
    cells = {(j.labels["setting"], j.labels["depth"], j.labels["init"]) for j in des}
    assert ("same_task", 8, "scratch_150u") in cells and ("transfer_digits", 2, "heur_lg") in cells
    for j in des:
        u = x.inits[j.labels["init"]].budget_u or x.budget_u.finetune
        assert u * 1000 <= j.labels["planned_images"] < u * 1000 + 64, j.name  # whole batches of 64
        assert j.cfg.optim.warmup_epochs == 0 and j.cfg.distill.type == "none"
    for j in plan:
        if j.labels["kind"] in ("aux", "vit", "pre"):
            assert j.cfg.distill.type == "soft" and j.cfg.distill.tau == 1.0
            assert j.cfg.distill.alpha == (0.5 if j.labels.get("ablation") == "alpha=0.5" else 1.0)
            want = 50_000 if j.labels.get("ablation") == "aux_budget_u=50" else 150_000
            assert want <= j.labels["planned_images"] < want + 64
            warmup_steps = j.cfg.optim.warmup_epochs * budget.steps_per_epoch(j.cfg)
            assert warmup_steps == pytest.approx(0.03 * j.cfg.train.max_steps)  # about 3 % warmup


def test_full_plan_wires_each_init_to_its_source(full_plan):
    x, plan = full_plan
    by = {j.name: j for j in plan}
    for j in plan:
        lab = j.labels
        if lab["kind"] != "des":
            continue
        src = [by[i.job] for i in j.inputs]
        kind = {"tleg": "aux", "truncated": "vit", "heur_lg": "vit"}.get(lab["init"])
        if lab["init"].startswith("scratch"):
            assert not src and j.cfg.model.init == "scratch"
        elif lab["init"] == "prefin":  # a ViT of this very depth, distilled for 150u
            assert src[0].labels["depth"] == lab["depth"] and j.cfg.model.init == "truncated"
            assert src[0].labels["kind"] == ("vit" if lab["depth"] == 8 else "pre")
        else:
            assert src[0].labels["kind"] == kind and src[0].labels["depth"] == 8
        upstream = "same_task" if lab["setting"] == "transfer_digits" else lab["setting"]
        assert all(s.labels["setting"] == upstream and s.labels["seed"] == lab["seed"] for s in src)
        assert j.cfg.model.fresh_head is (lab["setting"] != "same_task")
        assert j.cfg.data.format == ("digits" if lab["setting"] == "transfer_digits" else "fashion_mnist")


def test_ablations_are_one_seed_and_do_not_repeat_the_main_lr(full_plan):
    x, plan = full_plan
    abl = [j for j in plan if j.labels.get("ablation")]
    assert {j.labels["seed"] for j in abl} == {0} and {j.labels["setting"] for j in abl} == {"same_task"}
    lrs = {j.labels["ablation"] for j in abl if j.labels["ablation"].startswith("lr=")}
    assert lrs == {"lr=0.0005", "lr=0.002"}  # 1e-3 is the recipe's own: the main runs
    assert x.ablations.lr_inits is None  # every init, the long scratch runs too
    assert sorted(j.labels["init"] for j in abl if j.labels["ablation"] == "lr=0.002") == sorted(
        list(x.inits) * len(x.depths))
    narrow = experiment.build(experiment.load(RECIPE, ["ablations.lr_inits=[tleg, scratch_35u]"]))
    assert sorted(j.labels["init"] for j in narrow if j.labels.get("ablation") == "lr=0.002") == sorted(
        ["tleg", "scratch_35u"] * len(x.depths))


def test_reuse_runs_takes_an_experiments_results_by_format_not_by_name(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"format": "tleg-plan-results", "des": []}))
    with pytest.raises(UserError, match=r"--reuse-runs .*results.json: not an experiment's results \(experiment"):
        summary.read_runs(bad)
    with pytest.raises(UserError, match="not readable JSON"):
        summary.read_runs(tmp_path / "missing.json")
    # the committed results predate the name experiment.json
    assert len(summary.read_runs(ROOT / "results" / "fmnist_v2" / "summary.json")) == 326


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
    s = json.loads((res / summary.RESULTS).read_text())
    planned = s["runs_planned"]
    assert s["complete"] and s["runs_finished"] == planned and s["smoke"]
    cells = {(c["setting"], c["depth"], c["init"]): c for c in s["records"]}
    assert len(cells) == 2 * (7 + 6 + 6)  # depths x inits of each setting
    for c in cells.values():
        assert 0 <= c["top1_mean"] <= 100 and c["n_seeds"] == 2 and c["seeds"] == [0, 1]
        assert set(c) >= {"setting", "depth", "init", "top1_mean", "top1_std", "top1_per_seed", "train_images"}
    # amortised: TLEG's total is its own images plus the Aux-Net's over the 2 depths
    aux = next(r for r in s["runs"] if r["kind"] == "aux" and r["setting"] == "same_task" and not r.get("ablation"))
    tleg = cells[("same_task", 2, "tleg")]
    assert tleg["total_images"] == pytest.approx(tleg["train_images"] + aux["images"] / 2)
    assert cells[("same_task", 2, "scratch_35u")]["total_images"] == cells[("same_task", 2, "scratch_35u")][
        "train_images"]
    # Pre-Fin pays its depth's whole pre-training, also at the aux depth where that is the 8-layer ViT
    vit = next(r for r in s["runs"] if r["kind"] == "vit" and r["setting"] == "same_task" and r["seed"] == 0)
    for d in (2, 4):
        prefin = cells[("same_task", d, "prefin")]
        assert prefin["total_images"] == pytest.approx(prefin["train_images"] + vit["images"])
    comp = next(c for c in s["comparisons"] if c["setting"] == "same_task" and c["depth"] == 4)
    assert set(comp["vs"]) == {"scratch_35u", "scratch_100u", "scratch_150u", "truncated", "prefin", "heur_lg"}
    assert all(v["n"] == 2 and v["verdict"] in ("win", "loss", "tie") for v in comp["vs"].values())
    acct = {(a["setting"], a["unit"]): a for a in s["accounting"]}
    a = acct[("same_task", "images")]
    assert a["ratio"] == pytest.approx((a["aux"] + a["tleg"]) / a["scratch_100u"])
    # Pre-Fin pre-trains one model per depth; at the aux depth that is the truncated baseline's ViT
    pre = [r for r in s["runs"] if r["setting"] == "same_task" and r["seed"] == 0 and not r.get("ablation")
           and (r["kind"] == "pre" or r["kind"] == "vit")]
    assert a["prefin_pretrain"] == sum(r["images"] for r in pre) and a["pretrain_ratio_vs_prefin"] < 1
    assert a["ratio_vs_prefin"] == pytest.approx((a["aux"] + a["tleg"]) / a["prefin"])
    assert s["setup"]["alpha"] == 1.0 and s["setup"]["aux_depth"] == 4 and s["setup"]["depths"] == [2, 4]
    assert {a["ablation"] for a in s["ablations"]} == {"alpha=0.5", "aux_budget_u=0.25", "lr=0.0005"}
    log = p.stdout + p.stderr
    assert "heur_lg" in log and "fresh: ['head.weight', 'head.bias']" in log
    md = (res / "results.md").read_text()
    assert "## Setting `transfer_digits`" in md and "| L | params |" in md and "PARTIAL" not in md
    assert "## Comparisons" in md and "## Ablations (one seed)" in md
    for png in ("acc_vs_depth.png", "acc_vs_cost.png"):
        assert (res / png).read_bytes()[:4] == b"\x89PNG"
    st = s["storage"]["storage"]
    assert st["learngene"] == 2 * st["block"] + st["shared"]

    # Rerunning reuses every finished run; a missing run makes the report PARTIAL.
    again = launch("--smoke", *over)
    assert again.returncode == 0 and again.stdout.count("already finished") == planned, again.stdout[-2000:]
    (out / "transfer_digits" / "seed0" / "d2_tleg" / "summary.json").unlink()
    partial = launch("--smoke", "--report-only", *over)
    assert partial.returncode == 0, partial.stderr[-2000:]
    s2 = json.loads((res / summary.RESULTS).read_text())
    assert not s2["complete"] and s2["runs_finished"] == planned - 1
    assert f"PARTIAL: {planned - 1} of {planned} runs" in (res / "results.md").read_text()
    assert math.isfinite(s2["accounting"][0]["ratio"])

    # A new machine: the run folders are gone, the earlier experiment.json is not. --reuse-runs takes
    # its records and runs what they lack (transfer_digits/seed0 d2 tleg, which needs the files of
    # same_task/seed0's Aux-Net, which needs the teacher's) and any run of another config.
    doc = json.loads((res / summary.RESULTS).read_text())
    changed = "same_task/seed1: depth 2 scratch_35u"
    next(r for r in doc["runs"] if r["name"] == changed)["fingerprint"] = "another config"
    (tmp_path / "earlier.json").write_text(json.dumps(doc))
    shutil.rmtree(out)
    reuse = launch("--smoke", "--reuse-runs", str(tmp_path / "earlier.json"), *over)
    assert reuse.returncode == 0, reuse.stdout[-3000:] + reuse.stderr[-3000:]
    assert f"[plan] {planned - 4} taken from the earlier report" in reuse.stdout
    assert f"[plan] {planned - 4} done, 4 to run" in reuse.stdout
    # every reused run below the retrained teacher and Aux-Net is named as mixing two versions
    assert "reused runs need a job retrained now" in reuse.stdout
    ran = {line[len("[plan] "):].split(": training -> ")[0] for line in reuse.stdout.splitlines()
           if ": training -> " in line}
    assert ran == {"same_task: teacher", "same_task/seed0: aux", "transfer_digits/seed0: depth 2 tleg", changed}
    s3 = json.loads((res / summary.RESULTS).read_text())
    assert s3["complete"] and sum(bool(r.get("reused")) for r in s3["runs"]) == planned - 4

    # Records alone rebuild the whole report (no run folders at all): the same cells and, from the
    # planned arch instead of the learngene file, the same storage figures.
    elsewhere = [f"output_dir={tmp_path / 'none'}", f"results_dir={tmp_path / 'rebuilt'}"]
    rebuilt = launch("--smoke", "--report-only", "--reuse-runs", str(res / summary.RESULTS), *elsewhere)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    s4 = json.loads((tmp_path / "rebuilt" / summary.RESULTS).read_text())
    assert s4["complete"] and s4["records"] == s3["records"] and s4["comparisons"] == s3["comparisons"]
    assert s4["storage"]["storage"] == s3["storage"]["storage"] and "source" in s4["storage"]


@pytest.mark.parametrize("where", [["--executor", "local"], ["--cluster"]])
def test_budgets_count_the_ranks_each_job_trains_on(tmp_path, monkeypatch, where):
    """resources.tasks_per_job=2: every job trains on 2 ranks (DeepSpeed across its tasks), so its
    max_steps must see the planned images with 2 ranks, or each run sees twice its budget and
    the report refuses every finished run."""
    monkeypatch.syspath_prepend(str(ROOT / "launchers"))
    import experiment as launcher

    from tleg_dist.plans import executors, launch as plan_launch

    class Planned(Exception):
        pass

    def capture(plan, recipe, args, earlier=()):
        raise Planned(plan)

    monkeypatch.setattr(plan_launch, "run", capture)
    monkeypatch.setattr(executors.shutil, "which", lambda name: "/usr/bin/" + name)  # no Slurm is reached
    with pytest.raises(Planned) as planned:
        launcher.main(["--config", str(RECIPE), "--smoke", *where, "resources.tasks_per_job=2",
                       f"output_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    for j in planned.value.args[0]:
        seen = budget.stage_images(j.cfg, ranks=2)  # what the trainer will count on 2 ranks
        assert j.labels["planned_images"] == seen, j.name
        if j.labels["kind"] != "teacher":  # and the schedule ends with the budget
            assert j.cfg.optim.schedule_steps * budget.images_per_step(j.cfg, world_size=2) == seen, j.name
