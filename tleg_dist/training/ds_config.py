"""The DeepSpeed config, derived in one place from the engine JSON and the recipe.

The JSON (configs/ds/*.json) owns engine choices: ZeRO stage, bf16, offload.
The recipe owns batch sizes, accumulation and clipping; a JSON that sets them
differently is an error rather than a silent override.
"""

from __future__ import annotations

from pathlib import Path

from tleg_dist.config import ConfigError, RunConfig
from tleg_dist.utils.jsonio import read_json


def load_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"deepspeed_config: {path} does not exist")
    return read_json(path, ConfigError, f"deepspeed_config: {path}")


def build(cfg: RunConfig, world_size: int) -> dict:
    ds = load_json(cfg.deepspeed_config)
    derived = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": cfg.optim.grad_accum,
        "train_batch_size": cfg.data.batch_size * cfg.optim.grad_accum * world_size,
        "gradient_clipping": cfg.optim.clip_grad or 0.0,
    }
    for key, value in derived.items():
        if key in ds and ds[key] not in ("auto", value):
            raise ConfigError(f"{cfg.deepspeed_config}: {key}={ds[key]} conflicts with the recipe ({value}); "
                              f"set it in the recipe instead")
        ds[key] = value
    if ds.get("fp16", {}).get("enabled"):
        raise ConfigError(f"{cfg.deepspeed_config}: fp16 is not supported; use bf16")
    if cfg.train.ema_decay is not None and zero_stage(ds) == 3:
        raise ConfigError("train.ema_decay: EMA is not supported with ZeRO-3 (parameters are partitioned)")
    ds.setdefault("zero_allow_untested_optimizer", True)
    ds.setdefault("steps_per_print", 10**9)  # progress is ours
    ds.setdefault("wall_clock_breakdown", False)
    return ds


def zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))


def bf16(ds: dict) -> bool:
    # as DeepSpeed reads it: "bf16", else its old name "bfloat16"
    section = ds["bf16"] if ds.get("bf16") is not None else ds.get("bfloat16", {})
    return bool(section.get("enabled", False))
