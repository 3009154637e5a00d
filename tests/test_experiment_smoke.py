"""The experiment end to end at the smoke budget (both phases, the timing reruns, resuming, reuse),
and what it builds on: fresh heads, heur_lg_paper, budgets that count the ranks a job trains on.
The plan and statistics without training: tests/test_experiment_plan.py, test_experiment_stats.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from _experiment import EVERY_INIT, RECIPE
from _launch import ROOT, clean_env
from tleg_dist import config as config_lib
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.experiments import budget, results


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


def test_heur_lg_paper_inherits_only_the_high_blocks(tmp_path):
    """heur_lg keeps the ViT's stem, position embedding and final norm; heur_lg_paper (the original
    method) inherits the last ceil(L/4) blocks alone: everything else is at its fresh init."""
    from safetensors.torch import save_file

    from tleg_dist.models.des_net import build_des_net
    from tleg_dist.training.model_factory import build_model

    base = {"stage": "finetune", "model": {"size": "cpu-64", "depth": 4, "num_classes": 10}}
    arch = config_lib.from_dict(base).model.arch()
    torch.manual_seed(7)
    vit = {k: v.contiguous() for k, v in build_des_net(arch, 8).state_dict().items()}
    save_file(vit, str(tmp_path / "vit.safetensors"))
    built = {}
    for init in ("heur_lg", "heur_lg_paper"):
        cfg = config_lib.from_dict({**base, "model": {**base["model"], "init": init,
                                                      "pretrained": str(tmp_path / "vit.safetensors")}})
        torch.manual_seed(123)
        built[init] = build_model(cfg).state_dict()
    torch.manual_seed(123)
    fresh = build_model(config_lib.from_dict(base)).state_dict()
    for key, v in built["heur_lg_paper"].items():
        if key.startswith("blocks.3."):  # depth 4: one block, the ViT's last
            assert torch.equal(v, vit[key.replace("blocks.3.", "blocks.7.")]), key
        else:
            assert torch.equal(v, fresh[key]), key
    assert torch.equal(built["heur_lg"]["pos_embed"], vit["pos_embed"])
    assert not torch.equal(built["heur_lg_paper"]["pos_embed"], vit["pos_embed"])


# ---- the whole experiment at the smoke budget --------------------------------------------

def launch(*args, timeout=900):
    cmd = [sys.executable, str(ROOT / "launchers" / "experiment.py"), "--config", str(RECIPE), *args, *EVERY_INIT]
    return subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_smoke_experiment_end_to_end(tmp_path):
    out, res = tmp_path / "runs", tmp_path / "results"
    over = [f"output_dir={out}", f"results_dir={res}"]
    p = launch("--smoke", "--timing", *over)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    s = json.loads((res / results.RESULTS).read_text())
    planned = s["runs_planned"]
    assert s["complete"] and s["wall_clock_measured"] and s["runs_finished"] == planned and s["smoke"]
    # pre-registered before any reported seed ran, with the endpoints the results test
    pre = s["preregistration"]
    assert [e["name"] for e in pre["endpoints"]["primary"]] == [e["name"] for e in s["endpoints"]]
    assert pre["recipe_sha256"] and pre["written"]
    # tuning: every (setting, init) chose from its grid on the validation split, at the tuning seed
    tune = [r for r in s["runs"] if r["kind"] == "tune"]
    assert tune and {r["seed"] for r in tune} == {100}
    chosen = {(t["setting"], t["init"]): t["chosen"] for t in s["tuning"]}
    assert len(chosen) == 6 + 6 + 6
    for r in s["runs"]:
        if r["kind"] == "des":
            assert {"lr": r["lr"], "warmup": r["warmup"]} == chosen[(r["setting"], r["init"])], r["name"]
    reported_seeds = {r["seed"] for r in s["runs"] if r["kind"] == "des"}
    assert reported_seeds == {0, 1}
    cells = {(c["setting"], c["depth"], c["init"]): c for c in s["records"]}
    assert cells[("same_task", 3, "tleg")]["n_seeds"] == 2 and cells[("same_task", 2, "prefin")]["n_seeds"] == 1
    assert ("same_task", 3, "prefin") not in cells and ("fewshot_animal", 2, "heur_lg_paper") in cells
    for e in s["endpoints"]:
        assert e["verdict"] in ("win", "loss", "equivalent", "inconclusive", "n/a") and "ci95" in e
    assert {e["name"]: e.get("p_holm") is not None for e in s["endpoints"]}["claim2_fewshot_fmnist"]
    # cost three ways; the timing reruns compute what the reported runs did
    w = s["cost"]["wall_clock"]
    assert w["complete"] and w["one_off"]["teacher_training_s"] > 0 and w["one_off"]["cache_fill_s"] > 0
    assert s["cost"]["timing_reproduces"]["compared"] >= 5
    assert s["cost"]["timing_reproduces"]["equal"] == s["cost"]["timing_reproduces"]["compared"]
    md = (res / "results.md").read_text()
    for section in ("## Tuning", "## Primary endpoints", "## Secondary comparisons", "## Cost"):
        assert section in md
    assert "PARTIAL" not in md and "wall-clock s (alone, 1 thread)" in md
    for png in ("acc_vs_depth.png", "acc_vs_wall_clock.png"):
        assert (res / png).read_bytes()[:4] == b"\x89PNG"
    log = p.stdout + p.stderr
    assert "teacher logits: reusing" in log  # the setting's distilled runs share one cache

    # Rerunning reuses every finished run; a missing reported run makes the report PARTIAL.
    again = launch("--smoke", *over)
    assert again.returncode == 0 and f"{planned} done, 0 to run" in again.stdout, again.stdout[-2000:]
    (out / "fewshot_animal" / "seed0" / "d2_tleg" / "summary.json").unlink()
    partial = launch("--smoke", "--report-only", *over)
    assert partial.returncode == 0, partial.stderr[-2000:]
    s2 = json.loads((res / results.RESULTS).read_text())
    assert not s2["complete"] and s2["runs_finished"] == planned - 1
    assert f"PARTIAL: {planned - 1} of {planned} runs" in (res / "results.md").read_text()
    assert s2["preregistration"] == pre

    # A changed protocol is refused against the results it would overwrite.
    changed = launch("--smoke", "endpoints.alpha=0.1", *over)
    assert changed.returncode == 1 and "differ from those pre-registered" in changed.stderr

    # A new machine: the run folders are gone, the earlier experiment.json is not. --reuse-runs takes
    # its records and reruns what they lack: the missing run, and the upstream whose files it needs.
    shutil.copy(res / results.RESULTS, tmp_path / "earlier.json")
    shutil.rmtree(out)
    reuse = launch("--smoke", "--reuse-runs", str(tmp_path / "earlier.json"), *over)
    assert reuse.returncode == 0, reuse.stdout[-3000:] + reuse.stderr[-3000:]
    ran = {line[len("[plan] "):].split(": training -> ")[0] for line in reuse.stdout.splitlines()
           if ": training -> " in line}
    assert ran == {"fewshot_fmnist: teacher", "fewshot_fmnist/seed0: aux", "fewshot_animal/seed0: depth 2 tleg"}
    s3 = json.loads((res / results.RESULTS).read_text())
    assert s3["complete"] and s3["records"] == s["records"] and s3["endpoints"] == s["endpoints"]


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
