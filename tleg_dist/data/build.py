"""`build_data`: the one entry point from a `DataConfig` to a `DataBundle`.

    bundle = build_data(cfg.data, cfg.model.arch(), rank=r, world_size=w, seed=cfg.seed)
    for x, y in to_device(bundle.train.epoch(epoch, start_batch), device, bundle.prepare): ...

Every source selects its training subset, validation split and test set alike (`splits.py`: data.classes,
train_limit / train_per_class, val_split, eval_on, val_limit), shards them with the shared sampler
(`sampler.py`) and, when mixup/cutmix is on, gets a timm `Mixup` for the trainer to apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import torch
from timm.data import Mixup

from tleg_dist.config import DataConfig
from tleg_dist.data import animal_mnist, digits
from tleg_dist.data import fashion_mnist as fm
from tleg_dist.data import synthetic
from tleg_dist.data.base import DataBundle
from tleg_dist.data.device import pin
from tleg_dist.data.errors import DataError
from tleg_dist.data.ffcv_beton import sidecar_stats
from tleg_dist.data.fingerprint import fingerprint
from tleg_dist.data.imagefolder import ImageFiles, scan
from tleg_dist.data.normalize import SourceStats, folder_stats
from tleg_dist.data.splits import select
from tleg_dist.data.streams import (IndexedTrainStream, IndexedVal, batch_augmented, dataloader_loader,
                                    tensor_loader)
from tleg_dist.data.transforms import eval_transform, has_image_aug, random_shift, train_transform
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


def _grey_pools(cfg: DataConfig, arch: ViTArch):
    """(name, class count, training pool, official test set or None): N x H x W uint8 and N labels."""
    if cfg.format == "digits":
        # Upsampled once to the model's size on the host; Normalize's resize then has nothing to do.
        pool, test = digits.load_splits(arch.img_size)
        return "digits", digits.NUM_CLASSES, pool, test
    if cfg.format == "animal_mnist":
        return "Animal-MNIST", animal_mnist.NUM_CLASSES, animal_mnist.load_pool(cfg.root), None
    return "Fashion-MNIST", fm.NUM_CLASSES, fm.load_split(cfg.root, "train"), fm.load_split(cfg.root, "val")


def _shifted(load, cfg: DataConfig, seed: int):
    """`load` with data.aug.random_shift applied to each batch, on tensors (no per-image PIL)."""
    if not cfg.aug.random_shift:
        return load
    pixels = cfg.aug.random_shift
    return batch_augmented(load, lambda x, idx, epoch: pin(random_shift(x, idx, epoch, seed, pixels))[0])


def _grey_in_memory(cfg: DataConfig, arch: ViTArch, *, rank, world_size, seed, device) -> DataBundle:
    """In-memory grey (N x H x W uint8, labels) sets: Fashion-MNIST, digits and Animal-MNIST."""
    name, num_classes, (px, py), test = _grey_pools(cfg, arch)
    sel = select(cfg, py, num_classes, None if test is None else test[1], name)
    tr_x, tr_y = px[sel.train], sel.train_labels
    ev_x, ev_y = (px if sel.eval_from_pool else test[0])[sel.eval], sel.eval_labels
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
    val_load = tensor_loader(lambda idx: pin(ev_x[idx].unsqueeze(1), ev_y[idx]))
    fp = fingerprint({"images": tr_x, "labels": tr_y}, {"source": name, "prepare": prepare.params()})
    return _bundle(cfg, len(tr_y), _shifted(train_load, cfg, seed), len(ev_y), val_load, sel.num_classes, st,
                   prepare, rank=rank, world_size=world_size, seed=seed, name=f"{name} train", plain=plain,
                   fingerprint=fp)


def _imagefolder(cfg: DataConfig, arch: ViTArch, *, rank, world_size, seed, device) -> DataBundle:
    if cfg.root is None:
        raise DataError("data.root is required for data.format=imagefolder (ROOT/train, ROOT/val)")
    root = Path(cfg.root)
    names, paths, labels = scan(root / "train")
    # The test set is ROOT/val; a validation split is held out of ROOT/train.
    _, vpaths, vlabels = scan(root / "val", names) if cfg.eval_on == "test" else (names, [], None)
    sel = select(cfg, labels, len(names), vlabels, f"{root / 'train'}")
    st = source_stats(cfg, arch.in_chans)
    common = dict(in_chans=arch.in_chans, seed=seed, on_bad_image=cfg.on_bad_image)
    # Training always goes through the seeded path: even the crop of a non-square image draws RNG.
    train_ds = ImageFiles([paths[i] for i in sel.train.tolist()], sel.train_labels,
                          train_transform(cfg.aug, arch.img_size, st.mean, st.std), augment=True, **common)
    val_ds = ImageFiles([(paths if sel.eval_from_pool else vpaths)[i] for i in sel.eval.tolist()], sel.eval_labels,
                        eval_transform(arch.img_size, st.crop_pct), augment=False, **common)
    return _bundle(cfg, len(train_ds), dataloader_loader(train_ds, cfg.num_workers, even=_uses_mixup(cfg)),
                   len(val_ds), dataloader_loader(val_ds, cfg.num_workers), sel.num_classes, st,
                   st.normalize(arch.in_chans), rank=rank, world_size=world_size, seed=seed, name=f"{root / 'train'}")


def _synthetic(cfg: DataConfig, arch: ViTArch, *, rank, world_size, seed, device) -> DataBundle:
    """Made on `device`, batch by batch. Per-image augmentation does not apply here; mixup/cutmix and
    random_shift still do."""
    train, test = (synthetic.SyntheticImages(cfg.synthetic_size, split=split, num_classes=arch.num_classes,
                                             in_chans=arch.in_chans, img_size=arch.img_size, seed=seed,
                                             device=device) for split in ("train", "val"))
    sel = select(cfg, train.labels, arch.num_classes, test.labels, "synthetic")
    keep, tr_y, ev_keep, ev_y = (t.to(device) for t in (sel.train, sel.train_labels, sel.eval, sel.eval_labels))
    ev_source = train if sel.eval_from_pool else test
    st = source_stats(cfg, arch.in_chans)
    prepare = st.normalize(arch.in_chans)
    plain = tensor_loader(lambda idx: (train.images(keep[idx]), tr_y[idx]), device)
    # The images are a function of these parameters (synthetic.py), so they stand for the pixels.
    fp = fingerprint({"indices": keep, "labels": tr_y},
                     {"source": "synthetic", "version": synthetic.VERSION, "seed": seed,
                      "size": cfg.synthetic_size, "num_classes": arch.num_classes, "in_chans": arch.in_chans,
                      "img_size": arch.img_size, "prepare": prepare.params()})
    return _bundle(cfg, len(keep), _shifted(plain, cfg, seed), len(ev_keep),
                   tensor_loader(lambda idx: (ev_source.images(ev_keep[idx]), ev_y[idx]), device), sel.num_classes,
                   st, prepare, rank=rank, world_size=world_size, seed=seed, name="synthetic train",
                   plain=plain, fingerprint=fp)


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
            "animal_mnist": Source(lambda cfg, c: SourceStats.grey(animal_mnist.MEAN, animal_mnist.STD),
                                   _grey_in_memory),
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
        raise DataError(f"rank {rank} is outside [0, {world_size - 1}] (world size {world_size}): check the "
                        "launcher's RANK and WORLD_SIZE")
    device = torch.device(device)
    bundle = _SOURCES[cfg.format].build(cfg, arch, rank=rank, world_size=world_size, seed=seed, device=device)
    bundle.mixup = build_mixup(cfg, bundle.num_classes)
    return bundle
