"""Fast tests of the sweep package (no Slurm, no training): config, jobs, planning, results."""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import pytest
import torch

from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.config import ConfigError
from tleg_dist.models.arch import ViTArch
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.keys import aux_to_file
from tleg_dist.sweep import config as sweep_config
from tleg_dist.sweep import results, runner
from tleg_dist.sweep.job import RECORD_FORMAT, FinetuneJob, fingerprint, read_record

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "cpu" / "tiny_finetune.yaml"


@pytest.fixture
def learngene(tmp_path) -> Path:
    arch = ViTArch(embed_dim=32, num_heads=2, patch_size=7, img_size=28, in_chans=1, num_classes=10)
    torch.manual_seed(0)
    state = {k: v.detach() for k, v in AuxNet(arch, 2).state_dict().items()}
    return learngene_file.save(tmp_path / "lg.safetensors", aux_to_file(state), arch, 2)


def _sweep(learngene, tmp_path, **kw) -> sweep_config.SweepConfig:
    raw = {"learngene": str(learngene), "finetune_recipe": str(RECIPE), "depths": [2, 3],
           "output_dir": str(tmp_path / "sweep"), **kw}
    return sweep_config.from_dict(raw)


def test_sweep_config_errors_name_the_key(tmp_path):
    base = {"learngene": "x", "finetune_recipe": "y", "depths": [2]}
    with pytest.raises(ConfigError, match="resources.gpus: unknown key"):
        sweep_config.from_dict({**base, "resources": {"gpus": 1}})
    with pytest.raises(ConfigError, match="depths"):
        sweep_config.from_dict({**base, "depths": [2, 2]})
    with pytest.raises(ConfigError, match="array_parallelism"):
        sweep_config.from_dict({**base, "array_parallelism": 0})
    with pytest.raises(ConfigError, match="not of the form"):
        sweep_config.from_dict({**base, "overrides": ["train.epochs"]})
    with pytest.raises(ConfigError, match="does not exist"):
        sweep_config.load(tmp_path / "missing.yaml")


def test_shipped_sweep_recipe_loads_with_overrides():
    cfg = sweep_config.load(REPO / "configs" / "sweep" / "cpu_tiny.yaml", ["depths=[5,7]", "resources.cpus_per_task=2"])
    assert cfg.depths == [5, 7] and cfg.resources.cpus_per_task == 2


def test_job_config_sets_stage_depth_and_learngene_over_the_recipe(learngene, tmp_path):
    run_dir = tmp_path / "odd: name #1"  # would not survive being parsed as a YAML override
    job = FinetuneJob(str(learngene), str(RECIPE), str(run_dir), str(tmp_path / "r.json"), depth=5, seed=7,
                      overrides=["train.epochs=3", "model.init=scratch"])
    cfg = job.run_config()
    assert (cfg.stage, cfg.model.depth, cfg.model.init, cfg.seed) == ("finetune", 5, "learngene", 7)
    assert cfg.model.learngene == learngene and cfg.output_dir == run_dir and cfg.train.epochs == 3


def test_job_pickles_and_checkpoint_requeues_itself(learngene, tmp_path):
    job = FinetuneJob(str(learngene), str(RECIPE), str(tmp_path), str(tmp_path / "r.json"), depth=2)
    assert pickle.loads(pickle.dumps(job)) == job
    delayed = job.checkpoint()
    assert delayed.function is job and not delayed.args and not delayed.kwargs


def test_fingerprint_ignores_where_but_not_what(learngene, tmp_path):
    def fp(**kw):
        args = dict(learngene=str(learngene), recipe=str(RECIPE), run_dir=str(tmp_path / "a"),
                    record_path="r", depth=2, seed=0) | kw
        return fingerprint(FinetuneJob(**args).run_config())

    assert fp() == fp(run_dir=str(tmp_path / "b"))
    assert fp() != fp(seed=1)
    assert fp() != fp(depth=3)


def test_plan_skips_finished_depths_and_refuses_foreign_records(learngene, tmp_path):
    cfg = _sweep(learngene, tmp_path).absolute()
    runs = runner.plan(cfg)
    assert [r.depth for r in runs] == [2, 3] and all(r.record is None for r in runs)
    rec = {"format": RECORD_FORMAT, "depth": 2, "fingerprint": runs[0].fingerprint, "top1": 50.0}
    Path(runs[0].job.record_path).parent.mkdir(parents=True)
    Path(runs[0].job.record_path).write_text(json.dumps(rec))
    again = runner.plan(cfg)
    assert again[0].record == rec and again[1].record is None
    Path(runs[0].job.record_path).write_text(json.dumps({**rec, "fingerprint": "other"}))
    with pytest.raises(runner.SweepError, match="different recipe"):
        runner.plan(cfg)


def test_plan_rejects_a_learngene_that_does_not_fit(learngene, tmp_path):
    cfg = _sweep(learngene, tmp_path, overrides=["model.embed_dim=64"]).absolute()
    with pytest.raises(Exception, match="embed_dim"):
        runner.plan(cfg)


def test_local_sweep_cannot_detach(learngene, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(runner.SweepError, match="--no-wait needs --cluster"):
        runner.run_sweep(_sweep(learngene, tmp_path), cluster=False, wait=False, echo=lambda s: None)


def test_results_table_csv_json_and_plot(tmp_path):
    recs = [{"depth": d, "params": 1000 * d, "top1": 10.0 + d, "top5": 90.0, "val_loss": 1.5, "global_step": 8,
             "time_s": 2.5, "attempts": 1, "seed": 0, "run_dir": f"/r/{d}"} for d in (4, 2)]
    paths = results.write_all(recs, tmp_path)
    md = paths["md"].read_text().splitlines()
    assert md[2].startswith("| 2 | 0.002M | 12.00 |") and md[3].startswith("| 4 |")
    assert paths["csv"].read_text().splitlines()[0].startswith("depth,params,top1")
    assert [r["depth"] for r in json.loads(paths["json"].read_text())] == [2, 4]
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_read_record_ignores_partial_or_foreign_files(tmp_path):
    p = tmp_path / "r.json"
    assert read_record(p) is None
    p.write_text("{half")
    assert read_record(p) is None
    p.write_text(json.dumps({"format": "other"}))
    assert read_record(p) is None


def test_shell_scripts_parse():
    for script in ("slurm/local-cluster.sh", "slurm/learngene.sh"):
        subprocess.run(["bash", "-n", script], cwd=REPO, check=True)
