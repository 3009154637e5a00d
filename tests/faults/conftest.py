"""Uninterrupted reference runs, made once per session: every fault test that resumes must end
with exactly their weights (CPU, fixed seed, so bit-for-bit)."""

from __future__ import annotations

import pytest
from fault_helpers import run, write_recipe


@pytest.fixture(scope="session")
def fault_root(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="session")
def recipe(fault_root):
    return write_recipe(fault_root / "recipe.yaml")


@pytest.fixture(scope="session")
def reference_1rank(fault_root, recipe):
    """Run folder of an uninterrupted single-process run (ZeRO-0)."""
    out = fault_root / "reference_1rank"
    rc, log = run(recipe, out)
    assert rc == 0, log[-3000:]
    return out


@pytest.fixture(scope="session")
def reference_2rank(fault_root, recipe):
    """Run folder of an uninterrupted 2-rank `deepspeed` run (ZeRO-2: optimizer state sharded)."""
    out = fault_root / "reference_2rank"
    rc, log = run(recipe, out, ranks=2, ds="configs/ds/zero2.json", timeout=600)
    assert rc == 0, log[-3000:]
    return out
