"""FFCV writer: round trips through ffcv's own loader (raw exact, JPEG close), bad images, naming."""

import json

import numpy as np
import pytest
from PIL import Image

from tleg_dist.data.write_ffcv import WriteSettings, beton_name, main

ffcv = pytest.importorskip("ffcv")
# numba's dispatcher finalizer raises a harmless KeyError when ffcv's compiled pipelines are freed.
pytestmark = [pytest.mark.ffcv, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

from tleg_dist.data import BadImageError, fashion_mnist as fm  # noqa: E402
from tleg_dist.data.ffcv_beton import beton_labels, check_beton, sidecar_path  # noqa: E402
from tleg_dist.data.ffcv_compat import resize_as_written  # noqa: E402


def read_all(path):
    """Every (image HxWx3 uint8, label) of a constant-size .beton, through ffcv's Loader."""
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor

    loader = Loader(str(path), batch_size=64, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder(), ToTensor()]})
    xs, ys = [], []
    for x, y in loader:
        xs.append(np.array(x))  # copies: the loader reuses its buffers
        ys.append(y.numpy().reshape(-1).copy())
    return np.concatenate(xs), np.concatenate(ys)


def smooth_image(rng, w, h):
    """Photo-like content (gradients, a blob), so JPEG errors are typical rather than worst-case noise."""
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    c = rng.uniform(0, 1, (3, 3))
    img = np.stack([c[k, 0] * xx + c[k, 1] * yy + c[k, 2] * np.exp(-((xx - .5) ** 2 + (yy - .4) ** 2) * 8)
                    for k in range(3)], axis=-1)
    return (255 * img / img.max()).astype(np.uint8)


def make_tree(root, n=8, size=(48, 40), bad=()):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("ant", "bee", "cat"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(smooth_image(rng, *size)).save(d / f"{i:02d}.jpg", quality=95)
    for rel in bad:
        p = root / rel
        p.write_bytes(p.read_bytes()[:200] if p.exists() else b"not an image")
    return root


def test_names_state_the_settings():
    assert beton_name("fashion_mnist", "train", WriteSettings()) == "fashion_mnist_train_raw_maxorig.beton"
    s = WriteSettings(write_mode="proportion", max_side=500, compress_prob=0.5, jpeg_quality=90, limit=100)
    assert beton_name("imagefolder", "val", s) == "imagefolder_val_prop0.50_q90_max500_n100.beton"
    assert beton_name("x", "train", WriteSettings(write_mode="jpg", jpeg_quality=75)) == "x_train_jpg_q75_maxorig.beton"
    with pytest.raises(ValueError, match="write_mode"):
        WriteSettings(write_mode="png")


def test_fashion_mnist_raw_round_trip_is_bit_exact(tmp_path):
    (out,) = main(["--source", "fashion_mnist", "--out-dir", str(tmp_path), "--splits", "val",
                   "--limit", "300", "--workers", "2", "--chunk-size", "50"])
    assert out.name == "fashion_mnist_val_raw_maxorig_n300.beton"
    x, y = read_all(out)
    src_x, src_y = fm.load_split(None, "val")
    assert x.shape == (300, 28, 28, 3)
    assert np.array_equal(x, np.repeat(src_x[:300].numpy()[..., None], 3, axis=-1))
    assert np.array_equal(y, src_y[:300].numpy())
    side = json.loads(sidecar_path(out).read_text())
    assert side["num_samples"] == 300 and side["skipped"] == 0 and side["verified_samples"] == 8
    assert side["grey"] and side["settings"]["write_mode"] == "raw"
    with pytest.raises(FileExistsError, match="--force"):
        main(["--source", "fashion_mnist", "--out-dir", str(tmp_path), "--splits", "val", "--limit", "300"])


def test_jpg_round_trip_within_tolerance_and_corrupt_image_skipped(tmp_path, caplog):
    root = make_tree(tmp_path / "tree", bad=["train/bee/03.jpg", "train/cat/zz_garbage.jpg"])
    (out,) = main(["--source", "imagefolder", "--root", str(root), "--out-dir", str(tmp_path / "out"),
                   "--splits", "train", "--write-mode", "jpg", "--jpeg-quality", "90", "--max-side", "32",
                   "--workers", "2", "--chunk-size", "4", "--on-bad-image", "skip"])
    assert out.name == "imagefolder_train_jpg_q90_max32.beton"
    side = json.loads(sidecar_path(out).read_text())
    assert side["skipped"] == 2 and side["num_samples"] == 3 * 8 + 1 - 2
    assert sorted(side["skipped_images"]) == sorted(str(root / r) for r in ["train/bee/03.jpg",
                                                                             "train/cat/zz_garbage.jpg"])
    assert "train/bee/03.jpg" in caplog.text
    assert check_beton(out) == 23
    x, y = read_all(out)  # the compacted file still loads, sample for sample
    kept = [(c, f"{i:02d}.jpg") for c in ("ant", "bee", "cat") for i in range(8) if (c, i) != ("bee", 3)]
    assert y.tolist() == [("ant", "bee", "cat").index(c) for c, _ in kept] == beton_labels(out).tolist()
    errors = []
    for img, (c, f) in zip(x, kept):
        src = resize_as_written(np.asarray(Image.open(root / "train" / c / f).convert("RGB")), 32)
        assert img.shape == src.shape == (26, 32, 3)
        errors.append(np.abs(img.astype(int) - src.astype(int)).mean())
    assert 0 < max(errors) < 3  # lossy, but close at quality 90


def test_corrupt_image_stops_the_run_naming_it(tmp_path):
    root = make_tree(tmp_path / "tree", n=3, bad=["train/ant/01.jpg"])
    with pytest.raises(BadImageError, match=r"train/ant/01\.jpg") as e:
        main(["--source", "imagefolder", "--root", str(root), "--out-dir", str(tmp_path / "out"),
              "--splits", "train", "--workers", "2"])
    assert "--on-bad-image skip" in str(e.value)
    assert list((tmp_path / "out").iterdir()) == []  # no file, no temporary left behind


@pytest.mark.timeout(90, method="signal")  # signal: the writer's finally still ends its processes
def test_writer_dying_after_its_last_image_stops_the_run(tmp_path, monkeypatch):
    """A writer process that fails writing its last page (as on a full disk) once every image has
    been counted: the run stops with an error instead of waiting forever for its allocations."""
    import time

    from ffcv.memory_allocator import MemoryAllocator

    from tleg_dist.data import DataError

    def fail_last_flush(self, *exc):  # runs in the (forked) writer process
        time.sleep(0.5)  # the last image is counted by now
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MemoryAllocator, "__exit__", fail_last_flush)
    with pytest.raises(DataError, match="writer process died"):
        main(["--source", "fashion_mnist", "--out-dir", str(tmp_path), "--splits", "val", "--limit", "40",
              "--workers", "1"])
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind
