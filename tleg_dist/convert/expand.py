"""`expand`: a learngene (file or folder) -> Des-Net timm model folders at chosen depths.

Each Des-Net is a model folder (artifacts/model_folder.py), the same layout as `export`:

    model = timm.create_model("local-dir:OUT", pretrained=True)

Its pretrained_cfg carries the eval preprocessing the learngene records (every learngene
tleg-dist writes does), else `artifacts.export.default_preprocessing` (ImageNet statistics).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from tleg_dist.artifacts import export, model_folder
from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.artifacts.provenance import LEARNGENE, Provenance
from tleg_dist.convert import ConvertError
from tleg_dist.models.arch import check_depth
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


def _provenance(lg: learngene_file.LearngeneFile) -> Provenance:
    """An expanded Des-Net is untrained: it inherits the learngene's checkpoint tag and step, no accuracy."""
    step = lg.extra.get("global_step", "")
    return Provenance(LEARNGENE, lg.extra.get("source_tag") or None, int(step) if step.isdigit() else None)


def expand(learngene, outputs: dict[int, Path], *, force: bool = False) -> list[Path]:
    """Write one model folder per {depth: folder}; all or nothing."""
    for d in outputs:
        try:
            check_depth(d)
        except ValueError as e:
            raise ConvertError(str(e)) from None
    targets = sorted((d, Path(f)) for d, f in outputs.items())
    for _, folder in targets:  # refuse before reading or writing anything
        for name in model_folder.FILES:
            check_output(folder / name, force, mkdir=False)
    lg = learngene_file.load(learngene)
    preprocessing = learngene_file.preprocessing(lg) or export.default_preprocessing(lg.arch.in_chans)
    written: list[Path] = []
    with new_folders(*(f for _, f in targets)):  # removed again, emptied, if the command fails
        try:
            for depth, folder in targets:
                written += export.write_model(folder, lg.des_state(depth), lg.arch, depth, stage="expanded",
                                              provenance=_provenance(lg), preprocessing=preprocessing,
                                              learngene=learngene, force=True, where=str(lg.path))
        except BaseException:
            for path in written:  # an earlier depth's folder is complete, but the command failed as a whole
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
    return written
