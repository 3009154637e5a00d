"""A run's evaluation preprocessing, as timm `pretrained_cfg` fields.

Exported models carry these fields, so that `timm.data.resolve_data_config(model=m)` and
`create_transform(**that)` rebuild the run's eval transform. The loaders own the pipelines;
this module only describes them, from the same constants and statistics they use.
"""

from __future__ import annotations

from tleg_dist.config import DataConfig
from tleg_dist.data import digits
from tleg_dist.data.errors import DataError
from tleg_dist.data.transforms import (EVAL_CROP_PCT, FASHION_MNIST_MEAN, FASHION_MNIST_STD, INTERPOLATION,
                                       folder_stats, imagenet_stats, stats)


def _fields(interpolation: str, crop_pct: float, mean, std, in_chans: int) -> dict:
    # A grey model sees channel 0 of identical channels: its statistics have one value per model channel.
    return dict(interpolation=interpolation, crop_pct=crop_pct, crop_mode="center",
                mean=[float(m) for m in mean[:in_chans]], std=[float(s) for s in std[:in_chans]])


# The DataConfig fields the eval transform depends on: a checkpoint's recorded config may hold
# keys this version no longer knows, which must not stop its export.
_FIELDS = ("format", "mean", "std", "train_path", "val_path")


def eval_preprocessing(data: DataConfig | dict | None, in_chans: int) -> dict:
    """interpolation, crop_pct, crop_mode, mean and std of the eval transform for `data` (a section or its
    dict; None: an image folder with the default statistics)."""
    cfg = data if isinstance(data, DataConfig) else DataConfig.model_validate(
        {k: v for k, v in (data or {"format": "imagefolder"}).items() if k in _FIELDS})
    if cfg.format == "fashion_mnist":  # whole 28x28 images, bilinear resize, one grey statistic
        return _fields("bilinear", 1.0, [FASHION_MNIST_MEAN] * 3, [FASHION_MNIST_STD] * 3, in_chans)
    if cfg.format == "digits":  # 8x8 digits, bilinear up to the model's size, one grey statistic
        return _fields("bilinear", 1.0, [digits.MEAN] * 3, [digits.STD] * 3, in_chans)
    if cfg.format == "imagefolder":
        return _fields(INTERPOLATION, EVAL_CROP_PCT, *folder_stats(cfg, in_chans), in_chans)
    if cfg.format == "ffcv" and cfg.train_path is not None and cfg.val_path is not None:
        from tleg_dist.data.ffcv_beton import read_sidecar  # JSON only: no FFCV needed

        # The statistics and crop are the loader's exactly; FFCV resizes with OpenCV's area
        # filter, which timm cannot name, so the interpolation is the image-folder one.
        for beton in (cfg.train_path, cfg.val_path):
            # A beton without a sidecar was read as ImageNet-style data, but one that is gone says
            # nothing: guessing ImageNet's statistics would record the wrong pipeline.
            if not beton.is_file():
                raise DataError(f"{beton}: not found; an FFCV run's eval statistics and crop are read "
                                "from its .beton sidecars (run from the training's working directory)")
        tinfo, vinfo = read_sidecar(cfg.train_path), read_sidecar(cfg.val_path)
        return _fields(INTERPOLATION, float(vinfo["eval_crop"]), *stats(in_chans, tinfo["mean"], tinfo["std"]),
                       in_chans)
    # Synthetic images are generated already normalised: describe photos the ImageNet way.
    return _fields(INTERPOLATION, EVAL_CROP_PCT, *imagenet_stats(in_chans), in_chans)
