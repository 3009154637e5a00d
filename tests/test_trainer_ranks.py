"""2 CPU ranks under ZeRO 1/2/3 train the same model as 1 rank (real DeepSpeed engines, gloo).

Full-batch design: the training set is exactly one global batch, so 1 rank x 64 and
2 ranks x 32 see the same images at every step and must reach the same weights up to
float reassociation.
"""

import pytest
from _launch import TINY, max_abs_diff, run_train, summary

from tleg_dist.training import deepspeed_compat

COMMON = ["data.synthetic_size=64", "data.batch_size={bs}", "train.epochs=4", "train.progress=false",
          "checkpoint.every_steps=1000", "model.drop_path_rate=0.0"]


def args(tmp, name, bs, ds="configs/ds/zero0.json"):
    return ["--config", str(TINY), "--deepspeed_config", ds, f"output_dir={tmp / name}",
            *[c.format(bs=bs) for c in COMMON]]


def shm_buffers() -> set[str]:
    shm = deepspeed_compat.SHM_DIR
    return {p.name for p in shm.glob(deepspeed_compat.SHM_BUFFER_GLOB)} if shm.is_dir() else set()


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ranks")
    run_train(args(tmp, "r1", 64))
    return tmp


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_two_ranks_match_one_rank(one_rank, stage):
    before = shm_buffers()
    run_train(args(one_rank, f"z{stage}", 32, f"configs/ds/zero{stage}.json"), nproc=2)
    assert shm_buffers() - before == set(), "DeepSpeed's shared-memory all-reduce buffers were left in /dev/shm"
    s1, s2 = summary(one_rank / "r1"), summary(one_rank / f"z{stage}")
    assert s2["global_step"] == s1["global_step"] == 4
    assert s2["val_loss"] == pytest.approx(s1["val_loss"], abs=1e-4)
    diff = max_abs_diff(one_rank / "r1" / "learngene" / "learngene.safetensors",
                        one_rank / f"z{stage}" / "learngene" / "learngene.safetensors")
    assert diff < 1e-4, f"ZeRO-{stage} 2-rank learngene differs from 1-rank by {diff}"


@pytest.mark.slow
def test_two_ranks_bf16_zero3_close(one_rank):
    run_train(args(one_rank, "bf16", 32, "configs/ds/zero3_bf16.json"), nproc=2)
    s1, s2 = summary(one_rank / "r1"), summary(one_rank / "bf16")
    assert s2["val_loss"] == pytest.approx(s1["val_loss"], abs=0.05)
    assert max_abs_diff(one_rank / "r1" / "learngene" / "learngene.safetensors",
                        one_rank / "bf16" / "learngene" / "learngene.safetensors") < 0.05
