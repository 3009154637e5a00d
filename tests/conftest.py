"""Shared fixtures. Keep this file small: fixtures used by one test file live in that file."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch

from tleg_dist.models.arch import ViTArch


@pytest.fixture
def seeded():
    """A fixed torch seed, so a failing test fails the same way on the next run."""
    torch.manual_seed(0)
    return 0


@pytest.fixture
def toy_arch() -> ViTArch:
    """The smallest ViT with every feature: 4 heads, an MLP, 4 patches, 2+ classes."""
    return ViTArch(embed_dim=32, num_heads=4, mlp_ratio=2.0, patch_size=4, img_size=8, in_chans=1, num_classes=5)


@pytest.fixture
def randomize():
    """randomize(module): add noise to every parameter. The fresh init leaves biases,
    LayerNorm shifts and LayerNorm theta_B at 0, which would hide bugs in those paths."""

    @torch.no_grad()
    def randomize_(module: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)
        return module

    return randomize_


@pytest.fixture(autouse=True, scope="module")
def _free_ffcv_pipelines(request):
    """In a module marked ffcv: free ffcv's compiled pipelines before the module ends, where its
    filterwarnings mark hides numba's harmless finalizer KeyError (raised when they are freed),
    instead of in whichever test runs later."""
    yield
    if request.node.get_closest_marker("ffcv"):
        gc.collect()


@pytest.fixture(scope="session")
def fmnist_beton(tmp_path_factory):
    """fmnist_beton(split, n): a .beton (with its sidecar) of the first n Fashion-MNIST images of
    `split`, written once per session and shared: copy it before changing it. Skips without ffcv."""
    pytest.importorskip("ffcv")
    from tleg_dist.data.write_ffcv import main as write_ffcv

    written: dict[tuple[str, int], Path] = {}

    def beton(split: str, n: int) -> Path:
        if (split, n) not in written:
            out = tmp_path_factory.mktemp(f"ffcv_{split}_{n}")
            written[split, n], = write_ffcv(["--source", "fashion_mnist", "--out-dir", str(out), "--splits", split,
                                             "--limit", str(n), "--workers", "1", "--verify", "2"])
        return written[split, n]

    return beton
