"""How much of what the model can do does the trainer deliver? The real trainer against a bare loop.

Each case runs `tleg_dist.training.trainer.train` itself (DeepSpeed engine, data path, loss
bookkeeping, logging, the lot) on synthetic data made on the device, then a bare loop on the same
model, batch and device (forward, cross-entropy, backward, torch AdamW; no DeepSpeed, no data).
`efficiency` = trainer images/s / bare images/s, both summed over ranks; every rank runs its bare
loop at the same time, so both sides share the cores alike. The trainer's figure is the median
of the images/s it logs itself, after the first log interval (warm-up and compilation).

    python benchmarks/trainer_throughput.py                 # CPU: 1 rank, then 2 ranks (deepspeed launcher)
    python benchmarks/trainer_throughput.py --ranks 1 --cases cpu:aux:2:eager
    python benchmarks/trainer_throughput.py --ranks 1                  # on a GPU: bf16, larger shapes (the default there)
    python benchmarks/trainer_throughput.py --quick    # under a minute: proves the script works (tests run it)

Cases are SHAPE:MODEL:ZERO:MODE (MODEL aux = Aux-Net, des = Des-Net, a timm ViT of the same depth;
MODE eager or compiled). `aux_over_vit` is the trainer's step time of the Aux-Net over the
Des-Net's in the same setting (2 ranks, ZeRO-2). The last line printed is one JSON object.
Targets (docs/performance.md): efficiency >= 0.9 for ZeRO-2; aux_over_vit <= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# SHAPE -> (model.size, depth, per-rank batch, steps per log interval)
SHAPES = {"cpu": ("cpu-64", 6, 128, 10), "small": ("small", 12, 2, 2), "small-gpu": ("small", 12, 256, 10),
          "tiny": ("cpu-64", 2, 16, 2)}  # --quick's: no measurement, only every code path once
QUICK_CASES = ["tiny:aux:2:eager", "tiny:des:2:eager"]
CPU_CASES = [f"cpu:{m}:{z}:{c}" for m in ("aux", "des") for z in (2, 3) for c in ("eager", "compiled")]
PAPER_CASES = ["small:aux:2:eager", "small:des:2:eager"]  # aux_over_vit at the paper's Small shape
GPU_CASES = [f"small-gpu:{m}:{z}:{c}" for m in ("aux", "des") for z in (2, 3) for c in ("eager", "compiled")]
INTERVALS = 4  # log intervals per trainer run; the first is warm-up


def recipe(case: str, out: Path, cuda: bool) -> dict:
    shape, model, zero, mode = case.split(":")
    size, depth, batch, every = SHAPES[shape]
    ds = f"configs/ds/zero{zero}{'_bf16' if cuda else ''}.json"
    return {
        "stage": "learngene" if model == "aux" else "finetune", "seed": 0, "output_dir": str(out),
        "deepspeed_config": str(ROOT / ds),
        "model": {"size": size, "depth": depth, "compile": {"enabled": mode == "compiled"}},
        "data": {"format": "synthetic", "batch_size": batch, "eval_batch_size": batch,
                 "synthetic_size": batch * every * (INTERVALS + 1) * int(os.environ.get("WORLD_SIZE", "1")),
                 "val_limit": batch},
        "optim": {"lr": 1e-4},
        "train": {"epochs": 1, "max_steps": every * INTERVALS, "log_every_steps": every, "progress": False},
    }


class PeakMemory:
    """Peak resident memory (CPU, sampled) or peak allocated CUDA memory over a `with` block, in GiB."""

    def __init__(self, cuda: bool):
        self.cuda, self.peak, self._stop = cuda, 0, threading.Event()

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.wait(0.02):
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * page)

    def __enter__(self):
        import torch
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        import torch
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()

    @property
    def gib(self) -> float:
        return round(self.peak / 2**30, 3)


def average_grads(model, world: int) -> None:
    """What data parallelism costs at the least: one all-reduce of every gradient (DDP's, in one
    bucket, with no overlap), so the bare loop at N ranks trains the same model the trainer does."""
    import torch
    import torch.distributed as tdist

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    tdist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def bare_img_s(cfg, device, steps: int, warmup: int = 3) -> float:
    """The same model, batch and device in a plain loop (averaging gradients across ranks, as any
    data-parallel loop must); this rank's images/s."""
    import torch
    import torch.distributed as tdist
    import torch.nn.functional as F

    from tleg_dist.data import build_data
    from tleg_dist.data.device import to_device
    from tleg_dist.training import distributed
    from tleg_dist.training.model_factory import build_model

    data = build_data(cfg.data, cfg.model.arch(), rank=0, world_size=1, seed=cfg.seed, device=device)
    x, y = next(to_device(data.train.epoch(0), device, data.prepare))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device).train()
    if cfg.model.compile.enabled:
        model.compile(mode=cfg.model.compile.mode)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    world = tdist.get_world_size() if tdist.is_initialized() else 1
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            distributed.barrier()  # no rank times its loop while another still compiles
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        if world > 1:
            average_grads(model, world)
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * x.shape[0] / (time.perf_counter() - t0)


def worker(cases: list[str], out: Path) -> None:
    """One process per rank; rank 0 appends one JSON row per case to `out`."""
    import torch

    from tleg_dist import config as config_lib
    from tleg_dist.training import distributed
    from tleg_dist.training.trainer import train

    cuda = torch.cuda.is_available()
    for case in cases:
        torch.compiler.reset()
        run_dir = out.parent / case.replace(":", "-")  # shared by the ranks: checkpoints are collective
        cfg = config_lib.from_dict(recipe(case, run_dir, cuda), source=case)
        with PeakMemory(cuda) as mem:
            train(cfg)
        dist = distributed.init()
        logged = []
        if dist.is_main:
            logged = [r["images_per_s"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                      if r["kind"] == "train"][1:]
            shutil.rmtree(run_dir)
        steps = cfg.train.log_every_steps * (INTERVALS - 1)
        bare = distributed.all_reduce_sum([bare_img_s(cfg, dist.device, steps)], dist.device)[0]
        if dist.is_main:
            trainer_img_s = statistics.median(logged)
            shape, model, zero, mode = case.split(":")
            row = {"case": case, "ranks": dist.world_size, "shape": shape, "model": model, "zero": int(zero),
                   "mode": mode, "batch_per_rank": cfg.data.batch_size, "trainer_img_s": round(trainer_img_s, 1),
                   "bare_img_s": round(bare, 1), "efficiency": round(trainer_img_s / bare, 3),
                   ("peak_mem_gib" if cuda else "peak_rss_gib"): mem.gib}
            print(json.dumps(row), flush=True)
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")


def launch(ranks: int, cases: list[str], out: Path) -> None:
    me = [str(Path(__file__).resolve()), "--worker", "--out", str(out), "--cases", ",".join(cases)]
    if ranks == 1:
        cmd = [sys.executable, *me]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", str(ranks), "--master_port", str(port), *me]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def aux_over_vit(rows: list[dict]) -> dict:
    """Trainer step time Aux-Net / Des-Net for each (ranks, shape, zero, mode) that has both."""
    by = {(r["ranks"], r["shape"], r["zero"], r["mode"], r["model"]): r["trainer_img_s"] for r in rows}
    return {f"{n}rank-{shape}-zero{z}-{mode}": round(by[(n, shape, z, mode, "des")] / img_s, 3)
            for (n, shape, z, mode, model), img_s in by.items()
            if model == "aux" and (n, shape, z, mode, "des") in by}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=None, help="rank counts to run (default: 1 2 on CPU, 1 on GPU)")
    p.add_argument("--cases", default=None, help="comma-separated SHAPE:MODEL:ZERO:MODE (default: see module doc)")
    p.add_argument("--no-paper-shape", action="store_true", help="skip the ViT-S/224 aux_over_vit pair at 2 ranks")
    p.add_argument("--quick", action="store_true", help=f"1 rank, cases {','.join(QUICK_CASES)}: proves the "
                   f"script works (a test runs it); not a measurement")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # from the deepspeed launcher
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.ranks, args.cases, args.no_paper_shape = [1], ",".join(QUICK_CASES), True
    if args.worker:
        worker(args.cases.split(","), args.out)
        return {}

    import torch
    cuda = torch.cuda.is_available()
    ranks = args.ranks or ([1] if cuda else [1, 2])
    cases = args.cases.split(",") if args.cases else (GPU_CASES if cuda else CPU_CASES)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in ranks:
            out = Path(tmp) / f"rows{n}.jsonl"
            extra = PAPER_CASES if n == 2 and not cuda and not args.no_paper_shape and not args.cases else []
            launch(n, cases + extra, out)
            rows += [json.loads(line) for line in out.read_text().splitlines()]
    summary = {
        "benchmark": "trainer_throughput",
        "device": torch.cuda.get_device_name() if cuda else f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2), "omp_threads": os.environ.get("OMP_NUM_THREADS", "1"),
        "rows": rows, "aux_over_vit": aux_over_vit(rows),
        "targets": {"efficiency_zero2": 0.9, "aux_over_vit_2rank_zero2": 0.9},
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
