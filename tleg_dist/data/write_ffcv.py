"""Convert a dataset to FFCV `.beton` files, one per split (after ffcv-imagenet's write_imagenet.py).

    # Fashion-MNIST (the Debian idx files), stored raw: bit-exact, 28 px
    python -m tleg_dist.data.write_ffcv --source fashion_mnist --out-dir data/ffcv
    # An ImageNet-layout tree (ROOT/train/<class>/*.jpg, ROOT/val/<class>/*.jpg), ffcv-imagenet's settings
    python -m tleg_dist.data.write_ffcv --source imagefolder --root /data/imagenet --out-dir data/ffcv \\
        --max-side 500 --write-mode proportion --compress-prob 0.5 --jpeg-quality 90 --workers 16

Each file is named after its settings (e.g. `imagefolder_train_prop0.50_q90_max500.beton`) and gets
a JSON sidecar (`.json`) with the settings, class names, normalisation and skipped images, which
the loader reads. Files are written to a temporary name, read back and checked, then renamed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

from tleg_dist import cli
from tleg_dist.data.errors import DataError
from tleg_dist.data.ffcv_writer import SourceImages, WriteSettings, beton_name, write_split

log = logging.getLogger(__name__)


def _sources(args) -> dict[str, tuple[SourceImages, dict]]:
    stop = args.on_bad_image == "fail"
    if args.source == "fashion_mnist":
        from tleg_dist.data import fashion_mnist as fm
        out = {}
        for split in args.splits:
            x, y = fm.load_split(args.root, split)
            x, y = x.numpy()[:args.limit], y.numpy()[:args.limit]
            meta = {"source": "fashion_mnist", "split": split, "grey": True, "num_classes": fm.NUM_CLASSES,
                    "classes": list(range(fm.NUM_CLASSES)), "mean": [fm.MEAN] * 3,
                    "std": [fm.STD] * 3, "eval_crop": 1.0}
            out[split] = (SourceImages(y, arrays=x, stop_on_bad=stop), meta)
        return out
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from tleg_dist.data.imagefolder import scan
    from tleg_dist.data.normalize import EVAL_CROP_PCT
    if args.root is None:
        raise DataError("--root is required for --source imagefolder (ROOT/train, ROOT/val)")
    names, out = None, {}
    for split in ("train", "val"):  # train first: its folders define the class order
        names, paths, labels = scan(Path(args.root) / split, names)
        if split in args.splits:
            meta = {"source": "imagefolder", "root": str(args.root), "split": split, "grey": False,
                    "num_classes": len(names), "classes": names, "mean": list(IMAGENET_DEFAULT_MEAN),
                    "std": list(IMAGENET_DEFAULT_STD), "eval_crop": EVAL_CROP_PCT}
            out[split] = (SourceImages(labels.numpy()[:args.limit], paths=paths[:args.limit], stop_on_bad=stop),
                          meta)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tleg_dist.data.write_ffcv", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--source", choices=["fashion_mnist", "imagefolder"], required=True)
    p.add_argument("--root", type=Path, help="dataset folder (fashion_mnist: the idx files; default the Debian "
                   "package's; imagefolder: ROOT with train/ and val/)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--splits", nargs="+", choices=["train", "val"], default=["train", "val"])
    p.add_argument("--write-mode", choices=["raw", "jpg", "proportion"], default=None,
                   help="default: raw for fashion_mnist, proportion for imagefolder")
    p.add_argument("--max-side", type=int, default=None, help="resize so the longest side is at most this "
                   "(default: keep for fashion_mnist, 500 for imagefolder)")
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--compress-prob", type=float, default=0.5, help="share JPEG-compressed in proportion mode")
    p.add_argument("--chunk-size", type=int, default=100, help="images per work item")
    p.add_argument("--workers", type=int, default=0, help="writer processes (0: all cores)")
    p.add_argument("--page-size-mib", type=int, default=8)
    p.add_argument("--on-bad-image", choices=["fail", "skip"], default="fail",
                   help="an unreadable image stops the run (fail) or is left out and counted (skip)")
    p.add_argument("--verify", type=int, default=8, help="samples read back and checked per file")
    p.add_argument("--limit", type=int, default=None, help="first N images of each split only")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    return p.parse_args(argv)


def main(argv=None) -> list[Path]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    image_folder = args.source == "imagefolder"
    args.write_mode = args.write_mode or ("proportion" if image_folder else "raw")
    args.max_side = args.max_side or (500 if image_folder else None)
    with cli.usage():  # bad flag values, as argparse's own usage errors: exit 2
        # Every setting is a flag of the same name.
        settings = WriteSettings(**{f.name: getattr(args, f.name) for f in fields(WriteSettings)})
    written = []
    for split, (src, meta) in _sources(args).items():
        out = args.out_dir / beton_name(args.source, split, settings)
        info = write_split(src, out, settings, meta, force=args.force)
        log.info("%s: %d images (%d skipped), %d read back and checked, %.1f s", out, info["num_samples"],
                 info["skipped"], info["verified_samples"], info["write_seconds"])
        written.append(out)
    return written


if __name__ == "__main__":
    sys.exit(cli.run(main))
