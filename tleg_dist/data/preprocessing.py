"""Transitional: a run's eval preprocessing re-derived from its data config, for the export code
that does not yet read the one the run recorded (`DataBundle.preprocessing`, decision 4 of the
plan). It asks the one per-format switch (`build.source_stats`); delete it with its last caller.
"""

from __future__ import annotations

from tleg_dist.config import DataConfig

# The DataConfig fields the eval transform depends on: a checkpoint's recorded config may hold
# keys this version no longer knows, which must not stop its export.
_FIELDS = ("format", "mean", "std", "train_path", "val_path")


def eval_preprocessing(data: DataConfig | dict | None, in_chans: int) -> dict:
    """`DataBundle.preprocessing` of `data` (a section or its dict; None: an image folder with the
    default statistics), without building the data."""
    from tleg_dist.data.build import source_stats

    cfg = data if isinstance(data, DataConfig) else DataConfig.model_validate(
        {k: v for k, v in (data or {"format": "imagefolder"}).items() if k in _FIELDS})
    return source_stats(cfg, in_chans).preprocessing(in_chans)
