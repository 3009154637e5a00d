"""The model folder: how every Des-Net leaves tleg-dist, loadable in one call.

    model = timm.create_model("local-dir:DIR", pretrained=True)    # or "hf-hub:USER/REPO" once pushed

    DIR/config.json        timm's format: architecture, num_classes, model_args (ViTArch.to_dict()
                           + depth), pretrained_cfg (input size and the run's eval preprocessing),
                           plus a "tleg" section saying where the weights came from
    DIR/model.safetensors  the timm VisionTransformer state dict, strictly matching model_args
    DIR/README.md          the model card (artifacts/cards.py)

What timm 1.0's `local-dir:` loader reads (timm/models/_hub.py `_parse_model_cfg`): "architecture"
(a registered name, rebuilt with model_args), "model_args", "pretrained_cfg" (fields of timm's
PretrainedCfg: input_size must be given, or timm assumes 3x224x224) and "num_classes"; the
weights are the folder's model.safetensors. This module owns the file names; artifacts/export.py
decides what goes in them.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError
from safetensors.torch import save_file

from tleg_dist.models.arch import SIZES, ViTArch
from tleg_dist.utils.atomic import atomic_path, check_output, new_folders
from tleg_dist.utils.errors import UserError
from tleg_dist.utils.jsonio import read_json

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"  # timm's local-dir/Hub names
FILES = (WEIGHTS, CONFIG, CARD)
FORMAT, FORMAT_VERSION = "tleg-export", "1"
LOCAL_DIR = "local-dir:"  # timm's prefix for a folder on disk
# The eval transform as timm's pretrained_cfg spells it (what resolve_data_config gives back).
PREPROCESSING_FIELDS = ("interpolation", "crop_pct", "crop_mode", "mean", "std")


class ModelFolderError(ValueError, UserError):
    """A model folder that cannot be written or loaded; the message names the file."""


def folder_of(path) -> Path:
    """A folder given as a path or as timm's "local-dir:PATH"."""
    path = str(path)
    return Path(path[len(LOCAL_DIR):] if path.startswith(LOCAL_DIR) else path)


def write_files(folder, writers: dict[str, Callable[[Path], None]], force: bool) -> list[Path]:
    """FOLDER/NAME for each {NAME: write(temporary path)}: all written, or none (nor the folder)."""
    folder = Path(folder)
    with new_folders(folder):  # check_output creates them: leave nothing behind
        paths = [check_output(folder / name, force) for name in writers]
        with contextlib.ExitStack() as stack:  # each renamed into place only once every one is written
            temps = [stack.enter_context(atomic_path(p)) for p in paths]
            for write, tmp in zip(writers.values(), temps):
                write(tmp)
    return paths


def model_args(arch: ViTArch, depth: int) -> dict:
    """timm's constructor arguments: the architecture's one serialised form, the depth, and the
    Des-Net's fixed choices (no class token, average pooling)."""
    return {k: v for k, v in arch.timm_kwargs(depth).items() if k != "drop_path_rate"}  # a training setting


def timm_name(arch: ViTArch) -> str:
    """The timm ViT of the same width; a name only, as model_args spell out every argument."""
    widths = {SIZES[size]["embed_dim"]: f"vit_{size}_patch16_224" for size in ("tiny", "small", "base")}
    return widths.get(arch.embed_dim, "vit_small_patch16_224")


def timm_config(arch: ViTArch, depth: int, preprocessing: dict, tleg: dict) -> dict:
    """config.json: what timm's loader reads (see the module docstring), and the "tleg" section."""
    pretrained_cfg = {"tag": "tleg", "input_size": [arch.in_chans, arch.img_size, arch.img_size],
                      "fixed_input_size": True, **preprocessing, "num_classes": arch.num_classes,
                      "first_conv": "patch_embed.proj", "classifier": "head"}
    return {"architecture": timm_name(arch), "num_classes": arch.num_classes,
            "model_args": model_args(arch, depth), "pretrained_cfg": pretrained_cfg, "tleg": tleg}


def check_preprocessing(preprocessing, in_chans: int, where: str) -> dict:
    """The eval preprocessing as pretrained_cfg fields, one mean and std per model channel."""
    if not isinstance(preprocessing, dict) or set(preprocessing) != set(PREPROCESSING_FIELDS):
        got = sorted(preprocessing) if isinstance(preprocessing, dict) else type(preprocessing).__name__
        raise ModelFolderError(f"{where}: eval preprocessing needs exactly {', '.join(PREPROCESSING_FIELDS)} "
                               f"(got {got})")
    for k in ("mean", "std"):
        if not isinstance(preprocessing[k], (list, tuple)) or len(preprocessing[k]) != in_chans:
            raise ModelFolderError(f"{where}: preprocessing {k} is {preprocessing[k]!r}, expected {in_chans} "
                                   "value(s), one per model channel")
    return {**preprocessing, "mean": list(preprocessing["mean"]), "std": list(preprocessing["std"])}


def check_state(state: dict, arch: ViTArch, depth: int, where: str) -> None:
    """`state` loads strictly into the Des-Net of `arch` and `depth`, or a ModelFolderError naming `where`."""
    import torch

    from tleg_dist.models.des_net import build_des_net

    with torch.device("meta"):  # shapes only, no memory
        own = build_des_net(arch, depth).state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:5]}" * bool(missing), f"unexpected {unexpected[:5]}" * bool(unexpected),
                 f"mismatched shapes: {', '.join(shapes[:5])}" * bool(shapes)]
        raise ModelFolderError(f"{where}: does not fit a timm VisionTransformer({model_args(arch, depth)}): "
                               + "; ".join(p for p in parts if p))


def write(folder, state: dict, arch: ViTArch, depth: int, *, preprocessing: dict, card: str,
          info: dict | None = None, force: bool = False, where: str = "state") -> list[Path]:
    """The three files of a model folder, checked to load strictly; all or nothing. `info`: the
    "tleg" section's fields beside format and format_version."""
    check_state(state, arch, depth, where)
    preprocessing = check_preprocessing(preprocessing, arch.in_chans, where)
    config = timm_config(arch, depth, preprocessing, {"format": FORMAT, "format_version": FORMAT_VERSION,
                                                      **(info or {})})
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    return write_files(folder, {
        WEIGHTS: lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt", "tleg_format": FORMAT}),
        CONFIG: lambda tmp: tmp.write_text(json.dumps(config, indent=1) + "\n"),
        CARD: lambda tmp: tmp.write_text(card)}, force)


def read_config(folder) -> dict:
    """config.json of a model folder, checked for what timm needs; one line naming the culprit if not."""
    import timm

    folder = folder_of(folder)
    f = folder / CONFIG
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: not a folder (expected a model folder holding {CONFIG} and {WEIGHTS})")
    if not f.is_file():
        raise ModelFolderError(f"{f}: missing; a model folder holds {CONFIG} (timm's format) beside {WEIGHTS}")
    cfg = read_json(f, ModelFolderError)
    if not isinstance(cfg, dict):
        raise ModelFolderError(f"{f}: expected a JSON object, got {type(cfg).__name__}")
    if not isinstance(cfg.get("architecture"), str) or not timm.is_model(cfg["architecture"]):
        raise ModelFolderError(f"{f}: 'architecture' is {cfg.get('architecture')!r}, not a timm model name")
    for key in ("model_args", "pretrained_cfg"):
        if not isinstance(cfg.get(key), dict):
            raise ModelFolderError(f"{f}: '{key}' is missing or not an object")
    if not (folder / WEIGHTS).is_file():
        raise ModelFolderError(f"{folder / WEIGHTS}: missing; {f} has no weights beside it")
    return cfg


def load(path, **kwargs):
    """`timm.create_model("local-dir:…", pretrained=True)` in eval mode, with one-line errors for bad folders."""
    import timm

    folder = folder_of(path)
    read_config(folder)
    try:
        model = timm.create_model(f"{LOCAL_DIR}{folder}", pretrained=True, **kwargs)
    except (RuntimeError, ValueError, TypeError, OSError, SafetensorError) as e:  # strict load, bad args, bad file
        said = " ".join(str(e).split()) or type(e).__name__  # one line, however many timm wrote
        raise ModelFolderError(f"{folder}: timm cannot build the model from {CONFIG} and {WEIGHTS}: "
                               f"{said[:400]}") from None
    return model.eval()
