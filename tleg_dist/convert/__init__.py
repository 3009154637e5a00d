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

from tleg_dist import cli
from tleg_dist.utils.errors import UserError

__all__ = ["ConvertError", "main"]


class ConvertError(ValueError, UserError):
    """Bad input to a convert command; the message names the offending file."""


def build_parser() -> argparse.ArgumentParser:
    # Submodules import lazily-heavy code (DeepSpeed, timm) only inside their functions.
    from tleg_dist.convert import expand, export, inspect, learngene

    parser = argparse.ArgumentParser(prog="python -m tleg_dist.convert", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (learngene, expand, export, inspect):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(args.run, args, prefix=f"tleg-convert {args.command}: ")
