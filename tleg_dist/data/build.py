"""`build_data`: the one entry point from a `DataConfig` to a `DataBundle`.

    bundle = build_data(cfg.data, cfg.model.arch(), rank=r, world_size=w, seed=cfg.seed)
    for x, y in to_device(bundle.train.epoch(epoch, start_batch), device, bundle.prepare): ...

Every source applies `data.classes` (relabelled 0..k-1), `train_limit`/`val_limit`, the shared
sampler (`sampler.py`) and, when mixup/cutmix is on, a timm `Mixup` for the trainer to apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import torch
from timm.data import Mixup

from tleg_dist.config import DataConfig
from tleg_dist.data import digits
from tleg_dist.data import fashion_mnist as fm
from tleg_dist.data import synthetic
from tleg_dist.data.base import DataBundle
from tleg_dist.data.device import pin
from tleg_dist.data.errors import DataError
from tleg_dist.data.ffcv_beton import sidecar_stats
from tleg_dist.data.fingerprint import fingerprint
from tleg_dist.data.imagefolder import ImageFiles, scan
from tleg_dist.data.normalize import SourceStats, folder_stats
from tleg_dist.data.streams import IndexedTrainStream, IndexedVal, dataloader_loader, select, tensor_loader
from tleg_dist.data.transforms import eval_transform, has_image_aug, train_transform
from tleg_dist.models.arch import ViTArch


def _uses_mixup(cfg: DataConfig) -> bool:
    return cfg.aug.mixup > 0 or cfg.aug.cutmix > 0


def source_stats(cfg: DataConfig, in_chans: int) -> SourceStats:
    """What `cfg`'s source normalises with and how it frames eval images; every builder takes its
    `prepare` and its recorded `preprocessing` from this."""
    return _SOURCES[cfg.format].stats(cfg, in_chans)


def _bundle(cfg, train_n, train_load, val_n, val_load, num_classes, st: SourceStats, prepare, *, rank, world_size,
            seed, name, plain=None, fingerprint=None):
    train = IndexedTrainStream(train_n, cfg.batch_size, train_load, seed=seed, rank=rank,
                               world_size=world_size, name=name, plain=plain)
    val = IndexedVal(val_n, cfg.eval_batch_size, val_load, rank=rank, world_size=world_size)
    return DataBundle(train=train, val=val, num_classes=num_classes, prepare=prepare, train_fingerprint=fingerprint,
                      preprocessing=st.preprocessing(prepare.in_chans))


def _grey_in_memory(cfg: DataConfig, arch: ViTArch, *, rank, world_size, seed, device) -> DataBundle:
    """In-memory grey (N x H x W uint8, labels) splits: Fashion-MNIST and digits."""
    if cfg.format == "digits":
        # Upsampled once to the model's size on the host; Normalize's resize then has nothing to do.
        (tr_x, tr_y), (va_x, va_y) = digits.load_splits(arch.img_size)
        num_classes, name = digits.NUM_CLASSES, "digits"
    else:
        (tr_x, tr_y), (va_x, va_y) = fm.load_split(cfg.root, "train"), fm.load_split(cfg.root, "val")
        num_classes, name = fm.NUM_CLASSES, "Fashion-MNIST"
    keep, tr_y, k = select(tr_y, num_classes, cfg.classes, cfg.train_limit, f"{name} train")
    tr_x = tr_x[keep] if cfg.classes is not None else tr_x[:len(keep)]
    vkeep, va_y, _ = select(va_y, num_classes, cfg.classes, cfg.val_limit, f"{name} val")
    va_x = va_x[vkeep] if cfg.classes is not None else va_x[:len(vkeep)]
    c, s = arch.in_chans, arch.img_size
    st = source_stats(cfg, c)
    prepare = st.normalize(c, s)

    # Whole uint8 batches by tensor indexing: no DataLoader, no per-image Python.
    plain = tensor_loader(lambda idx: pin(tr_x[idx].unsqueeze(1), tr_y[idx]))
    if has_image_aug(cfg.aug):
        ds = fm.AugmentedImages(tr_x, tr_y, train_transform(cfg.aug, s, st.mean, st.std), c, seed)
        train_load = dataloader_loader(ds, cfg.num_workers, even=_uses_mixup(cfg))
    else:
        train_load = plain
    # Evaluation never augments, so it always takes the fast path.
    val_load = tensor_loader(lambda idx: pin(va_x[idx].unsqueeze(1), va_y[idx]))
    fp = fingerprint({"images": tr_x, "labels": tr_y}, {"source": name, "prepare": prepare.params()})
    return _bundle(cfg, len(tr_y), train_load, len(va_y), val_load, k, st, prepare, rank=rank,
                   world_size=world_size, seed=seed, name=f"{name} train", plain=plain, fingerprint=fp)


def _imagefolder(cfg: DataConfig, arch: ViTArch, *, rank, world_size, seed, device) -> DataBundle:
    if cfg.root is None:
        raise DataError("data.root is required for data.format=imagefolder (ROOT/train, ROOT/val)")
    root = Path(cfg.root)
    names, paths, labels = scan(root / "train")
    _, vpaths, vlabels = scan(root / "val", names)
    keep, labels, k = select(labels, len(names), cfg.classes, cfg.train_limit, f"{root / 'train'}")
    vkeep, vlabels, _ = select(vlabels, len(names), cfg.classes, cfg.val_limit, f"{root / 'val'}")
    st = source_stats(cfg, arch.in_chans)
    common = dict(in_chans=arch.in_chans, seed=seed, on_bad_image=cfg.on_bad_image)
    # Training always goes through the seeded path: even the crop of a non-square image draws RNG.
    train_ds = ImageFiles([paths[i] for i in keep.tolist()], labels,
                          train_transform(cfg.aug, arch.img_size, st.mean, st.std), augment=True, **common)
    val_ds = ImageFiles([vpaths[i] for i in vkeep.tolist()], vlabels,
                        eval_transform(arch.img_size, st.crop_pct), augment=False, **common)
    return _bundle(cfg, len(train_ds), dataloader_loader(train_ds, cfg.num_workers, even=_uses_mixup(cfg)),
                   len(val_ds), dataloader_loader(val_ds, cfg.num_workers), k, st, st.normalize(arch.in_chans),
                   rank=rank, world_size=world_size, seed=seed, name=f"{root / 'train'}")


def _synthetic(cfg: DataConfig, arch: ViTArch, *, rank, world_size, seed, device) -> DataBundle:
    """Made on `device`, batch by batch. Per-image augmentation does not apply here; mixup/cutmix still do."""
    train, val = (synthetic.SyntheticImages(cfg.synthetic_size, split=split, num_classes=arch.num_classes,
                                            in_chans=arch.in_chans, img_size=arch.img_size, seed=seed,
                                            device=device) for split in ("train", "val"))
    keep, tr_y, k = select(train.labels, arch.num_classes, cfg.classes, cfg.train_limit, "synthetic train")
    vkeep, va_y, _ = select(val.labels, arch.num_classes, cfg.classes, cfg.val_limit, "synthetic val")
    keep, tr_y, vkeep, va_y = (t.to(device) for t in (keep, tr_y, vkeep, va_y))
    st = source_stats(cfg, arch.in_chans)
    prepare = st.normalize(arch.in_chans)
    train_load = tensor_loader(lambda idx: (train.images(keep[idx]), tr_y[idx]), device)
    # The images are a function of these parameters (synthetic.py), so they stand for the pixels.
    fp = fingerprint({"indices": keep, "labels": tr_y},
                     {"source": "synthetic", "version": synthetic.VERSION, "seed": seed,
                      "size": cfg.synthetic_size, "num_classes": arch.num_classes, "in_chans": arch.in_chans,
                      "img_size": arch.img_size, "prepare": prepare.params()})
    return _bundle(cfg, len(keep), train_load, len(vkeep),
                   tensor_loader(lambda idx: (val.images(vkeep[idx]), va_y[idx]), device), k,
                   st, prepare, rank=rank, world_size=world_size, seed=seed, name="synthetic train",
                   plain=train_load, fingerprint=fp)


def _ffcv(cfg: DataConfig, arch: ViTArch, *, rank, world_size, seed, device) -> DataBundle:
    # Imported here: the FFCV path is optional and says itself what to install when it is missing.
    from tleg_dist.data.ffcv_loader import build_ffcv_data
    return build_ffcv_data(cfg, arch, rank=rank, world_size=world_size, seed=seed, device=device)


class Source(NamedTuple):
    stats: Callable[[DataConfig, int], SourceStats]  # (data config, model channels) -> statistics
    build: Callable[..., DataBundle]


def _folder(cfg: DataConfig, in_chans: int) -> SourceStats:
    return SourceStats(*folder_stats(cfg, in_chans))


# The one switch over data.format. Grey sets are seen whole at their own size and resized bilinearly;
# synthetic images are made at the model's size; image folders and .betons are cropped DeiT's way.
_SOURCES = {"fashion_mnist": Source(lambda cfg, c: SourceStats.grey(fm.MEAN, fm.STD), _grey_in_memory),
            "digits": Source(lambda cfg, c: SourceStats.grey(digits.MEAN, digits.STD), _grey_in_memory),
            "imagefolder": Source(_folder, _imagefolder),
            "synthetic": Source(lambda cfg, c: SourceStats.grey(synthetic.MEAN, synthetic.STD), _synthetic),
            "ffcv": Source(sidecar_stats, _ffcv)}


def build_mixup(cfg: DataConfig, num_classes: int):
    """timm Mixup/CutMix (+ label smoothing), or None when both are off."""
    if not _uses_mixup(cfg):
        return None
    if cfg.batch_size % 2:
        raise DataError(f"data.batch_size={cfg.batch_size} must be even with mixup/cutmix (timm mixes pairs)")
    return Mixup(mixup_alpha=cfg.aug.mixup, cutmix_alpha=cfg.aug.cutmix,
                 label_smoothing=cfg.aug.label_smoothing, num_classes=num_classes)


def build_data(cfg: DataConfig, arch: ViTArch, *, rank: int, world_size: int, seed: int,
               device: torch.device | str = "cpu") -> DataBundle:
    """`device`: the training device; synthetic batches are made there and FFCV delivers there."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size - 1}]")
    device = torch.device(device)
    bundle = _SOURCES[cfg.format].build(cfg, arch, rank=rank, world_size=world_size, seed=seed, device=device)
    bundle.mixup = build_mixup(cfg, bundle.num_classes)
    return bundle
