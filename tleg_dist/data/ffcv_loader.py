"""FFCV loaders behind the `DataBundle` interface (data.format: ffcv).

    bundle = build_ffcv_data(cfg.data, cfg.model.arch(), rank=r, world_size=w, seed=cfg.seed)

The train order is `sampler.shard_indices` (= DistributedSampler with the run's seed), handed to
FFCV as a custom traversal order, so each rank reads a disjoint shard in the same order as the
DataLoader path, and `epoch(e, start_batch)` resumes mid-epoch without reading skipped images.
ffcv is imported lazily: the package works without it. Differences and pitfalls: docs/ffcv.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from tleg_dist.config import DataConfig
from tleg_dist.data.base import Batch, DataBundle
from tleg_dist.data.errors import DataError
from tleg_dist.data.ffcv_beton import beton_labels, check_beton, read_sidecar, require_ffcv, sidecar_stats
from tleg_dist.data.ffcv_ops import fresh_normalize, in_place_flip
from tleg_dist.data.normalize import Normalize
from tleg_dist.data.sampler import shard_indices, train_batches_per_rank, val_batches
from tleg_dist.data.streams import check_start, class_lut, select
from tleg_dist.data.transforms import seeded
from tleg_dist.models.arch import ViTArch
from tleg_dist.utils.threads import threads_per_local_rank

log = logging.getLogger(__name__)


def _threads(cfg: DataConfig) -> int:
    """FFCV's workers are numba threads in this process: share the cores between local ranks."""
    return cfg.num_workers or threads_per_local_rank()


class _Output:
    """Last touches on FFCV's batch: GPU normalisation, channel count, labels out of reused buffers."""

    def __init__(self, normalize: Normalize, in_chans: int, grey: bool, lut: Optional[torch.Tensor], device):
        self.normalize, self.in_chans, self.grey = normalize, in_chans, grey
        self.lut = lut.to(device) if lut is not None else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        # Images arrive in new memory (CPU: fresh_normalize; GPU: normalised here, as ffcv's GPU
        # NormalizeImage needs cupy). They stay channels_last, FFCV's layout: NCHW shape, NHWC memory.
        x = self.normalize(x)  # uint8 on the GPU; float (already normalised) passes through
        if self.in_chans == 1:
            # A grey source has 3 equal channels; RGB goes to luminance as PIL's convert("L") does.
            x = x[:, :1] if self.grey else x[:, :1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114
            x = x.contiguous()
        y = y.reshape(-1).long()  # labels come from a reused buffer: index or clone = copy
        y = self.lut[y] if self.lut is not None else y.clone()
        return x, y


def _pipelines(train: bool, cfg: DataConfig, size: int, normalize: Normalize, eval_crop: float, device):
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

    if not train:
        image = [CenterCropRGBImageDecoder((size, size), ratio=eval_crop)]
    elif cfg.aug.random_resized_crop:  # timm's defaults: scale (0.08, 1), ratio (3/4, 4/3)
        image = [RandomResizedCropRGBImageDecoder((size, size))]
    else:  # full image (centre square of a non-square one), like timm with scale=ratio=(1, 1)
        image = [RandomResizedCropRGBImageDecoder((size, size), scale=(1.0, 1.0), ratio=(1.0, 1.0))]
    if train and cfg.aug.hflip > 0:
        image.append(in_place_flip(cfg.aug.hflip))
    label = [IntDecoder(), ToTensor()]
    if device.type == "cuda":
        image += [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage()]
        label.append(ToDevice(device, non_blocking=True))
    else:
        image.append(fresh_normalize(normalize))  # new float32 memory per batch: no copy needed after
    return {"image": image, "label": label}


def _iterate(loader, finish, extra=None) -> Iterator[Batch]:
    threads = torch.get_num_threads()
    it = iter(loader)
    try:
        for b, (x, y) in enumerate(it):
            # ffcv sets torch's thread count to its worker count; give the trainer its own back.
            torch.set_num_threads(threads)
            x, y = finish(x, y)
            yield (extra(b, x), y) if extra else (x, y)
    finally:
        it.close()  # stops ffcv's prefetch thread when the consumer leaves early
        torch.set_num_threads(threads)


class FFCVTrainStream:
    """`TrainStream` over a .beton: this rank's shard of `subset`, in shard_indices order."""

    def __init__(self, path: Path, subset: np.ndarray, cfg: DataConfig, pipelines, finish: _Output, *,
                 seed: int, rank: int, world_size: int, device):
        from ffcv.loader import Loader
        from ffcv.traversal_order import QuasiRandom
        from ffcv.traversal_order.base import TraversalOrder

        bs, self.seed, self.rank = cfg.batch_size, seed, rank
        self._len = train_batches_per_rank(len(subset), bs, world_size, str(path))
        quasi = cfg.ffcv.order == "quasi_random"
        if quasi and world_size > 1:
            raise DataError("data.ffcv.order=quasi_random is not supported with several ranks (FFCV cannot "
                            "shard it like DistributedSampler); use data.ffcv.order=random")
        n_used = self._len * bs

        class ShardOrder(TraversalOrder):
            """Loader(order=ShardOrder()) calls the instance with itself to bind it."""

            def __init__(self):
                self.start_batch = 0

            def __call__(self, loader):
                TraversalOrder.__init__(self, loader)
                self.quasi = QuasiRandom(loader) if quasi else None
                if quasi:  # ffcv shuffles this table in place; restoring it makes epochs replayable
                    self.pages = self.quasi.page_to_samples_array.copy()
                return self

            def sample_order(self, epoch: int):
                if self.quasi is not None:
                    self.quasi.page_to_samples_array = self.pages.copy()
                    order = self.quasi.sample_order(epoch)
                else:
                    pos = shard_indices(len(self.indices), epoch=epoch, seed=seed, rank=rank,
                                        world_size=world_size, shuffle=True, drop_last=True)
                    order = self.indices[np.asarray(pos, dtype=np.int64)]
                return order[:n_used][self.start_batch * bs:]

        self.order = ShardOrder()
        self.loader = Loader(str(path), batch_size=bs, num_workers=_threads(cfg), os_cache=cfg.ffcv.os_cache,
                             order=self.order, seed=seed, indices=subset, pipelines=pipelines, drop_last=True,
                             batches_ahead=cfg.ffcv.batches_ahead)
        self.finish = finish
        self.erase = None
        if cfg.aug.reprob > 0:
            from timm.data.random_erasing import RandomErasing
            self.erase = RandomErasing(cfg.aug.reprob, mode="pixel", max_count=1, device=device.type)

    def __len__(self) -> int:
        return self._len

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        check_start(start_batch, self._len)
        if start_batch == self._len:
            return iter(())
        self.order.start_batch = start_batch
        self.loader.next_epoch = epoch  # the loader asks its order for epoch `next_epoch`
        return _iterate(self.loader, self.finish, self._erase_fn(epoch, start_batch))

    def _erase_fn(self, epoch: int, start_batch: int):
        if self.erase is None:
            return None

        def erase(b: int, x: torch.Tensor) -> torch.Tensor:
            # Seeded per (epoch, rank, batch) and restoring the global RNGs: resumable, and the
            # trainer's dropout stream is untouched. Negative keys never collide with image indices.
            with seeded(self.seed, epoch, -1 - (self.rank << 32) - (start_batch + b)):
                return self.erase(x)
        return erase


class FFCVVal:
    """This rank's disjoint, unpadded share of the val set, in file order (as `val_batches`)."""

    def __init__(self, path: Path, subset: np.ndarray, cfg: DataConfig, pipelines, finish: _Output, *,
                 rank: int, world_size: int):
        from ffcv.loader import Loader, OrderOption

        share = subset[rank::world_size]
        self._len = len(val_batches(len(subset), cfg.eval_batch_size, rank=rank, world_size=world_size))
        if len(share) == 0:
            raise DataError(f"{path}: {len(subset)} val images leave rank {rank} of {world_size} none")
        self.loader = Loader(str(path), batch_size=cfg.eval_batch_size, num_workers=_threads(cfg),
                             os_cache=cfg.ffcv.os_cache, order=OrderOption.SEQUENTIAL, indices=share,
                             pipelines=pipelines, drop_last=False, batches_ahead=cfg.ffcv.batches_ahead)
        self.finish = finish

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Batch]:
        return _iterate(self.loader, self.finish)


def _subset(path: Path, info: dict, cfg: DataConfig, limit: Optional[int]):
    labels = torch.from_numpy(beton_labels(path))
    num_classes = int(info.get("num_classes") or int(labels.max()) + 1)
    keep, _, k = select(labels, num_classes, cfg.classes, limit, str(path))
    lut = None if cfg.classes is None else class_lut(num_classes, cfg.classes)
    return keep.numpy().astype(np.int64), lut, k


def build_ffcv_data(cfg: DataConfig, arch: ViTArch, *, rank: int, world_size: int, seed: int,
                    device: Optional[torch.device] = None) -> DataBundle:
    """The FFCV `DataBundle`. On a CUDA machine batches arrive on the current GPU (normalised there)."""
    threads = torch.get_num_threads()  # importing ffcv and building a Loader set it to FFCV's worker count
    require_ffcv()
    st = sidecar_stats(cfg, arch.in_chans)
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")
    if cfg.aug.randaugment:
        log.warning("data.aug.randaugment=%s is not applied by the FFCV loader (no RandAugment op in "
                    "ffcv 1.0.2); use the imagefolder format for it. See docs/ffcv.md", cfg.aug.randaugment)
    tpath, vpath = Path(cfg.train_path), Path(cfg.val_path)
    for p in (tpath, vpath):
        check_beton(p)
    tinfo, vinfo = read_sidecar(tpath), read_sidecar(vpath)
    if tinfo.get("classes") != vinfo.get("classes"):
        raise DataError(f"{tpath} and {vpath} were written with different class lists")
    # Normalised on 3 channels (FFCV decodes RGB); _Output then takes the model's channels.
    normalize, size = Normalize(st.mean, st.std), arch.img_size

    def output(lut):
        return _Output(normalize, arch.in_chans, bool(tinfo.get("grey")), lut, device)

    tkeep, tlut, k = _subset(tpath, tinfo, cfg, cfg.train_limit)
    vkeep, vlut, _ = _subset(vpath, vinfo, cfg, cfg.val_limit)
    train = FFCVTrainStream(tpath, tkeep, cfg, _pipelines(True, cfg, size, normalize, 1.0, device),
                            output(tlut), seed=seed, rank=rank, world_size=world_size, device=device)
    val = FFCVVal(vpath, vkeep, cfg, _pipelines(False, cfg, size, normalize, st.crop_pct, device),
                  output(vlut), rank=rank, world_size=world_size)
    torch.set_num_threads(threads)  # the trainer's own, as _iterate restores it after every batch
    return DataBundle(train=train, val=val, num_classes=k, preprocessing=st.preprocessing(arch.in_chans))
