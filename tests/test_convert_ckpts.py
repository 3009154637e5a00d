"""Real DeepSpeed checkpoints for the converter tests, made on CPU (gloo) once per session.

Run as a script under 1 or 2 processes, this file trains tiny models for two steps
with real engines (ZeRO 0-3, fp32 and bf16), saves them with engine.save_checkpoint
plus the trainer's tleg_meta.json, and records what the engine computes on a fixed
input (`reference.safetensors`: x, y and the engine's gathered parameters). The tests
compare the converter's outputs against those references.

    RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \\
        python tests/test_convert_ckpts.py OUT_DIR
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _launch import free_port

from tleg_dist.models.arch import ViTArch

pytestmark = pytest.mark.slow  # real multi-process DeepSpeed runs (shared, once per session)
ARCH = ViTArch(embed_dim=32, num_heads=4, mlp_ratio=2.0, patch_size=4, img_size=8, in_chans=1, num_classes=5)
AUX_DEPTH, DES_DEPTH, STEPS = 3, 2, 2
# name -> (stage, zero stage, bf16, world size)
CASES = {
    "aux_z0_r1": ("learngene", 0, False, 1),
    "aux_z0_bf16_r1": ("learngene", 0, True, 1),
    "aux_z1_r1": ("learngene", 1, False, 1),
    "aux_z2_bf16_r1": ("learngene", 2, True, 1),
    "aux_z3_r1": ("learngene", 3, False, 1),
    "des_z2_r1": ("finetune", 2, False, 1),
    "aux_z1_r2": ("learngene", 1, False, 2),
    "aux_z2_r2": ("learngene", 2, False, 2),
    "aux_z3_r2": ("learngene", 3, False, 2),
    "aux_z3_bf16_r2": ("learngene", 3, True, 2),
    "des_z3_r2": ("finetune", 3, False, 2),
}
# This case also gets a newer, incomplete save (no tleg_meta.json) that must never be picked.
WITH_INCOMPLETE = "aux_z1_r1"


def tag(step: int) -> str:
    return f"step_{step:08d}"


def _build(stage: str):
    from tleg_dist.models.aux_net import AuxNet
    from tleg_dist.models.des_net import build_des_net

    return AuxNet(ARCH, AUX_DEPTH) if stage == "learngene" else build_des_net(ARCH, DES_DEPTH)


def _make_case(root: Path, name: str) -> None:
    import deepspeed
    import torch.distributed as dist
    from safetensors.torch import save_file

    stage, zero, bf16, _ = CASES[name]
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = _build(stage)
    ds = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "steps_per_print": 10**9,
          "zero_optimization": {"stage": zero}, "bf16": {"enabled": bf16}, "zero_allow_untested_optimizer": True}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2), config=ds)
    dtype = torch.bfloat16 if bf16 else torch.float32
    gen = torch.Generator().manual_seed(100 + rank)

    def step():
        x = torch.randn(2, ARCH.in_chans, ARCH.img_size, ARCH.img_size, generator=gen).to(dtype)
        y = torch.randint(0, ARCH.num_classes, (2,), generator=gen)
        engine.backward(torch.nn.functional.cross_entropy(engine(x).float(), y))
        engine.step()

    for _ in range(STEPS):
        step()
    ckpt = root / name / "checkpoints"
    engine.save_checkpoint(str(ckpt), tag=tag(STEPS))
    dist.barrier()
    if rank == 0:  # the trainer's completeness marker, written last
        meta = {"format": "tleg-checkpoint", "format_version": "1", "stage": stage, "arch": ARCH.to_dict(),
                "depth": AUX_DEPTH if stage == "learngene" else DES_DEPTH, "zero_stage": zero, "bf16": bf16,
                "world_size": dist.get_world_size(), "epoch": 0, "batch_in_epoch": STEPS, "global_step": STEPS,
                "config": {"stage": stage, "data": {"format": "synthetic"}},
                "preprocessing": {"interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center",
                                  "mean": [0.449], "std": [0.226]}}
        (ckpt / tag(STEPS) / "tleg_meta.json").write_text(json.dumps(meta))
    engine.eval()
    x = torch.randn(4, ARCH.in_chans, ARCH.img_size, ARCH.img_size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        y = engine(x.to(dtype))
        params = list(engine.module.parameters())
        with deepspeed.zero.GatheredParameters(params):  # a no-op below ZeRO-3
            state = {f"param.{k}": v.detach().clone() for k, v in engine.module.named_parameters()}
    if rank == 0:
        save_file({"x": x, "y": y.contiguous(), **state}, str(root / name / "reference.safetensors"))
    if name == WITH_INCOMPLETE:
        engine.train()
        step()
        engine.save_checkpoint(str(ckpt), tag=tag(STEPS + 1))  # no tleg_meta.json: interrupted
    dist.barrier()


def _worker(root: Path) -> None:
    import deepspeed
    import torch.distributed as dist

    deepspeed.init_distributed(dist_backend="gloo")
    ws = dist.get_world_size()
    for name, (*_, world) in CASES.items():
        if world == ws:
            _make_case(root, name)
    dist.barrier()


REPO = Path(__file__).resolve().parents[1]


def _launch(cmd: list[str], world_size: int, log_name: Path) -> list[subprocess.Popen]:
    port, procs = free_port(), []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", "TORCH_EXTENSIONS_DIR": str(REPO / ".cache/torch_extensions")}
        log = open(f"{log_name}_rank{rank}.log", "w")
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _wait(procs: list[subprocess.Popen], logs: list[Path], what: str) -> None:
    codes = [p.wait(timeout=600) for p in procs]
    if any(codes):
        tails = "\n".join(f.read_text()[-3000:] for f in logs)
        raise RuntimeError(f"{what} failed with exit codes {codes}:\n{tails}")


# The real trainer (tleg_dist/train.py): a 2-rank ZeRO-3 learngene run, then a 1-rank
# fine-tune initialised from its learngene. Its own end-of-stage exports (gathered from
# the live engine) are the references for the converter's output from its checkpoints.
TRAINER_RUNS = {
    "learngene": (2, ["configs/cpu/tiny_learngene.yaml", "--deepspeed_config", "configs/ds/zero3.json",
                      "model.depth=3"]),
    "finetune": (1, ["configs/cpu/tiny_finetune.yaml", "--deepspeed_config", "configs/ds/zero2.json",
                     "model.depth=2", "model.init=learngene",
                     "model.learngene={root}/learngene/learngene"]),
}


def _train_all(root: Path) -> None:
    for stage, (world, (recipe, *args)) in TRAINER_RUNS.items():
        cmd = [sys.executable, "tleg_dist/train.py", "--config", recipe, *[a.format(root=root) for a in args],
               f"output_dir={root / stage}", "train.max_steps=2", "train.epochs=1", "train.progress=false"]
        _wait(_launch(cmd, world, root / f"trainer_{stage}"), sorted(root.glob(f"trainer_{stage}_rank*.log")),
              f"trainer ({stage})")


@functools.lru_cache(maxsize=None)
def make_all(root: str) -> tuple[Path, Path, concurrent.futures.Future]:
    """Every case at both world sizes, and the trainer runs (in the background: on 2 cores
    these processes mostly wait on start-up and collectives, so they overlap well)."""
    root = Path(root)
    for d in ("engines", "trainer"):
        (root / d).mkdir(parents=True, exist_ok=True)
    trainer = concurrent.futures.ThreadPoolExecutor(1).submit(_train_all, root / "trainer")
    cmd = [sys.executable, __file__, str(root / "engines")]
    procs = _launch(cmd, 1, root / "engines" / "maker_ws1") + _launch(cmd, 2, root / "engines" / "maker_ws2")
    _wait(procs, sorted((root / "engines").glob("maker_*.log")), "checkpoint maker")
    return root / "engines", root / "trainer", trainer


def _session_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.getbasetemp() / "convert_ckpts_shared")


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> Path:
    """Folder with one sub-folder per CASES entry: checkpoints/ and reference.safetensors."""
    return make_all(_session_root(tmp_path_factory))[0]


@pytest.fixture(scope="session")
def trainer_runs(tmp_path_factory) -> Path:
    """Folder with learngene/ and finetune/ run folders written by the real trainer."""
    _, runs, done = make_all(_session_root(tmp_path_factory))
    done.result(timeout=600)
    return runs


def test_maker_wrote_complete_checkpoints(ckpts):
    for name, (_, zero, _, world) in CASES.items():
        tag_dir = ckpts / name / "checkpoints" / tag(STEPS)
        assert (tag_dir / "tleg_meta.json").is_file(), name
        assert len(list(tag_dir.glob("*_optim_states.pt"))) == (world if zero else 0), name
        assert (ckpts / name / "reference.safetensors").is_file(), name
    assert not (ckpts / WITH_INCOMPLETE / "checkpoints" / tag(STEPS + 1) / "tleg_meta.json").exists()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
