"""How much slower is a training step of the Aux-Net than of a plain timm ViT of the same shape?

The Aux-Net expands its layer weights from the learngene at every step (one batched op
per tensor, forward and backward); the question is whether that costs anything next to
the ViT's own work. Target: ratio <= 1.03.

    python benchmarks/aux_overhead.py                       # CPU: cpu-64 and ViT-S/224
    python benchmarks/aux_overhead.py --device cuda --dtype bf16
    python benchmarks/aux_overhead.py --case cpu-64:12:128 --steps 30
    python benchmarks/aux_overhead.py --compile              # both models through torch.compile
    python benchmarks/aux_overhead.py --quick                # seconds: proves the script works (tests run it)

One step = zero_grad, forward, cross-entropy, backward, torch AdamW step, on the same
batch every time (with --compile, forward and backward of both models are torch.compile'd, and
warm-up steps include the compilation). Steps of the two models are interleaved (alternating which goes first)
so that load from other processes hits both alike; each model's time is the median over
--steps steps after --warmup. The last line printed is one JSON object.

`ratio` compares wall-clock medians. On a CPU shared with other jobs, wall time mostly
measures the neighbours; `cpu_ratio` compares the process's CPU time per step instead,
which is what this process itself spent (with --threads 1 there is no spin-waiting of
idle OpenMP threads in it). On a quiet machine the two agree. `user_ratio` leaves out
kernel time: on CPU that is mostly page faults of glibc's allocator returning and
re-faulting large buffers (`*_faults` per step), which varies from run to run for either
model; MALLOC_MMAP_THRESHOLD_=4294967296 in the environment takes it out.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from tleg_dist.models.arch import ViTArch
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.des_net import build_des_net

# size:depth:batch. ViT-S/224 at a small batch keeps the CPU run to a few minutes.
DEFAULT_CASES = {
    "cpu": ["cpu-64:6:128", "small:12:8"],
    "cuda": ["cpu-64:6:512", "small:12:128", "base:12:64"],
}


def parse_case(text: str) -> tuple[str, int, int]:
    try:
        size, depth, batch = text.split(":")
        return size, int(depth), int(batch)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--case {text!r}: expected SIZE:DEPTH:BATCH, e.g. cpu-64:6:128") from None


class Stepper:
    """One model with its optimizer and a fixed batch; `step()` returns seconds taken."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, dtype: str,
                 compile_mode: str | None = None):
        self.model, self.x, self.y, self.device = model.to(device).train(), x, y, device
        if compile_mode:
            self.model.compile(mode=compile_mode)
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
        self.autocast = (torch.autocast(device_type=device, dtype=torch.bfloat16) if dtype == "bf16"
                         else nullcontext())

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def step(self) -> dict:
        """-> wall seconds, process CPU seconds (user and kernel), minor page faults."""
        self._sync()
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with self.autocast:
            loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        self._sync()
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        user, kernel = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
        return {"wall": wall, "cpu": user + kernel, "user": user, "faults": r1.ru_minflt - r0.ru_minflt}


def measure(size: str, depth: int, batch: int, args) -> dict:
    arch = ViTArch.from_size(size)
    torch.manual_seed(0)
    x = torch.randn(batch, arch.in_chans, arch.img_size, arch.img_size, device=args.device)
    y = torch.randint(0, arch.num_classes, (batch,), device=args.device)
    aux = Stepper(AuxNet(arch, depth), x, y, args.device, args.dtype, args.compile)
    vit = Stepper(build_des_net(arch, depth), x, y, args.device, args.dtype, args.compile)
    runs = {"aux": [], "vit": []}
    for i in range(args.warmup + args.steps):
        # Alternate the order so neither model always runs on a cache warmed by the other.
        pair = (("aux", aux), ("vit", vit)) if i % 2 == 0 else (("vit", vit), ("aux", aux))
        for name, stepper in pair:
            r = stepper.step()
            if i >= args.warmup:
                runs[name].append(r)
        if args.verbose and i >= args.warmup:
            print(f"  {size} step {i}: aux {runs['aux'][-1]} vit {runs['vit'][-1]}", file=sys.stderr)

    def med(name, what):
        return statistics.median(r[what] for r in runs[name])

    wall_aux, wall_vit = [r["wall"] for r in runs["aux"]], [r["wall"] for r in runs["vit"]]
    return {
        "size": size, "depth": depth, "batch": batch,
        "img_size": arch.img_size, "patch_size": arch.patch_size, "embed_dim": arch.embed_dim,
        "aux_step_s": round(med("aux", "wall"), 6), "vit_step_s": round(med("vit", "wall"), 6),
        "ratio": round(med("aux", "wall") / med("vit", "wall"), 4),  # the headline number
        # median of per-step ratios: robust to slow drifts in load
        "paired_ratio": round(statistics.median(a / v for a, v in zip(wall_aux, wall_vit)), 4),
        "min_ratio": round(min(wall_aux) / min(wall_vit), 4),
        "aux_cpu_s": round(med("aux", "cpu"), 6), "vit_cpu_s": round(med("vit", "cpu"), 6),
        "cpu_ratio": round(med("aux", "cpu") / med("vit", "cpu"), 4),
        "user_ratio": round(med("aux", "user") / med("vit", "user"), 4),
        "aux_faults": med("aux", "faults"), "vit_faults": med("vit", "faults"),
        "steps": args.steps,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=None,
                   help="default: bf16 on cuda (autocast), fp32 on cpu")
    p.add_argument("--case", type=parse_case, action="append", default=None,
                   help="SIZE:DEPTH:BATCH, repeatable (default: per device, see DEFAULT_CASES)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model (>= 10 for the report)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on cpu")
    p.add_argument("--target", type=float, default=1.03)
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile both models (MODE: default, max-autotune, ...)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--quick", action="store_true", help="CPU, cpu-64 at depth 2, batch 4, 2 steps, 1 thread: "
                   "proves the script works (a test runs it); not a measurement")
    args = p.parse_args(argv)
    if args.quick:
        args.device, args.case, args.steps, args.warmup, args.threads = "cpu", [parse_case("cpu-64:2:4")], 2, 1, 1
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible")
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = args.case or [parse_case(c) for c in DEFAULT_CASES[args.device]]

    results = []
    for size, depth, batch in cases:
        r = measure(size, depth, batch, args)
        results.append(r)
        print(f"{size:>8} depth {depth:>2} batch {batch:>4}: aux {r['aux_step_s'] * 1e3:8.1f} ms  "
              f"vit {r['vit_step_s'] * 1e3:8.1f} ms  ratio {r['ratio']:.3f} (paired {r['paired_ratio']:.3f}, "
              f"cpu time {r['cpu_ratio']:.3f}, user {r['user_ratio']:.3f})",
              flush=True)
    summary = {
        "benchmark": "aux_overhead",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "dtype": args.dtype,
        "compile": args.compile,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "target_ratio": args.target,
        "max_ratio": max(r["ratio"] for r in results),
        "max_cpu_ratio": max(r["cpu_ratio"] for r in results),
        "meets_target": all(r["ratio"] <= args.target for r in results),
        "results": results,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
