"""The planner (tleg_dist/plans): recipes, jobs and their inputs, the completion marker, the
report, and a plan with a failing job run in-process, then rerun half-finished."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _launch import ROOT, clean_env
from tleg_dist import cli, config as config_lib
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.artifacts import run_folder
from tleg_dist.config import ConfigError
from tleg_dist.models.arch import ViTArch
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.keys import aux_to_file
from tleg_dist.plans import demo, launch, report, sweep
from tleg_dist.plans import executors
from tleg_dist.plans.executors import Local
from tleg_dist.plans.job import Input, Job, JobCall, derive, resolve, up_to_date
from tleg_dist.plans.run import JOB_INDEX, execute
from tleg_dist.utils.errors import UserError

RECIPE = ROOT / "configs" / "cpu" / "tiny_finetune.yaml"
DEMO = ROOT / "configs" / "pipeline" / "demo.yaml"
EXPERIMENT = ROOT / "configs" / "experiments" / "fmnist_v3.yaml"


@pytest.fixture
def learngene(tmp_path) -> Path:
    arch = ViTArch(embed_dim=32, num_heads=2, patch_size=7, img_size=28, in_chans=1, num_classes=10)
    torch.manual_seed(0)
    state = {k: v.detach() for k, v in AuxNet(arch, 2).state_dict().items()}
    return learngene_file.save(tmp_path / "lg.safetensors", aux_to_file(state), arch, 2)


def _sweep(learngene, tmp_path, **kw) -> sweep.SweepRecipe:
    raw = {"learngene": str(learngene), "finetune_recipe": str(RECIPE), "depths": [2, 3],
           "output_dir": str(tmp_path / "sweep"), **kw}
    return config_lib.validate(sweep.SweepRecipe, raw, "<test>")


def test_recipe_errors_name_the_key(tmp_path):
    base = {"learngene": "x", "finetune_recipe": "y", "depths": [2], "output_dir": "o"}
    for bad, culprit in (({"resources": {"gpus": 1}}, "resources.gpus: unknown key"), ({"depths": [2, 2]}, "depths"),
                         ({"resources": {"parallelism": 0}}, "resources.parallelism"),
                         ({"resources": {"nodes": 2, "tasks_per_job": 3}}, "3 is not a multiple of resources.nodes=2"),
                         ({"overrides": ["train.epochs"]}, "not of the form")):
        with pytest.raises(ConfigError, match=culprit):
            config_lib.validate(sweep.SweepRecipe, {**base, **bad}, "<test>")
    with pytest.raises(ConfigError, match="does not exist"):
        launch.load(sweep.SweepRecipe, tmp_path / "missing.yaml")


def test_shipped_recipes_load_with_overrides():
    s = launch.load(sweep.SweepRecipe, ROOT / "configs" / "sweep" / "cpu_tiny.yaml",
                     ["depths=[5,7]", "resources.cpus_per_task=2"])
    assert s.depths == [5, 7] and s.resources.cpus_per_task == 2
    d = launch.load(demo.DemoRecipe, DEMO, ["depths=[1]"])
    assert [j.name for j in demo.build(d)] == ["teacher", "learngene", "depth 1 learngene", "depth 1 scratch"]


def test_stages_after_the_teacher_build_the_model_it_trained():
    """The teacher's timm arguments (which can change its architecture) reach the stages that load
    its weights, not only its model name: else the strict load of its checkpoint fails there."""
    from tleg_dist.experiments import plan, recipe

    d = launch.load(demo.DemoRecipe, DEMO, ["depths=[1]"])
    d.teacher.overrides.append("distill.teacher.kwargs={drop_rate: 0.1}")
    jobs = {j.name: j for j in demo.build(d)}
    assert jobs["learngene"].cfg.distill.teacher.kwargs == {"drop_rate": 0.1}
    x = recipe.load(EXPERIMENT, ["seeds=[0]"], smoke=True)
    x.teacher.overrides.append("distill.teacher.kwargs={drop_rate: 0.1}")
    distilled = [j for j in plan.tuning_plan(x, smoke=True) if j.inputs and j.inputs[0].field == "distill.teacher.checkpoint"]
    assert distilled and all(j.cfg.distill.teacher.kwargs == {"drop_rate": 0.1} for j in distilled)


def test_every_plan_refuses_a_repeated_depth():
    from tleg_dist.experiments.recipe import ExperimentRecipe

    for cls, path, key in ((demo.DemoRecipe, DEMO, "depths"), (ExperimentRecipe, EXPERIMENT, "settings.same_task.depths")):
        with pytest.raises(ConfigError, match=r"depths: repeated entries \(got \[2, 2\]\)"):
            launch.load(cls, path, [f"{key}=[2,2]"])


def test_sweep_job_sets_stage_depth_and_learngene_over_the_recipe(learngene, tmp_path):
    odd = tmp_path / "odd: name #1"  # would not survive being parsed as a YAML override
    jobs = sweep.build(_sweep(learngene, tmp_path, output_dir=str(odd), seed=7,
                              overrides=["train.epochs=3", "model.init=scratch"]))
    cfg = jobs[1].cfg
    assert (cfg.stage, cfg.model.depth, cfg.model.init, cfg.seed) == ("finetune", 3, "learngene", 7)
    assert cfg.model.learngene == learngene and cfg.output_dir == odd / "runs" / "depth_003" and cfg.train.epochs == 3


def test_inputs_are_read_from_the_producers_summary(tmp_path):
    made = tmp_path / "elsewhere" / "lg.safetensors"  # not where a file name would be guessed
    made.parent.mkdir()
    made.write_bytes(b"x")
    base = derive(config_lib.load(RECIPE), {"output_dir": tmp_path / "des"})
    job = Job("des", derive(base, {"model.init": "learngene"}, [Input("model.learngene", "lg", "learngene")]),
              [Input("model.learngene", "lg", "learngene")])
    assert str(job.cfg.model.learngene) == "<lg:learngene>"
    dirs = {"lg": tmp_path / "lg", "des": job.out}
    with pytest.raises(UserError, match="has not finished"):
        resolve(job, dirs)
    dirs["lg"].mkdir()
    run_folder.write_summary(dirs["lg"], {"status": "completed", "files": {"weights": "w"}})
    with pytest.raises(UserError, match="lists no 'learngene' artefact"):
        resolve(job, dirs)
    run_folder.write_summary(dirs["lg"], {"status": "completed", "files": {"learngene": str(made)}})
    assert resolve(job, dirs).model.learngene == made


def test_job_pickles_and_checkpoint_requeues_itself(learngene, tmp_path):
    call = JobCall(sweep.build(_sweep(learngene, tmp_path))[0], {}, threads=1)
    assert pickle.loads(pickle.dumps(call)) == call
    delayed = call.checkpoint()
    assert delayed.function is call and not delayed.args and not delayed.kwargs


def test_a_job_runs_on_its_cpus_per_task_threads_whatever_the_launcher_had(learngene, tmp_path, monkeypatch):
    import submitit

    from tleg_dist.plans import job as job_module

    class Env:  # submitit's rendezvous, as in a one-task job
        def export(self, **kwargs):
            return type("Exported", (), {"rank": 0})()

    seen = {}
    monkeypatch.setattr(submitit.helpers, "TorchDistributedEnvironment", Env)
    monkeypatch.setattr(job_module, "run_job", lambda job, dirs, is_main: seen.update(
        env=os.environ["OMP_NUM_THREADS"], torch=torch.get_num_threads()) or {"status": "completed"})
    monkeypatch.setattr(job_module, "record", lambda job, summary: summary)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as the docs launch plans; sbatch passes it on
    monkeypatch.chdir(ROOT)  # the call changes into its workdir; restored afterwards
    threads = torch.get_num_threads()
    try:
        JobCall(sweep.build(_sweep(learngene, tmp_path))[0], {}, threads=3, workdir=str(ROOT))()
    finally:
        torch.set_num_threads(threads)
    assert seen == {"env": "3", "torch": 3}


def test_fingerprint_ignores_where_but_not_what(learngene, tmp_path):
    def fp(depth=2, **kw):
        job = next(j for j in sweep.build(_sweep(learngene, tmp_path, **kw)) if j.labels["depth"] == depth)
        return run_folder.fingerprint(job.cfg)

    assert fp() == fp(output_dir=str(tmp_path / "b"))
    assert fp() != fp(seed=1)
    assert fp() != fp(depth=3)


def test_finished_jobs_are_reused_and_foreign_ones_refused(learngene, tmp_path):
    jobs = sweep.build(_sweep(learngene, tmp_path))
    dirs = {j.name: j.out for j in jobs}
    assert up_to_date(jobs[0], dirs) is None
    jobs[0].out.mkdir(parents=True)
    mine = {"status": "completed", "fingerprint": run_folder.fingerprint(jobs[0].cfg), "val_top1": 50.0}
    run_folder.write_summary(jobs[0].out, {**mine, "status": "preempted"})
    assert up_to_date(jobs[0], dirs) is None  # preempted: resume it
    run_folder.write_summary(jobs[0].out, mine)
    assert up_to_date(jobs[0], dirs) == mine
    run_folder.write_summary(jobs[0].out, {**mine, "fingerprint": "other"})
    with pytest.raises(ConfigError, match="different config"):
        up_to_date(jobs[0], dirs)
    (jobs[0].out / run_folder.SUMMARY).write_text("{half")
    assert run_folder.read_summary(jobs[0].out) is None


def test_a_report_of_finished_runs_refuses_a_run_of_another_config(learngene, tmp_path):
    """--report-only (collect) must not report a run the recipe has changed since as the plan's."""
    from tleg_dist.plans.run import collect

    jobs = sweep.build(_sweep(learngene, tmp_path))
    jobs[0].out.mkdir(parents=True)
    mine = {"status": "completed", "fingerprint": run_folder.fingerprint(jobs[0].cfg), "val_top1": 50.0}
    run_folder.write_summary(jobs[0].out, mine)
    assert [r["top1"] for r in collect(jobs)] == [50.0]
    run_folder.write_summary(jobs[0].out, {**mine, "fingerprint": "other"})
    with pytest.raises(ConfigError, match="different config"):
        collect(jobs)


def test_a_learngene_that_does_not_fit_is_refused_before_anything_runs(learngene, tmp_path):
    # The learngene check's own error (a one-line user error naming the file and the field), not any
    # exception that happens to mention embed_dim (a recipe error about it would have matched too).
    with pytest.raises(learngene_file.LearngeneFileError,
                       match=f"learngene {learngene} does not fit model: embed_dim: file has 32, recipe wants 64$"):
        sweep.build(_sweep(learngene, tmp_path, overrides=["model.embed_dim=64"]))
    assert not (tmp_path / "sweep").exists()


def test_local_jobs_cannot_detach(learngene, tmp_path):
    s = _sweep(learngene, tmp_path)
    with pytest.raises(UserError, match="--no-wait needs --cluster"):
        execute(sweep.build(s), Local(s.resources, tmp_path), tmp_path, echo=lambda _: None, wait=False)


def test_a_live_slurm_job_of_another_config_is_refused_not_submitted_again(learngene, tmp_path, monkeypatch):
    jobs = sweep.build(_sweep(learngene, tmp_path, depths=[2]))
    root = tmp_path / "sweep"
    root.mkdir()
    (root / JOB_INDEX).write_text(json.dumps({"depth 2": {"cluster": "slurm", "job_id": "77", "fingerprint": "x"}}))
    monkeypatch.setattr(executors.Slurm, "alive", staticmethod(lambda job_id: job_id == "77"))

    class Slurm(executors.Slurm):  # Slurm's abilities, without a Slurm to submit to
        def __init__(self):
            pass

        def submit(self, *args):
            raise AssertionError("a second job was submitted into the folder a live job writes")

    with pytest.raises(UserError, match="job 77 with another config"):
        execute(jobs, Slurm(), root, echo=lambda s: None)
    with pytest.raises(UserError, match="depth 2 is running on slurm as job 77 .*follow it with --cluster"):
        execute(jobs, Local(executors.ResourcesConfig(), root), root, echo=lambda s: None)


def test_results_table_csv_json_and_plot(tmp_path):
    recs = [{"name": f"d{d} {i}", "kind": "des", "depth": d, "init": i, "params": 1000 * d, "top1": 10.0 + d + s,
             "seed": s, "run_dir": f"/r/{d}"} for d in (4, 2) for i in ("scratch", "learngene") for s in (0, 1)]
    recs.append({"name": "learngene", "kind": "learngene", "top1": 33.0, "images": 512})
    paths = report.write(tmp_path, recs, "t", {"d8 learngene": "Boom\nValueError: bad"}, ["d8 scratch"], 12)
    md = paths["md"].read_text()
    assert "| depth | params | top-1 learngene (%) | top-1 scratch (%) |" in md
    assert "| 2 | 2,000 | 12.50 ± 0.71 | 12.50 ± 0.71 |" in md and "PARTIAL: 9 of 12" in md
    assert "FAILED d8 learngene: ValueError: bad" in md and "learngene: val top-1 33.00%" in md
    assert paths["csv"].read_text().splitlines()[0].startswith("name,setting,depth,init,seed")
    doc = json.loads(paths["json"].read_text())
    assert len(doc["des"]) == 8 and doc["upstream"][0]["name"] == "learngene" and doc["blocked"] == ["d8 scratch"]
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_a_plan_where_every_job_failed_still_reports_them(tmp_path, capsys):
    from tleg_dist.plans.run import Outcome

    (tmp_path / "results.md").write_text("# an older report\n")
    outcome = Outcome([], {"teacher": "ValueError: no data"}, ["learngene"], planned=2)
    assert launch.write_results(outcome, tmp_path, "demo") == cli.EXIT_JOBS_FAILED == 1
    md = (tmp_path / "results.md").read_text()
    assert "PARTIAL: 0 of 2" in md and "FAILED teacher: ValueError: no data" in md and "older" not in md
    assert "[plan] FAILED: ['teacher']; not run: ['learngene']" in capsys.readouterr().out
    assert launch.write_results(Outcome([], planned=2), tmp_path / "detached", "demo") == cli.EXIT_OK  # --no-wait
    assert not (tmp_path / "detached").exists()


def test_shell_scripts_parse():
    for script in ("slurm/local-cluster.sh", "slurm/learngene.sh"):
        subprocess.run(["bash", "-n", script], cwd=ROOT, check=True)


# ---- a failing job, then a rerun of the half-finished plan -----------------------------------

def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tleg_dist.demo", "--smoke", f"output_dir={out}", "depths=[1]", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_failed_job_is_named_others_kept_and_a_rerun_does_only_the_rest(tmp_path):
    out = tmp_path / "demo"
    broken = "learngene.overrides=[data.format=imagefolder,data.root=/nonexistent/tleg_images]"
    r = _demo(out, broken)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[plan] learngene: FAILED" in r.stdout and "/nonexistent/tleg_images" in r.stdout
    assert "[plan] depth 1 learngene: not run, it needs learngene" in r.stdout
    done = json.loads((out / "results.json").read_text())
    assert [d["name"] for d in done["des"]] == ["depth 1 scratch"] and list(done["failed"]) == ["learngene"]
    assert "FAILED learngene" in (out / "results.md").read_text()

    again = _demo(out)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("reusing it") == 2  # teacher and the scratch Des-Net
    assert "[plan] 2 done, 2 to run" in again.stdout
    assert {d["name"] for d in json.loads((out / "results.json").read_text())["des"]} == \
        {"depth 1 learngene", "depth 1 scratch"}


def test_ablation_runs_stay_out_of_the_cells(tmp_path):
    """A run labelled as an ablation (another lr, another Aux-Net) is not a seed of its init's cell."""
    recs = [{"name": f"s{s}", "kind": "des", "depth": 2, "init": "tleg", "top1": 70.0 + s, "seed": s, "params": 9}
            for s in (0, 1)]
    recs.append({"name": "lr", "kind": "des", "depth": 2, "init": "tleg", "top1": 10.0, "seed": 0, "params": 9,
                 "ablation": "lr=0.002"})
    assert "| 2 | 9 | 70.50 ± 0.71 |" in report.table(recs)
    doc = json.loads(report.write(tmp_path, recs)["json"].read_text())
    assert [r["name"] for r in doc["des"]] == ["s0", "s1"] and [r["name"] for r in doc["ablations"]] == ["lr"]



def _fake_slurm(tmp_path, chain, sacct_sees_cancel):
    """Jobs named by `chain` (each needs the one before) and an executor standing in for Slurm:
    every job is queued at once, the first fails, the others pend behind it until cancelled.
    sacct_sees_cancel: whether a cancelled job reads as ended on the same poll (else later)."""
    from tleg_dist.plans.executors import Handle

    base = config_lib.load(RECIPE)
    jobs = [Job(n, derive(base, {"output_dir": tmp_path / n}), [Input("model.pretrained", chain[k - 1], "weights")]
                if k else []) for k, n in enumerate(chain)]

    class Paths:
        stderr = tmp_path / "log.err"

        class result_pickle:  # noqa: N801 - stands in for a path
            @staticmethod
            def exists():
                return False

    class Sub:
        num_tasks, paths = 1, Paths

        def __init__(self, name):
            self.job_id, self.name, self.cancelled, self.polls = f"id-{name}", name, False, 0

        @property
        def state(self):
            return "FAILED" if self.name == chain[0] else "CANCELLED" if self.cancelled else "PENDING"

        def done(self):
            self.polls += 1
            assert self.polls < 50, f"{self.name} waited on forever: Slurm never starts it, its input is gone"
            return self.name == chain[0] or (self.cancelled and sacct_sees_cancel)

        def exception(self):
            return "RuntimeError: boom" if self.name == chain[0] else None

        def cancel(self, check=False):
            self.cancelled = True

    class Slurm(executors.Slurm):  # Slurm's abilities, with stand-in jobs
        def __init__(self):
            self.subs = {}  # job name -> its stand-in Slurm job, to see which were cancelled

        def submit(self, jobs, dirs, after):
            subs = [self.subs.setdefault(j.name, Sub(j.name)) for j in jobs]
            return [Handle(j, s) for j, s in zip(jobs, subs)]

    return jobs, Slurm()


def test_a_failed_slurm_job_cancels_every_job_queued_behind_it_not_only_the_next(tmp_path):
    """teacher -> aux -> des on Slurm, all queued at once (afterok). When the teacher fails,
    Slurm never starts aux nor des (their dependency can never be satisfied): both must be
    cancelled and reported, or the launcher waits on des forever."""
    jobs, slurm = _fake_slurm(tmp_path, ["teacher", "aux", "des"], sacct_sees_cancel=False)
    lines = []
    out = execute(jobs, slurm, tmp_path / "plan", echo=lines.append, poll_s=0)
    assert list(out.failed) == ["teacher"] and sorted(out.blocked) == ["aux", "des"], lines
    assert "[plan] des: cancelled, it needs aux" in lines
    # really cancelled on Slurm (scancel), not only reported as such: else both stay queued for ever
    assert {n: s.cancelled for n, s in slurm.subs.items()} == {"teacher": False, "aux": True, "des": True}
