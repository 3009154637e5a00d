"""The model folder: how every Des-Net leaves tleg-dist, loadable in one call.

    model = timm.create_model("local-dir:DIR", pretrained=True)    # or "hf-hub:USER/REPO" once pushed

    DIR/config.json        timm's own format, written by timm's `save_config_for_hf`: architecture,
                           num_classes, model_args, pretrained_cfg (the run's eval preprocessing),
                           plus a "tleg" section saying where the weights came from
    DIR/model.safetensors  the timm VisionTransformer state dict, strictly matching model_args
    DIR/README.md          the model card (tleg_dist/model_card.py)

The end of a fine-tune run (RUN/model/), `convert export` and `convert expand` all write it
here; this module owns the file names and the "tleg" fields.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from tleg_dist.models.arch import SIZES
from tleg_dist.utils.atomic import atomic_path, check_output, new_folders
from tleg_dist.utils.errors import UserError
from tleg_dist.utils.jsonio import read_json

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"  # timm's local-dir/Hub names
FORMAT, FORMAT_VERSION = "tleg-export", "1"
LOCAL_DIR = "local-dir:"  # timm's prefix for a folder on disk


class ModelFolderError(ValueError, UserError):
    """A model folder that cannot be written or loaded; the message names the file."""


def _skeleton(model_args: dict, preprocessing: dict):
    """The timm model as `create_model` builds it, on the meta device: shapes and config, no memory."""
    import timm

    # Named after the timm ViT of the same width (a name only: model_args spell out every argument).
    widths = {SIZES[size]["embed_dim"]: f"vit_{size}_patch16_224" for size in ("tiny", "small", "base")}
    name = widths.get(model_args["embed_dim"], "vit_small_patch16_224")
    pretrained_cfg = dict(architecture=name, tag="tleg", first_conv="patch_embed.proj", classifier="head",
                          **preprocessing)
    with torch.device("meta"):
        return timm.create_model(name, pretrained_cfg=pretrained_cfg, **model_args)


def check_state(state: dict[str, torch.Tensor], model_args: dict, where: str) -> None:
    """`state` loads strictly into the timm model of `model_args`, or a ModelFolderError naming `where`."""
    own = _skeleton(model_args, {}).state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:5]}" * bool(missing), f"unexpected {unexpected[:5]}" * bool(unexpected),
                 f"mismatched shapes: {', '.join(shapes[:5])}" * bool(shapes)]
        raise ModelFolderError(f"{where}: does not fit a timm VisionTransformer({model_args}): "
                               + "; ".join(p for p in parts if p))


def write(folder, state: dict[str, torch.Tensor], model_args: dict, *, preprocessing: dict, card: str,
          info: dict | None = None, force: bool = False, where: str = "state") -> list[Path]:
    """The three files of a model folder, checked to load strictly; all or nothing."""
    from timm.models._hub import save_config_for_hf

    check_state(state, model_args, where)
    folder = Path(folder)
    tleg = {"format": FORMAT, "format_version": FORMAT_VERSION, **(info or {})}
    with new_folders(folder):  # check_output creates them: leave nothing behind
        paths = [check_output(folder / name, force) for name in (WEIGHTS, CONFIG, CARD)]
        with atomic_path(paths[0]) as tw, atomic_path(paths[1]) as tc, atomic_path(paths[2]) as tr:
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tw),
                      metadata={"format": "pt", "tleg_format": FORMAT})
            save_config_for_hf(_skeleton(model_args, preprocessing), str(tc), model_config={"tleg": tleg},
                               data_config=preprocessing)
            tr.write_text(card)
    return paths


def folder_of(path) -> Path:
    """A model folder given as a path or as timm's "local-dir:PATH"."""
    path = str(path)
    return Path(path[len(LOCAL_DIR):] if path.startswith(LOCAL_DIR) else path)


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
