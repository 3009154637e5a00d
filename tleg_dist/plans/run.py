"""Run a plan on an executor: skip what finished, submit what is ready, follow, collect.

    ROOT/jobs.json   job name -> its executor, job id and config fingerprint (a later launch
                     follows the jobs that outlive a launcher; plans/executors.py says where logs go)

A job is finished when its run folder's summary.json says so (artifacts/run_folder.py) with
the config it is planned with; such jobs are reused. A failed job is reported by name with
its error and log, the jobs that need it are not run, and everything else goes on; the next
call reruns only what did not finish.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tleg_dist.artifacts import run_folder
from tleg_dist.plans.executors import DONE_STATES, EXECUTORS, UNKNOWN, WAITING_STATES, Executor, Handle
from tleg_dist.plans.job import Job, check_plan, derive, record, up_to_date
from tleg_dist.utils.errors import UserError
from tleg_dist.utils.jsonio import read_json

ERROR_TAIL_LINES = 25
JOB_INDEX = "jobs.json"  # in the plan's root folder


@dataclass
class Outcome:
    records: list[dict]                                   # finished jobs, in plan order
    failed: dict[str, str] = field(default_factory=dict)  # job name -> its error
    blocked: list[str] = field(default_factory=list)      # not run: an input failed
    planned: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def collect(plan: list[Job], earlier: list[dict] = ()) -> list[dict]:
    """Records of the planned jobs that have finished (no training), in plan order; a job whose
    run folder has none may come from `earlier` (see reusable). A run of another config than the
    plan's is refused, as execute() does, wherever its inputs are there to tell."""
    dirs = {j.name: j.out for j in plan}
    # up_to_date: None only where an input's folder cannot tell (then the run's own summary stands)
    done = {j.name: record(j, up_to_date(j, dirs) or s) for j in plan if (s := run_folder.finished(j.out))}
    done.update(reusable([j for j in plan if j.name not in done], earlier))
    return [done[j.name] for j in plan if j.name in done]


def reusable(jobs: list[Job], earlier: list[dict]) -> dict[str, dict]:
    """Records from an earlier report (the "runs" of an experiment's results) standing in for jobs whose
    run folders are gone: only those run with the config planned now, that is the same
    fingerprint with their inputs where that report had them. The numbers are kept, the
    artefacts are not, so execute() reruns one when a job still to run needs its files."""
    by_name = {r["name"]: r for r in earlier}
    out = {}
    for job in jobs:
        rec = by_name.get(job.name)
        if rec is None or any(by_name.get(i.job, {}).get(run_folder.WEIGHTS) is None for i in job.inputs):
            continue
        cfg = derive(job.cfg, {i.field: by_name[i.job][run_folder.WEIGHTS] for i in job.inputs})
        if rec.get("fingerprint") == run_folder.fingerprint(cfg):
            out[job.name] = {**rec, "reused": True}
    return out


def execute(plan: list[Job], executor: Executor, root: Path, echo: Callable[[str], None] = print, wait: bool = True,
            poll_s: float = 1.0, progress_every_s: float = 30.0, earlier: list[dict] = ()) -> Outcome:
    check_plan(plan)
    dirs = {j.name: j.out for j in plan}
    done: dict[str, dict] = {}
    todo: list[Job] = []
    for job in plan:
        summary = up_to_date(job, dirs)
        if summary is None:
            todo.append(job)
        else:
            done[job.name] = record(job, summary)
            echo(f"[plan] {job.name}: already finished in {job.out}, reusing it")
    if earlier:
        kept = reusable(todo, earlier)
        run = {j.name for j in todo} - set(kept)
        for job in reversed(plan):  # needs come first: this walks them transitively
            if job.name in run:
                run.update(n for n in job.needs if kept.pop(n, None) is not None)
        todo = [j for j in todo if j.name in run]
        done.update(kept)
        echo(f"[plan] {len(kept)} taken from the earlier report's records (their run folders are gone)")
        # Their numbers came from the earlier weights of a job that is now retrained: pairing
        # them with runs from the new weights mixes two versions of that upstream.
        mixed = [j.name for j in plan if j.name in kept and any(n in run for n in j.needs)]
        if mixed:
            echo(f"[plan] note: {len(mixed)} reused runs need a job retrained now, so they descend from its "
                 f"earlier weights ({mixed[0]}{', ...' if len(mixed) > 1 else ''}); rerun them too for "
                 f"like-for-like pairs")
    logs = f"; logs in {executor.log_folder}" if executor.log_folder else ""
    echo(f"[plan] {len(done)} done, {len(todo)} to run on {executor.name}{logs}")
    if not wait and not executor.outlives_launcher:
        raise UserError("--no-wait needs --cluster: local jobs are this launcher's children, so it must stay")
    s = _Scheduler(executor, Path(root), dirs, done, echo)
    s.follow_or_refuse(todo)
    try:
        s.loop(todo, wait, poll_s, progress_every_s)
    except KeyboardInterrupt:
        s.interrupted()
        raise
    return Outcome([done[j.name] for j in plan if j.name in done], s.failed, s.blocked, len(plan))


class _Scheduler:
    def __init__(self, executor: Executor, root: Path, dirs: dict[str, Path], done: dict[str, dict], echo):
        self.ex, self.root, self.dirs, self.done, self.echo = executor, root, dirs, done, echo
        self.running: list[Handle] = []
        self.failed: dict[str, str] = {}
        self.blocked: list[str] = []
        self.states: dict[str, str] = {}
        self.index = read_json(root / JOB_INDEX) or {}

    def follow_or_refuse(self, todo: list[Job]) -> None:
        """Follow the jobs an earlier launch submitted that still run (on the executor that has
        them: Slurm); on another executor, refuse to run them twice."""
        for job in list(todo):
            prev = self.index.get(job.name, {})
            owner = EXECUTORS.get(prev.get("cluster"))  # "cluster": the executor's name
            if owner is None or not owner.alive(prev["job_id"]):
                continue
            if owner.name != self.ex.name:
                raise UserError(f"{job.name} is running on {owner.name} as job {prev['job_id']} (same output "
                                f"folder); follow it with --cluster, or scancel it first")
            if prev.get("fingerprint") != run_folder.fingerprint(job.cfg):  # never two jobs in one folder
                raise UserError(f"{job.name} is running on {owner.name} as job {prev['job_id']} with another "
                                f"config (same output folder); wait for it to end, or scancel it first")
            self.running.append(self.ex.attach(job, prev["job_id"]))
            todo.remove(job)
            self.echo(f"[plan] {job.name}: following job {prev['job_id']} from an earlier launch")

    def loop(self, todo: list[Job], wait: bool, poll_s: float, progress_every_s: float) -> None:
        pending = list(todo)
        last_progress = time.time()
        while pending or self.running:
            self._block(pending)
            self._submit(pending)
            if not wait:
                self.echo("[plan] not waiting; run the same command again to follow the jobs and collect results")
                return
            self._poll()
            self._block(pending)
            if self.running and time.time() - last_progress >= progress_every_s:
                self.echo("[plan] progress: " + " | ".join(f"{h.job.name} {_progress(h, self.states)}"
                                                          for h in self.running))
                last_progress = time.time()
            if self.running:
                time.sleep(poll_s)
            elif pending and not self._ready(pending):
                raise UserError(f"{pending[0].name} waits for jobs that are neither finished nor running")

    def _block(self, pending: list[Job]) -> None:
        lost = set(self.failed) | set(self.blocked)
        for job in list(pending):
            bad = [n for n in job.needs if n in lost]
            if bad:
                pending.remove(job)
                self.blocked.append(job.name)
                self.echo(f"[plan] {job.name}: not run, it needs {bad[0]}, which did not finish")

    def _ready(self, pending: list[Job]) -> list[Job]:
        active = {h.job.name for h in self.running} if self.ex.queues_ahead else set()
        return [j for j in pending if all(n in self.done or n in active for n in j.needs)]

    def _submit(self, pending: list[Job]) -> None:
        while ready := self._ready(pending)[:max(0, self.ex.capacity - len(self.running))]:
            groups: dict[tuple, list[Job]] = {}
            for job in ready:  # one array per set of inputs: a failed input holds back only its users
                groups.setdefault(tuple(job.needs), []).append(job)
                pending.remove(job)
            for needs, jobs in groups.items():
                after = [h.job_id for h in self.running if h.job.name in needs]
                if self.ex.runs_in_submit:
                    self.echo(f"[plan] {jobs[0].name}: training -> {jobs[0].out}")
                for h in self.ex.submit(jobs, self.dirs, after):
                    self.running.append(h)
                    if h.sub is not None:
                        self.echo(f"[plan] {h.job.name}: {self.ex.started} {h.job_id}")
                        self.index[h.job.name] = {"cluster": self.ex.name, "job_id": h.job_id,
                                                  "fingerprint": run_folder.fingerprint(h.job.cfg)}
                self._write_index()
            if self.ex.runs_in_submit:
                self._poll()  # it has finished already

    def _poll(self) -> None:
        for h in list(self.running):
            if h.sub is not None and (state := h.state()) != self.states.get(h.job.name):
                self.states[h.job.name] = state
                if state not in (*DONE_STATES, UNKNOWN):
                    self.echo(f"[plan] {h.job.name}: {state} (job {h.job_id})")
            if h.ended():
                self.running.remove(h)
                self._finish(h)

    def _finish(self, h: Handle) -> None:
        err = h.failure()
        summary = run_folder.finished(h.job.out)
        if err is None and summary is not None:
            rec = self.done[h.job.name] = record(h.job, summary)
            top1 = "-" if rec["top1"] is None else f"{rec['top1']:.2f}%"
            self.echo(f"[plan] {h.job.name}: done, top1 {top1} with {(rec['params'] or 0) / 1e6:.3f}M params "
                      f"({rec['time_s']:.1f} s, {rec['attempts']} attempt(s))")
            return
        text = err if err is not None else "the job ended without a finished summary.json"
        self.failed[h.job.name] = "\n".join(text.rstrip().splitlines()[-ERROR_TAIL_LINES:])
        where = f" (job {h.job_id})" if h.sub is not None else ""
        self.echo(f"[plan] {h.job.name}: FAILED{where}\n" + "\n".join("    " + line for line in
                                                                     self.failed[h.job.name].splitlines())
                  + (f"\n    log: {h.log}" if h.log else ""))
        lost = {h.job.name}
        # Queued behind it on Slurm, directly or through another queued job: they would wait forever.
        while behind := next(((o, n) for o in self.running for n in o.job.needs if n in lost), None):
            other, need = behind
            other.cancel()
            self.running.remove(other)
            self.blocked.append(other.job.name)
            lost.add(other.job.name)
            self.echo(f"[plan] {other.job.name}: cancelled, it needs {need}")

    def _write_index(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / JOB_INDEX).write_text(json.dumps(self.index, indent=1, sort_keys=True))

    def interrupted(self) -> None:
        if self.ex.outlives_launcher:
            self.echo(f"[plan] interrupted: the {self.ex.name} jobs keep running; run the same command to follow them")
            return
        for h in self.running:  # local jobs are this launcher's children: stop them, they resume next time
            h.cancel()
        self.echo("[plan] interrupted: local jobs stopped; run the same command to resume them")


def _progress(h: Handle, states: dict[str, str]) -> str:
    """The newest training step of a running job, from its metrics log."""
    if states.get(h.job.name) in WAITING_STATES:
        return states[h.job.name]
    path = h.job.out / run_folder.METRICS
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return "starting"
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "train":
            return f"step {rec['step']} epoch {rec.get('epoch', 0) + 1}"
        if rec.get("kind") == "eval":
            return f"step {rec['step']} top1 {rec.get('top1', float('nan')):.1f}%"
    return "starting"
