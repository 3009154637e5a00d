"""`expand`: a learngene (file or folder) -> Des-Net timm model folders at chosen depths.

Each Des-Net is a model folder (tleg_dist/model_folder.py), the same layout as `export`:

    model = timm.create_model("local-dir:OUT", pretrained=True)

Its pretrained_cfg carries the eval preprocessing the learngene records (trainer-written
learngenes do), else the image-folder defaults (ImageNet statistics).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from tleg_dist import model_card, model_folder
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.convert import ConvertError
from tleg_dist.data.preprocessing import eval_preprocessing
from tleg_dist.utils.atomic import check_output, new_folders


def run(a: argparse.Namespace) -> None:
    if a.out.suffix in (".safetensors", ".json"):  # the pre-folder layout wrote OUT.safetensors + OUT.json
        raise ConvertError(f"{a.out}: --out is now a folder (config.json, model.safetensors, README.md); "
                           f"pass {a.out.with_suffix('')} instead")
    if a.out.exists() and not a.out.is_dir():
        raise ConvertError(f"{a.out}: --out is a folder, but this is a file")
    outs = {a.depth: a.out} if a.depth is not None else {d: a.out / f"des_depth{d}" for d in a.depths}
    for path in expand(a.learngene, outs, force=a.force):
        print(path)


def expand(learngene, outputs: dict[int, Path], *, force: bool = False) -> list[Path]:
    """Write one model folder per {depth: folder}; all or nothing."""
    bad = [d for d in outputs if d < 1]
    if bad:
        raise ConvertError(f"depth must be >= 1, got {bad[0]}")
    targets = sorted((d, Path(f)) for d, f in outputs.items())
    for _, folder in targets:  # refuse before reading or writing anything
        for name in (model_folder.WEIGHTS, model_folder.CONFIG, model_folder.CARD):
            check_output(folder / name, force, mkdir=False)
    lg = learngene_file.load(learngene)
    preprocessing = learngene_file.preprocessing(lg) or eval_preprocessing(None, lg.arch.in_chans)
    source = model_card.learngene_source(learngene)
    written: list[Path] = []
    with new_folders(*(f for _, f in targets)):  # removed again, emptied, if the command fails
        try:
            for depth, folder in targets:
                model_args = lg.arch.timm_kwargs(depth)
                card = model_card.des_net_card(model_args, preprocessing, learngene=source)
                info = {"stage": "expanded", "depth": depth, "aux_depth": lg.aux_depth,
                        "source_learngene": source["file"], "source_sha256": source["sha256"]}
                written += model_folder.write(folder, lg.des_state(depth), model_args, preprocessing=preprocessing,
                                              card=card, info=info, force=True)
        except BaseException:
            for path in written:  # an earlier depth's folder is complete, but the command failed as a whole
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
    return written
