"""The experiment's recipe and plan (protocol v3): phases, tuning, endpoints, cost, without training."""

from __future__ import annotations

import json

import pytest

from _experiment import FULL_DESIGN, RECIPE
from _launch import ROOT
from tleg_dist import config as config_lib
from tleg_dist.config import ConfigError
from tleg_dist.experiments import budget, cost, endpoints, plan, recipe, results, tuning
from tleg_dist.utils.errors import UserError


@pytest.fixture(scope="module")
def x():
    return recipe.load(RECIPE, FULL_DESIGN)


@pytest.fixture(scope="module")
def phases(x):
    return plan.tuning_plan(x), plan.reported_plan(x, tuning.placeholders(x))


def test_steps_round_up_to_whole_batches():
    cfg = config_lib.from_dict({"data": {"batch_size": 128}})
    assert budget.steps_for(128, cfg) == 1
    assert budget.steps_for(129, cfg) == 2
    assert budget.steps_for(256.0000001, cfg) == 2  # float noise must not add a step
    assert budget.steps_for(10240, cfg, world_size=2) == 40


def test_recipe_errors_name_the_key():
    with pytest.raises(ConfigError, match="budget_u.aux_epochs: unknown key"):
        recipe.load(RECIPE, ["budget_u.aux_epochs=3"])
    with pytest.raises(ConfigError, match="depths: repeated"):
        recipe.load(RECIPE, ["settings.same_task.depths=[2,2]"])
    with pytest.raises(ConfigError, match="must have tleg"):
        recipe.load(RECIPE, ["inits={scratch: {start: scratch}}", "settings.same_task.runs={a: {inits: [scratch]}}"])
    with pytest.raises(ConfigError, match=r"runs.primary.inits: unknown \['bogus'\]"):
        recipe.load(RECIPE, ["settings.same_task.runs.primary.inits=[tleg, bogus]"])
    with pytest.raises(ConfigError, match="tuning.seed 0 is a reported seed"):
        recipe.load(RECIPE, ["tuning.seed=0"])
    with pytest.raises(ConfigError, match="needs a margin"):
        recipe.load(RECIPE, ["endpoints.primary=[{name: e, setting: same_task, comparator: scratch_150u, "
                             "test: equivalence}]"])
    with pytest.raises(ConfigError, match="need depths <= the aux depth 8"):
        plan.tuning_plan(recipe.load(RECIPE, ["settings.same_task.depths=[2,12]"]))


def test_phase_1_tunes_on_validation_at_an_unreported_seed(x, phases):
    tune = [j for j in phases[0] if j.labels["kind"] == "tune"]
    assert {j.labels["seed"] for j in tune} == {x.tuning.seed} and x.tuning.seed not in x.seeds
    assert {j.labels["depth"] for j in tune} == {2, 8}
    assert all(j.cfg.data.eval_on == "val" and j.cfg.data.val_split for j in tune)
    scratch = {(j.labels["lr"], j.labels["warmup"]) for j in tune if j.labels["init"] == "scratch_100u"}
    assert scratch == {(lr, w) for lr in (1e-3, 2e-3, 4e-3) for w in (0.0, 0.05)}
    for init in ("tleg", "truncated", "prefin", "heur_lg", "heur_lg_paper"):
        got = {(j.labels["lr"], j.labels["warmup"]) for j in tune if j.labels["init"] == init}
        assert got == {(lr, 0.0) for lr in (5e-4, 1e-3, 2e-3)}, init
    warm = next(j for j in tune if j.labels["init"] == "scratch_100u" and j.labels["warmup"] == 0.05)
    steps = warm.cfg.optim.warmup_epochs * budget.steps_per_epoch(warm.cfg)
    assert steps == pytest.approx(0.05 * warm.cfg.train.max_steps)
    # every upstream job of the reported seeds is in phase 1 too, and nothing reported is
    assert not any(j.labels["kind"] == "des" for j in phases[0])
    assert {j.labels["seed"] for j in phases[0] if j.labels["kind"] == "aux"} == {*x.seeds, x.tuning.seed}


def test_phase_2_reports_each_cell_once_on_the_test_set(x, phases):
    des = [j for j in phases[1] if j.labels["kind"] == "des"]
    cells = {}
    for j in des:
        cells.setdefault((j.labels["setting"], j.labels["init"]), set()).add((j.labels["seed"], j.labels["depth"]))
        assert j.cfg.data.eval_on == "test" and j.cfg.distill.type == "none"
        u = x.budget(j.labels["setting"], j.labels["init"])
        assert u * 1000 <= j.labels["planned_images"] < u * 1000 + j.cfg.data.batch_size
    assert cells[("same_task", "tleg")] == {(s, d) for s in range(5) for d in range(2, 9)}
    assert cells[("same_task", "scratch_100u")] == cells[("same_task", "tleg")]
    assert cells[("same_task", "scratch_150u")] == {(s, d) for s in range(3) for d in (2, 4, 6, 8)}
    for s in ("fewshot_fmnist", "fewshot_animal"):
        assert {i for (st, i) in cells if st == s} == {"tleg", "heur_lg_paper", "heur_lg", "truncated",
                                                       "scratch_20u", "scratch_60u"}
        assert cells[(s, "tleg")] == {(k, d) for k in range(5) for d in (2, 4, 6, 8)}
    assert x.budget("fewshot_animal", "tleg") == 20 and x.budget("same_task", "tleg") == 35


def test_each_init_starts_from_its_source(phases):
    by = {j.name: j for j in phases[1]}
    for j in phases[1]:
        lab = j.labels
        if lab["kind"] not in ("des", "tune"):
            continue
        src = [by[i.job] for i in j.inputs]
        if lab["init"].startswith("scratch"):
            assert not src and j.cfg.model.init == "scratch"
        elif lab["init"] == "prefin":
            assert src[0].labels["depth"] == lab["depth"] and j.cfg.model.init == "truncated"
        else:
            want = {"tleg": "aux", "truncated": "vit", "heur_lg": "vit", "heur_lg_paper": "vit"}[lab["init"]]
            assert src[0].labels["kind"] == want and src[0].labels["depth"] == 8
            assert j.cfg.model.init == {"tleg": "learngene"}.get(lab["init"], lab["init"])
        upstream = "fewshot_fmnist" if lab["setting"] == "fewshot_animal" else lab["setting"]
        assert all(s.labels["setting"] == upstream and s.labels["seed"] == lab["seed"] for s in src)
        assert j.cfg.model.fresh_head is (lab["setting"] != "same_task")
        assert j.cfg.data.format == ("animal_mnist" if lab["setting"] == "fewshot_animal" else "fashion_mnist")
    for j in phases[1]:
        if j.labels["kind"] in ("aux", "vit", "pre"):  # distilled through the setting's one shared cache
            assert j.cfg.distill.teacher.cache and j.cfg.distill.teacher.cache_dir.name == "teacher_logits"
            assert j.cfg.distill.teacher.cache_dir.parent.name == j.labels["setting"]


def _tune_records(x, best: dict) -> list[dict]:
    out = []
    for setting, s in x.settings.items():
        for init in s.inits():
            for hp in tuning.candidates(x, setting, init):
                for d in x.tuning.depths:
                    top1 = 90.0 if hp == best.get((setting, init)) else 80.0 + d
                    out.append({"kind": "tune", "setting": setting, "init": init, "depth": d, **hp, "top1": top1})
    return out


def test_choose_takes_the_best_mean_validation_top1(x):
    best = {("same_task", "scratch_100u"): {"lr": 4e-3, "warmup": 0.05},
            ("fewshot_animal", "tleg"): {"lr": 5e-4, "warmup": 0.0}}
    got = tuning.choose(x, _tune_records(x, best))
    assert got["chosen"][("same_task", "scratch_100u")] == best[("same_task", "scratch_100u")]
    assert got["chosen"][("fewshot_animal", "tleg")] == best[("fewshot_animal", "tleg")]
    assert got["chosen"][("same_task", "tleg")] == {"lr": 5e-4, "warmup": 0.0}  # a tie: the grid's first
    recs = _tune_records(x, best)[1:]
    with pytest.raises(ConfigError, match="has not finished"):
        tuning.choose(x, recs)


def _cell(setting, depth, init, per_seed):
    return {"setting": setting, "depth": depth, "init": init, "seeds": list(per_seed), "top1_per_seed":
            list(per_seed.values())}


def test_endpoints_pool_over_depths_and_holm_the_family(x):
    cells = []
    for d in (2, 4):
        cells.append(_cell("same_task", d, "tleg", {0: 85.0 + d, 1: 85.2 + d, 2: 84.9 + d}))
        cells.append(_cell("same_task", d, "scratch_100u", {0: 84.0 + d, 1: 84.5 + d, 2: 84.1 + d}))
        cells.append(_cell("same_task", d, "scratch_150u", {0: 85.1 + d, 1: 85.1 + d, 2: 85.0 + d}))
    for s in ("fewshot_fmnist", "fewshot_animal"):
        cells.append(_cell(s, 2, "tleg", {0: 70.0, 1: 71.0, 2: 72.0}))
        cells.append(_cell(s, 2, "heur_lg_paper", {0: 69.0, 1: 71.5, 2: 70.0}))
    diffs, seeds, depths = endpoints.pooled_diffs(cells, "same_task", "scratch_100u")
    assert seeds == [0, 1, 2] and depths == [2, 4] and diffs == pytest.approx([1.0, 0.7, 0.8])
    eps = {e["name"]: e for e in endpoints.primary(x, cells)}
    assert eps["claim1_vs_scratch_100u"]["verdict"] == "win"
    assert eps["claim1_vs_scratch_150u"]["verdict"] == "equivalent"
    fam = [eps["claim2_fewshot_fmnist"], eps["claim2_fewshot_animal"]]
    assert all(e["p_holm"] >= e["p"] for e in fam) and fam[0]["verdict"] == "inconclusive"
    sec = endpoints.secondary(cells)
    assert {r["vs"] for r in sec if r["setting"] == "same_task"} == {"scratch_100u", "scratch_150u"}
    assert all(r["verdict"] in ("win", "loss", "inconclusive") and r["p_holm"] >= r["p"] for r in sec)


def test_cost_is_measured_over_the_depths_both_ran(x, phases):
    p = cost.planned(x, phases[1])
    assert p["depths"] == [2, 3, 4, 5, 6, 7, 8]
    im = p["images"]
    assert im["ratio"] == pytest.approx((im["aux"] + im["tleg"]) / im["scratch_100u"])
    assert 150_000 <= im["aux"] < 150_064 and 7 * 35_000 <= im["tleg"] < 7 * 35_064
    lp = p["layer_passes"]
    assert lp["aux"] == im["aux"] * 8
    timing = [{"kind": "teacher", "time_s": 100.0}, {"kind": "aux", "time_s": 200.0, "cache_fill_s": 20.0}]
    timing += [{"kind": "timing", "init": i, "depth": d, "time_s": s * d} for i, s in (("tleg", 3.0),
                                                                                    ("scratch_100u", 9.0))
               for d in range(2, 9)]
    w = cost.wall_clock(x, timing)
    assert w["complete"] and w["aux_training_s"] == 180.0 and w["one_off"]["cache_fill_s"] == 20.0
    assert w["ratio"] == pytest.approx((180 + 3 * 35) / (9 * 35))
    assert w["ratio_with_one_off"] == pytest.approx((200 + 3 * 35 + 100) / (9 * 35))
    charged = cost.charged_wall_clock(x, w)
    assert charged[("tleg", 2)] == pytest.approx(6 + 180 / 7) and charged[("scratch_100u", 2)] == 18


def test_timing_plan_reruns_one_seed_from_its_own_teacher_and_cache(x):
    jobs = plan.timing_plan(x, tuning.placeholders(x))
    kinds = [j.labels["kind"] for j in jobs]
    assert kinds.count("teacher") == 1 and kinds.count("aux") == 1 and "vit" not in kinds
    des = [j for j in jobs if j.labels["kind"] == "timing"]
    assert {(j.labels["init"], j.labels["depth"]) for j in des} == (
        {("tleg", d) for d in range(2, 9)} | {("scratch_100u", d) for d in range(2, 9)}
        | {("scratch_150u", d) for d in (2, 4, 6, 8)})
    assert all("timing" in j.out.parts and j.labels["seed"] == 0 for j in jobs)
    aux = next(j for j in jobs if j.labels["kind"] == "aux")
    assert "timing" in aux.cfg.distill.teacher.cache_dir.parts


def test_preregistration_is_fixed_once(tmp_path, x):
    y = x.model_copy(update={"results_dir": tmp_path})
    first = results.preregister(y, RECIPE)
    assert first["endpoints"]["primary"][0]["name"] == "claim1_vs_scratch_100u" and first["recipe_sha256"]
    assert results.preregister(y, RECIPE)["written"] == first["written"]
    changed = recipe.load(RECIPE, [*FULL_DESIGN, f"results_dir={tmp_path}", "endpoints.alpha=0.1"])
    with pytest.raises(UserError, match="endpoints differ from those pre-registered"):
        results.preregister(changed, RECIPE)
    doc = json.loads((tmp_path / results.RESULTS).read_text())
    assert doc["format"] == results.FORMAT and "preregistration" in doc


def test_reuse_runs_refuses_what_is_not_a_results_file(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"format": "tleg-plan-results", "des": []}))
    with pytest.raises(UserError, match="not an experiment results file"):
        results.read_runs(bad)
    with pytest.raises(UserError, match="not readable JSON"):
        results.read_runs(tmp_path / "missing.json")
    v2 = ROOT / "results" / "fmnist_v2" / "summary.json"  # v2's file name, the same format
    assert len(results.read_runs(v2)) == 326


def test_every_stage_recipe_in_configs_experiments_loads():
    for path in sorted((ROOT / "configs" / "experiments").glob("v3_*.yaml")):
        assert config_lib.load(path, check_paths=False).model.arch() is not None
