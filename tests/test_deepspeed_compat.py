"""training/deepspeed_compat.py names DeepSpeed's shared-memory all-reduce buffers as DeepSpeed makes them.

A fresh process initialises DeepSpeed's process group (1 rank, LOCAL_SIZE=1: the shared-memory
all-reduce is on) and looks for the segment under the name the compat module gives, before and
after the trainer's clean-up. If a DeepSpeed release renames it, this fails instead of /dev/shm
filling up unnoticed.
"""

import subprocess
import sys

import pytest
from _launch import ROOT, clean_env, free_port

from tleg_dist.training import deepspeed_compat

CHILD = """
import os, deepspeed
from tleg_dist.training import deepspeed_compat, distributed
path = deepspeed_compat.shm_buffer(0)
deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
made = path.exists()
distributed._unlink_shm_buffers()
print(made, path.exists(), sorted(p.name for p in path.parent.glob(deepspeed_compat.SHM_BUFFER_GLOB)
                                   if p.name.endswith("_" + os.environ["MASTER_PORT"] + "_0")))
"""


@pytest.mark.skipif(not deepspeed_compat.SHM_DIR.is_dir(), reason="no /dev/shm")
def test_shm_buffer_is_named_as_deepspeed_makes_it_and_unlinked():
    env = clean_env(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_SIZE="1", MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=str(free_port()), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    made, left, others = r.stdout.strip().splitlines()[-1].split(" ", 2)
    assert made == "True", (f"DeepSpeed made no {deepspeed_compat.shm_buffer(0).name}: it names its shared-memory "
                            f"all-reduce buffer differently now (checked with {deepspeed_compat.CHECKED_WITH}); "
                            f"update training/deepspeed_compat.py:\n{r.stdout[-2000:]}")
    assert (left, others) == ("False", "[]"), r.stdout[-2000:]


def test_shm_allreduce_is_on_only_when_every_rank_is_local(monkeypatch):
    monkeypatch.setenv("LOCAL_SIZE", "2")
    assert deepspeed_compat.shm_allreduce_in_use(2) and not deepspeed_compat.shm_allreduce_in_use(4)
    monkeypatch.delenv("LOCAL_SIZE")
    assert not deepspeed_compat.shm_allreduce_in_use(1)


def test_the_checkpoint_classes_the_converter_admits_are_where_deepspeed_keeps_them():
    names = {c.__name__ for c in deepspeed_compat.checkpoint_classes()}
    assert names == {"LossScaler", "DynamicLossScaler", "ZeroStageEnum", "fragment_address"}
