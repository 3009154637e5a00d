"""Images/s of the FFCV loader against a PyTorch DataLoader with PIL over the same JPEG files.

    OMP_NUM_THREADS=1 python benchmarks/loader_throughput.py                 # both cases, 2 workers
    python benchmarks/loader_throughput.py --cases small --workers 2 --batch-size 128
    python benchmarks/loader_throughput.py --quick      # seconds: proves the script works (tests run it)

Same batch size, same number of workers (DataLoader processes = FFCV's numba threads), same output
size and crop policy (RandomResizedCrop + horizontal flip), normalised float NCHW output (each
source's batches normalised as the trainer does it, on its device, here the CPU), timed
after an untimed warm-up epoch (numba compilation, worker start). Rounds alternate between the two
loaders so that load from other processes hits both alike; the median round counts.
Cases:
  small          Fashion-MNIST as 28 px JPEG files -> 32 px output
  imagenet_like  synthetic photo-like JPEGs (1/f "natural image" spectrum), 256-500 px -> 224 px
The last line printed is one JSON object with a `speedup` (wall-clock images/s ratio) per case, and
`cpu_speedup` (CPU-seconds per image, workers included): on a shared machine the latter is the
steadier number. Not a test: numbers depend on load, which is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

from tleg_dist.config import AugConfig, DataConfig
from tleg_dist.data.ffcv_loader import build_ffcv_data
from tleg_dist.data.normalize import Normalize
from tleg_dist.data.imagefolder import scan
from tleg_dist.data.normalize import imagenet_stats
from tleg_dist.data.transforms import train_transform
from tleg_dist.data.ffcv_writer import SourceImages, WriteSettings, beton_name, write_split
from tleg_dist.models.arch import ViTArch

AUG = AugConfig(random_resized_crop=True, hflip=0.5)


def natural_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Colour noise with a 1/f amplitude spectrum, like photographs: JPEG sizes and decode costs are typical."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w))
    mix = rng.normal(size=(3, 3)) * 0.4 + np.eye(3)  # correlated channels
    chans = [np.fft.irfft2(amp * np.exp(2j * np.pi * rng.random(amp.shape)), s=(h, w)) for _ in range(3)]
    img = np.tensordot(mix, np.stack(chans), axes=1).transpose(1, 2, 0)
    img = (img - img.mean()) / (img.std() + 1e-8) * 48 + rng.uniform(80, 170, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_tree(case: str, root: Path, n: int) -> Path:
    """ROOT/train/<class>/*.jpg, generated once and reused."""
    done = root / f".complete_{n}"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    if case == "small":
        from tleg_dist.data import fashion_mnist as fm
        x, y = fm.load_split(None, "train")
    for i in range(n):
        if case == "small":
            img, label = np.repeat(x[i].numpy()[:, :, None], 3, axis=2), int(y[i])
        else:
            img, label = natural_image(rng, int(rng.integers(256, 501)), int(rng.integers(256, 501))), i % 10
        d = root / "train" / f"c{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:06d}.jpg", quality=90)
    done.touch()
    return root


class Files(torch.utils.data.Dataset):
    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB")), self.labels[i]


def dataloader_epochs(paths, labels, size: int, args):
    mean, std = imagenet_stats(3)
    ds = Files(paths, labels, train_transform(AUG, size, mean, std))  # the project's timm transform: uint8
    prepare = Normalize(mean, std)  # as the imagefolder source's DataBundle.prepare
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0)
    while True:
        yield ((prepare(x), y) for x, y in loader)


def ffcv_epochs(beton: Path, size: int, args):
    cfg = DataConfig(format="ffcv", train_path=beton, val_path=beton, batch_size=args.batch_size,
                     num_workers=args.workers, aug=AUG)
    cfg.ffcv.os_cache, cfg.ffcv.batches_ahead = not args.no_os_cache, args.batches_ahead
    arch = ViTArch(img_size=size, patch_size=size, in_chans=3)  # only the image size matters here
    bundle = build_ffcv_data(cfg, arch, rank=0, world_size=1, seed=0, device=torch.device("cpu"))
    e = 0
    while True:
        yield ((bundle.prepare(x), y) for x, y in bundle.train.epoch(e))
        e += 1


def cpu_seconds() -> float:
    """CPU time of this process and its children (DataLoader workers) so far: unlike wall time,
    it hardly depends on what else runs on the machine. This process (FFCV's threads included) is read
    with process_time, whose resolution is a nanosecond: psutil counts 10 ms ticks, and a quick-mode
    FFCV epoch can take less than one tick."""
    children = psutil.Process().children(recursive=True)
    return time.process_time() + sum(t.user + t.system for t in (p.cpu_times() for p in children))


def timed(epoch_iter) -> tuple[int, float, float]:
    t0, c0, n = time.perf_counter(), cpu_seconds(), 0
    for x, _ in epoch_iter:
        n += len(x)
    assert x.dtype == torch.float32 and x.shape[1:] == (3, x.shape[2], x.shape[2])
    return n, time.perf_counter() - t0, cpu_seconds() - c0


def run_case(case: str, args) -> dict:
    n, size, mode, side = {"small": (args.n_small, 32, "raw", None),
                           "imagenet_like": (args.n_large, args.large_size, args.large_mode, args.large_max_side)}[case]
    # One folder per image count: the tree and the .beton of another --n-small/--n-large are not reused
    root = make_tree(case, args.workdir / f"{case}_{n}", n)
    _, paths, labels = scan(root / "train")
    settings = WriteSettings(write_mode=mode, max_side=side, workers=args.workers, verify=2)
    beton = root / beton_name(case, "train", settings)
    if not beton.exists():
        write_split(SourceImages(labels.numpy(), paths=paths), beton, settings,
                    {"source": "imagefolder", "grey": False, "mean": list(imagenet_stats(3)[0]),
                     "std": list(imagenet_stats(3)[1]), "eval_crop": 0.875, "classes": None})
    loaders = {"ffcv": ffcv_epochs(beton, size, args),
               "dataloader": dataloader_epochs(paths, labels.tolist(), size, args)}
    rates, cpu_ms = {k: [] for k in loaders}, {k: [] for k in loaders}
    for k, epochs in loaders.items():  # warm-up: compile, start workers, fill the page cache
        timed(next(epochs))
    for _ in range(args.rounds):
        for k, epochs in loaders.items():
            count, secs, cpu = timed(next(epochs))
            rates[k].append(count / secs)
            cpu_ms[k].append(1000 * cpu / count)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpu_ms.items()}
    mb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1e3
    return {"images": len(paths), "mean_jpeg_kb": round(mb, 1), "output_px": size, "ffcv_write_mode": mode,
            "ffcv_max_side": side, "ffcv_img_s": round(med["ffcv"], 1), "dataloader_img_s": round(med["dataloader"], 1),
            "rounds": {k: [round(r, 1) for r in v] for k, v in rates.items()},
            "ffcv_cpu_ms_per_img": round(cpu["ffcv"], 3), "dataloader_cpu_ms_per_img": round(cpu["dataloader"], 3),
            "cpu_speedup": round(cpu["dataloader"] / cpu["ffcv"], 2) if cpu["ffcv"] > 0 else None,
            "speedup": round(med["ffcv"] / med["dataloader"], 2)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["small", "imagenet_like"], choices=["small", "imagenet_like"])
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tleg_loader_bench")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3, help="timed epochs per loader (median reported)")
    p.add_argument("--n-small", type=int, default=10000)
    p.add_argument("--n-large", type=int, default=1000)
    p.add_argument("--large-size", type=int, default=224)
    p.add_argument("--large-mode", choices=["raw", "jpg", "proportion"], default="raw")
    p.add_argument("--large-max-side", type=int, default=None, help="resize in the .beton (default: keep)")
    p.add_argument("--batches-ahead", type=int, default=3)
    p.add_argument("--no-os-cache", action="store_true")
    p.add_argument("--quick", action="store_true", help="the small case, 256 images, 1 worker, 1 round: proves "
                   "the script works (a test runs it); not a measurement")
    args = p.parse_args(argv)
    if args.quick:
        args.cases, args.n_small, args.workers, args.rounds, args.batch_size = ["small"], 256, 1, 1, 64
    args.workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    cases = {}
    for case in args.cases:
        cases[case] = run_case(case, args)
        print(case, json.dumps(cases[case]), flush=True)
    result = {"workers": args.workers, "batch_size": args.batch_size, "cpus": len(os.sched_getaffinity(0)),
              "load_avg_before": [round(v, 2) for v in load_before],
              "load_avg_after": [round(v, 2) for v in os.getloadavg()],
              "speedup": {k: v["speedup"] for k, v in cases.items()}, "cases": cases}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
