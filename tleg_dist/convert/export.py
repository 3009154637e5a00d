"""`export`: a fine-tuned Des-Net checkpoint -> `model.safetensors` + timm/HF `config.json`.

The folder follows timm's Hugging Face layout, so all of these give the same model:

    model = tleg_dist.convert.load_timm(DIR)                        # any size
    model = timm.create_model(f"local-dir:{DIR}", pretrained=True)  # recent timm (1.0.x)
    cfg = json.load(open(f"{DIR}/config.json"))
    model = timm.create_model(cfg["architecture"], pretrained=True,
                              pretrained_cfg_overlay=dict(file=f"{DIR}/model.safetensors", **cfg["pretrained_cfg"]),
                              **cfg["model_args"])

`model_args` spell out every architectural argument, so any `vit_*` entry point builds
the same network; `architecture` names the closest one (e.g. vit_small_patch16_224).
The overlay must carry `num_classes` and `input_size` (as above) unless they are timm's
defaults for that name (1000 classes, 3x224x224): otherwise timm drops the head.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tleg_dist.convert import zero
from tleg_dist.convert.errors import ConvertError
from tleg_dist.models.arch import SIZES, ViTArch
from tleg_dist.utils.atomic import atomic_path, check_output

EXPORT_FORMAT = "tleg-export"
EXPORT_FORMAT_VERSION = "1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="DeepSpeed checkpoint of a fine-tuned Des-Net -> timm model folder",
        description="Consolidate a finetune-stage DeepSpeed checkpoint and write DIR/model.safetensors plus a "
                    "timm/Hugging Face style DIR/config.json (architecture, model_args, pretrained_cfg).")
    p.add_argument("ckpt_dir", type=Path, help="<run>/checkpoints, a tag folder inside it, or the run folder")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--tag", help="checkpoint tag (default: the newest complete one)")
    p.add_argument("--force", action="store_true", help="overwrite existing files in --out")
    p.add_argument("--allow-pickle", action="store_true",
                   help="unpickle arbitrary objects in the checkpoint: only for checkpoints you made yourself")
    p.set_defaults(run=_run)


def _run(a: argparse.Namespace) -> None:
    for path in export(a.ckpt_dir, a.out, tag=a.tag, force=a.force, allow_pickle=a.allow_pickle):
        print(path)


def timm_architecture(arch: ViTArch) -> str:
    """The timm entry point of the same width, for naming only: model_args override it all."""
    for name in ("tiny", "small", "base"):
        if arch.embed_dim == SIZES[name]["embed_dim"]:
            return f"vit_{name}_patch16_224"
    return "vit_small_patch16_224"


def data_config(run_config: dict, arch: ViTArch) -> dict:
    """Evaluation preprocessing of the run, as timm pretrained_cfg fields."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from tleg_dist.data.transforms import EVAL_CROP_PCT, FASHION_MNIST_MEAN, FASHION_MNIST_STD, INTERPOLATION

    c = arch.in_chans
    if ((run_config or {}).get("data") or {}).get("format") == "fashion_mnist":
        # Whole 28x28 images, bilinear resize to img_size, one grey statistic.
        return dict(interpolation="bilinear", crop_pct=1.0, crop_mode="center",
                    mean=[FASHION_MNIST_MEAN] * c, std=[FASHION_MNIST_STD] * c)
    mean, std = list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD)
    if c != 3:  # grey models see channel 0 of an image normalised with the mean statistic
        mean, std = [sum(mean) / 3] * c, [sum(std) / 3] * c
    return dict(interpolation=INTERPOLATION, crop_pct=EVAL_CROP_PCT, crop_mode="center", mean=mean, std=std)


def _arch_of(model_args: dict) -> ViTArch:
    return ViTArch(**{k: model_args[k] for k in ViTArch.__dataclass_fields__})


def hf_config(model_args: dict, data_cfg: dict, info: dict) -> dict:
    arch_name = timm_architecture(_arch_of(model_args))
    c, s, k = model_args["in_chans"], model_args["img_size"], model_args["num_classes"]
    pretrained_cfg = {
        "tag": "tleg", "custom_load": False, "input_size": [c, s, s], "fixed_input_size": True,
        **data_cfg, "num_classes": k, "pool_size": None, "first_conv": "patch_embed.proj", "classifier": "head",
    }
    return {"architecture": arch_name, "num_classes": k, "num_features": model_args["embed_dim"],
            "global_pool": model_args["global_pool"], "model_args": model_args, "pretrained_cfg": pretrained_cfg,
            "tleg": {"format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, **info}}


def _strict_check(state: dict[str, torch.Tensor], model_args: dict, where: str) -> None:
    from timm.models.vision_transformer import VisionTransformer

    with torch.device("meta"):
        own = VisionTransformer(**model_args).state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:5]}" * bool(missing), f"unexpected {unexpected[:5]}" * bool(unexpected),
                 f"mismatched shapes: {', '.join(shapes[:5])}" * bool(shapes)]
        raise ConvertError(f"{where}: does not fit a timm VisionTransformer({model_args}): "
                           + "; ".join(p for p in parts if p))


def write_export(state: dict[str, torch.Tensor], model_args: dict, out_dir, *, data_cfg: dict | None = None,
                 info: dict | None = None, force: bool = False, where: str = "state") -> list[Path]:
    """The export folder for a timm ViT state (checked to load strictly); all or nothing."""
    _strict_check(state, model_args, where)
    out_dir = Path(out_dir)
    new_dir = not out_dir.exists()
    weights, config = check_output(out_dir / WEIGHTS, force), check_output(out_dir / CONFIG, force)
    cfg = hf_config(model_args, data_cfg or data_config({}, _arch_of(model_args)), info or {})
    try:
        with atomic_path(weights) as tw, atomic_path(config) as tc:
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tw),
                      metadata={"format": "pt", "tleg_format": EXPORT_FORMAT})
            tc.write_text(json.dumps(cfg, indent=1) + "\n")
    except BaseException:
        if new_dir:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    return [weights, config]


def export(ckpt_dir, out_dir, *, tag: str | None = None, force: bool = False,
           allow_pickle: bool = False) -> list[Path]:
    out_dir = Path(out_dir)
    for name in (WEIGHTS, CONFIG):  # fail before the (slow) consolidation
        if (out_dir / name).exists() and not force:
            raise ConvertError(f"{out_dir / name} already exists; pass --force to overwrite it")
    ckpt = zero.open_checkpoint(ckpt_dir, tag)
    zero.expect_stage(ckpt, "finetune", "for an Aux-Net use `learngene`, then `expand`")
    state = zero.consolidate(ckpt, allow_pickle)
    info = {"stage": ckpt.stage, "depth": ckpt.depth, "source_tag": ckpt.tag_dir.name,
            "global_step": ckpt.meta.get("global_step")}
    return write_export(state, ckpt.arch.timm_kwargs(ckpt.depth), out_dir, force=force, info=info,
                        data_cfg=data_config(ckpt.meta.get("config") or {}, ckpt.arch),
                        where=f"{ckpt.tag_dir} (architecture from its {zero.META})")


def load_timm(path, **overrides):
    """The exported model, weights loaded strictly, with its timm pretrained_cfg attached."""
    from timm.models.vision_transformer import VisionTransformer

    path = Path(path)
    try:
        cfg = json.loads((path / CONFIG).read_text())
        model_args = {**cfg["model_args"], **overrides}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConvertError(f"{path / CONFIG}: not an exported model config ({e})") from None
    model = VisionTransformer(**model_args)
    try:
        state = load_file(str(path / WEIGHTS))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own and OS errors alike
        raise ConvertError(f"{path / WEIGHTS}: unreadable weights ({e})") from None
    _strict_check(state, model_args, str(path / WEIGHTS))
    model.load_state_dict(state, strict=True)
    model.pretrained_cfg = {**cfg.get("pretrained_cfg", {}), "architecture": cfg.get("architecture")}
    return model.eval()
