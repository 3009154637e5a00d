"""FFCV error paths: ffcv missing, .beton missing or truncated, incomplete config."""

import importlib.util
import shutil
import subprocess
import sys

import pytest

from tleg_dist.config import DataConfig
from tleg_dist.data import DataError, build_data
from tleg_dist.data.ffcv_beton import FFCVNotInstalledError
from tleg_dist.data.ffcv_loader import build_ffcv_data
from tleg_dist.models.arch import ViTArch

HAVE_FFCV = importlib.util.find_spec("ffcv") is not None
needs_ffcv = pytest.mark.skipif(not HAVE_FFCV, reason="needs ffcv")


def cfg(train="train.beton", val="val.beton", **kw):
    return DataConfig(format="ffcv", train_path=train, val_path=val, **kw)


@pytest.fixture
def no_ffcv(monkeypatch):
    """Make `import ffcv...` fail as it does where ffcv is not installed."""
    for name in [m for m in sys.modules if m == "ffcv" or m.startswith("ffcv.")] + ["ffcv", "ffcv.loader"]:
        monkeypatch.setitem(sys.modules, name, None)


def test_without_ffcv_the_error_says_how_to_install(no_ffcv, tmp_path):
    for build in (build_ffcv_data, build_data):  # directly, and through the format dispatch
        with pytest.raises(DataError, match=r"pip install -e '\.\[ffcv\]'"):
            build(cfg(), ViTArch(), rank=0, world_size=1, seed=0)
    from tleg_dist.data.write_ffcv import main
    with pytest.raises(FFCVNotInstalledError, match="libturbojpeg0-dev"):
        main(["--source", "fashion_mnist", "--out-dir", str(tmp_path), "--limit", "10"])


def test_package_imports_without_ffcv():
    code = ("import sys; sys.modules['ffcv'] = None\n"
            "import tleg_dist.config, tleg_dist.data, tleg_dist.data.ffcv_loader, tleg_dist.data.write_ffcv\n"
            "tleg_dist.config.load(None, ['data.format=ffcv', 'data.train_path=a.beton'])\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@needs_ffcv
@pytest.mark.ffcv
@pytest.mark.parametrize("missing", ["train_path", "val_path"])
def test_config_needs_both_files(missing):
    c = cfg()
    setattr(c, missing, None)
    with pytest.raises(DataError, match="data.train_path and data.val_path"):
        build_ffcv_data(c, ViTArch(), rank=0, world_size=1, seed=0)


@pytest.fixture(scope="module")
def beton(fmnist_beton):
    return fmnist_beton("val", 64)


@needs_ffcv
@pytest.mark.ffcv
def test_missing_file_is_named(beton, tmp_path):
    missing = tmp_path / "nope.beton"
    with pytest.raises(DataError, match=f"{missing} does not exist.*write_ffcv"):
        build_ffcv_data(cfg(missing, beton), ViTArch(), rank=0, world_size=1, seed=0)


@needs_ffcv
@pytest.mark.ffcv
@pytest.mark.parametrize("cut_at", [lambda n: 10, lambda n: n // 2, lambda n: n - 8],
                         ids=["in-header", "half", "in-last-table-entry"])
def test_truncated_file_is_detected(beton, tmp_path, cut_at):
    data = beton.read_bytes()
    cut = tmp_path / beton.name
    cut.write_bytes(data[:cut_at(len(data))])
    shutil.copy(beton.with_suffix(".json"), cut.with_suffix(".json"))
    with pytest.raises(DataError, match=f"{cut}: .*(truncated|too short)"):
        build_ffcv_data(cfg(beton, cut), ViTArch(), rank=0, world_size=1, seed=0)
