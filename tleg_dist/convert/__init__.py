"""`python -m tleg_dist.convert` (also `tleg-convert`): DeepSpeed checkpoints -> learngenes -> timm models.

    learngene CKPT_DIR --out LG.safetensors [--tag T] [--dtype fp32|bf16]   Aux-Net checkpoint -> learngene
    learngene CKPT_DIR --out LG_DIR                                         ... as a learngene folder (+ card)
    expand LG --depth L --out DIR                                           learngene -> Des-Net timm folder
    expand LG --depths 3 4 6 12 --out DIR                                   DIR/des_depth<L>/ for each depth
    export CKPT_DIR --out DIR                                               fine-tuned Des-Net -> timm folder
    inspect FILE|DIR [--depths ...]                                         what it is, params, size, storage

Bad input ends with one line naming the file and exit status 1 (tleg_dist/cli.py); outputs
are written atomically, so a failed command leaves nothing behind. Formats: docs/formats.md. A timm
model folder loads with `timm.create_model("local-dir:DIR", pretrained=True)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tleg_dist import cli
from tleg_dist.utils.errors import UserError

__all__ = ["ConvertError", "main"]


class ConvertError(ValueError, UserError):
    """Bad input to a convert command; the message names the offending file."""


def _from_checkpoint(sub, name: str, help: str, description: str, out_help: str) -> argparse.ArgumentParser:
    """A subcommand that reads a DeepSpeed checkpoint: the arguments `learngene` and `export` share."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("ckpt_dir", type=Path, help="<run>/checkpoints, a tag folder inside it, or the run folder")
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--tag", help="checkpoint tag (default: the newest complete one)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--allow-pickle", action="store_true",
                   help="unpickle arbitrary objects in the checkpoint: only for checkpoints you made yourself")
    return p


def build_parser() -> argparse.ArgumentParser:
    # Imported here: they import ConvertError from this module, and heavy code (DeepSpeed, timm) only
    # inside their functions.
    from tleg_dist.artifacts.checkpoints import MARKER
    from tleg_dist.convert import expand, export, inspect, learngene, storage

    parser = argparse.ArgumentParser(prog="python -m tleg_dist.convert", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _from_checkpoint(
        sub, "learngene", "DeepSpeed checkpoint of an Aux-Net -> learngene .safetensors",
        "Consolidate a learngene-stage DeepSpeed checkpoint (ZeRO 0-3, any number of ranks, fp32 or bf16) with "
        "DeepSpeed's own zero_to_fp32 and write the learngene file. Architecture and aux depth come from the "
        f"checkpoint's {MARKER}.",
        "learngene file to write (.safetensors), or a folder for file + config.json + card")
    p.add_argument("--dtype", choices=tuple(learngene.DTYPES), default="fp32",
                   help="tensor dtype in the file (default fp32)")
    p.set_defaults(run=learngene.run)

    p = sub.add_parser(
        "expand", help="learngene -> Des-Net timm model folder(s) at given depth(s)",
        description="Expand a learngene (file or folder) into plain timm VisionTransformers "
                    "(layer l of L: theta_A + l/L * theta_B), each a model folder that "
                    "timm.create_model('local-dir:DIR', pretrained=True) loads.")
    p.add_argument("learngene", type=Path, help="learngene .safetensors file or learngene folder")
    depth = p.add_mutually_exclusive_group(required=True)
    depth.add_argument("--depth", type=int, help="one depth; --out is the model folder to write")
    depth.add_argument("--depths", type=int, nargs="+", metavar="L",
                       help="several depths; --out is a folder receiving des_depth<L>/ for each")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(run=expand.run)

    p = _from_checkpoint(
        sub, "export", "DeepSpeed checkpoint of a fine-tuned Des-Net -> timm model folder",
        "Consolidate a finetune-stage DeepSpeed checkpoint and write the timm/Hugging Face model folder "
        "DIR/{config.json, model.safetensors, README.md}: timm.create_model('local-dir:DIR', pretrained=True) "
        "loads it.",
        "output folder")
    p.set_defaults(run=export.run)

    p = sub.add_parser(
        "inspect", help="format, architecture, parameter count and size of a file or checkpoint",
        description="Describe a learngene file, an expanded Des-Net, an export folder, or a DeepSpeed checkpoint. "
                    "For a learngene, also compare the storage needed to initialise Des-Nets at several depths.")
    p.add_argument("path", type=Path, help="a .safetensors file, an export folder or a checkpoint directory")
    p.add_argument("--depths", type=int, nargs="+", default=list(storage.DEFAULT_DEPTHS), metavar="L",
                   help="Des-Net depths for the storage comparison (default 1..12)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of text")
    p.set_defaults(run=inspect.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(args.run, args, prefix=f"tleg-convert {args.command}: ")
