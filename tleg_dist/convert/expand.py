"""`expand`: a learngene file -> Des-Net state dicts (timm key names) at chosen depths.

Each Des-Net is OUT.safetensors plus OUT.json holding the timm constructor arguments:

    config = json.load(open("OUT.json"))
    model = timm.models.vision_transformer.VisionTransformer(**config)
    model.load_state_dict(safetensors.torch.load_file("OUT.safetensors"), strict=True)
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from safetensors.torch import save_file

from tleg_dist import learngene_file
from tleg_dist.convert.errors import ConvertError
from tleg_dist.models.des_net import des_state_from_learngene
from tleg_dist.models.keys import split_file_tensors
from tleg_dist.utils.atomic import atomic_path, check_output

DES_FORMAT = "tleg-des-net"
DES_FORMAT_VERSION = "1"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "expand", help="learngene -> Des-Net state dict(s) at given depth(s), timm key names",
        description="Expand a learngene file into plain timm VisionTransformer state dicts "
                    "(layer l of L: theta_A + l/L * theta_B), each with a JSON of timm constructor arguments.")
    p.add_argument("learngene", type=Path, help="learngene .safetensors file")
    depth = p.add_mutually_exclusive_group(required=True)
    depth.add_argument("--depth", type=int, help="one depth; --out is the .safetensors file to write")
    depth.add_argument("--depths", type=int, nargs="+", metavar="L",
                       help="several depths; --out is a folder receiving des_depth<L>.safetensors/.json")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(run=_run)


def _run(a: argparse.Namespace) -> None:
    if a.depth is not None:
        if a.out.suffix != ".safetensors":
            raise ConvertError(f"{a.out}: with --depth, --out is the .safetensors file to write")
        outs = {a.depth: a.out}
    else:
        if a.out.exists() and not a.out.is_dir():
            raise ConvertError(f"{a.out}: with --depths, --out is a folder, but this is a file")
        outs = {d: a.out / f"des_depth{d}.safetensors" for d in a.depths}
    for path in expand(a.learngene, outs, force=a.force):
        print(path)


def expand(learngene, outputs: dict[int, Path], *, force: bool = False) -> list[Path]:
    """Write one Des-Net per {depth: path.safetensors}; all or nothing (each file is atomic,
    and no file is renamed into place until every one has been written)."""
    bad = [d for d in outputs if d < 1]
    if bad:
        raise ConvertError(f"depth must be >= 1, got {bad[0]}")
    targets = [(d, Path(w), Path(w).with_suffix(".json")) for d, w in sorted(outputs.items())]
    new_dirs = {w.parent for _, w, _ in targets if not w.parent.exists()}
    try:
        return _write(learngene, targets, force)
    except BaseException:
        for d in new_dirs:  # check_output created them; leave nothing behind
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _write(learngene, targets, force: bool) -> list[Path]:
    for _, w, j in targets:  # refuse before reading or writing anything
        check_output(w, force)
        check_output(j, force)
    lg = learngene_file.load(learngene)
    theta_a, theta_b, shared = split_file_tensors(lg.tensors)
    with contextlib.ExitStack() as stack:
        for depth, w, j in targets:
            state = des_state_from_learngene(theta_a, theta_b, shared, depth)
            meta = {"format": DES_FORMAT, "format_version": DES_FORMAT_VERSION, "depth": str(depth),
                    "aux_depth": str(lg.aux_depth), "source_learngene": Path(learngene).name}
            save_file({k: v.contiguous() for k, v in state.items()}, str(stack.enter_context(atomic_path(w))),
                      metadata=meta)
            stack.enter_context(atomic_path(j)).write_text(json.dumps(lg.arch.timm_kwargs(depth), indent=1) + "\n")
    return [p for _, w, j in targets for p in (w, j)]
