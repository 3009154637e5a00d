"""DataBundle.preprocessing describes each loader's eval pipeline: timm's create_transform with those
fields gives the loader's very tensors, once normalised on the device as the trainer does (image
folders: RGB and grey, default and recipe statistics; Fashion-MNIST at its own size)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform

from tleg_dist.config import DataConfig
from tleg_dist.data import build_data
from tleg_dist.data.build import source_stats
from tleg_dist.data import fashion_mnist as fm
from tleg_dist.data.errors import DataError
from tleg_dist.data.imagefolder import scan
from tleg_dist.models.arch import ViTArch


def make_tree(root: Path) -> Path:
    rng = np.random.default_rng(2)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (19 + 5 * i, 30, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    return root


@pytest.mark.parametrize("in_chans, stats", [
    (3, {}), (1, {}),  # ImageNet's statistics (averaged for grey)
    (3, {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}), (3, {"mean": [0.5], "std": [0.2]}),
    (1, {"mean": [0.4], "std": [0.25]}), (1, {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}),
])
def test_image_folder_eval_is_timms_transform_from_the_fields(tmp_path, in_chans, stats):
    data = DataConfig(format="imagefolder", root=make_tree(tmp_path), batch_size=2, eval_batch_size=8, **stats)
    arch = ViTArch(img_size=16, patch_size=4, in_chans=in_chans, num_classes=2)
    bundle = build_data(data, arch, rank=0, world_size=1, seed=0)
    run_x = torch.cat([bundle.prepare(x) for x, _ in bundle.val])  # the loader's pixels, normalised as on the device
    transform = create_transform(input_size=(in_chans, 16, 16), **bundle.preprocessing)
    _, paths, _ = scan(tmp_path / "val", ["a", "b"])
    timm_x = torch.stack([transform(Image.open(p).convert("RGB" if in_chans == 3 else "L")) for p in paths])
    assert torch.equal(timm_x, run_x)


@pytest.mark.skipif(not (fm.DEFAULT_ROOT / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_at_its_own_size():
    bundle = build_data(DataConfig(val_limit=4, eval_batch_size=4), ViTArch(), rank=0, world_size=1, seed=0)
    images, _ = next(iter(bundle.val))
    want = bundle.prepare(images)  # the batch's on-device normalisation
    transform = create_transform(input_size=(1, 28, 28), **bundle.preprocessing)
    got = torch.stack([transform(Image.fromarray(im[0].numpy(), mode="L")) for im in images])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_ffcv_run_whose_betons_are_gone_is_an_error_not_imagenet_defaults(tmp_path):
    # Exporting an FFCV run from another working directory (relative .beton paths) or after the
    # betons were moved: the sidecars holding its statistics and crop cannot be read. Recording
    # ImageNet's instead would have timm feed e.g. a Fashion-MNIST model the wrong pixels.
    data = DataConfig(format="ffcv", train_path=tmp_path / "train.beton", val_path=tmp_path / "val.beton")
    with pytest.raises(DataError, match="train.beton"):
        source_stats(data, 1)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_every_source_records_the_statistics_it_normalises_with(in_chans):
    arch = ViTArch(img_size=8, patch_size=4, in_chans=in_chans, num_classes=4)
    b = build_data(DataConfig(format="synthetic", synthetic_size=16, batch_size=4), arch, rank=0, world_size=1, seed=0)
    for key in ("mean", "std"):
        assert torch.equal(torch.tensor(b.preprocessing[key]), getattr(b.prepare, key)[:in_chans])
