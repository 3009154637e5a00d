"""The learngene file: a public, self-describing safetensors format, alone or in a folder.

Tensors: `learngene.<block param>.theta_a|theta_b` and the shared tensors under timm
names. Metadata (all strings): format, format_version, aux_depth and the architecture (each
field of ViTArch.to_dict() as JSON); those artefacts/export.py writes also carry
`preprocessing` (the eval preprocessing of the data it was trained on, JSON) and the
provenance record (artefacts/provenance.py).

A learngene folder (for sharing, like a timm model folder) holds `learngene.safetensors`,
`config.json` (the same metadata as JSON values) and a README.md card. `load` takes the
file, the folder or "local-dir:FOLDER" (`tleg_dist.load_learngene` is `load`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tleg_dist.artifacts import provenance
from tleg_dist.artifacts.model_folder import CARD, CONFIG, folder_of, write_files
from tleg_dist.models.arch import ARCH_FIELDS, ViTArch
from tleg_dist.models.des_net import des_state_from_learngene, shared_param_shapes
from tleg_dist.models.keys import file_key, split_file_tensors
from tleg_dist.models.learngene import block_param_shapes
from tleg_dist.utils.atomic import atomic_path, check_output
from tleg_dist.utils.errors import UserError
from tleg_dist.utils.jsonio import read_json

FORMAT = "tleg-learngene"
FORMAT_VERSION = "1"
HEADER = ("format", "format_version", "aux_depth")  # with ARCH_FIELDS: what every learngene file says
PREPROCESSING = "preprocessing"  # optional metadata key: timm pretrained_cfg fields of the eval transform, JSON
FOLDER_WEIGHTS = "learngene.safetensors"  # the file's name in a learngene folder (RUN/learngene/ too)
FOLDER_FILES = (FOLDER_WEIGHTS, CONFIG, CARD)
# JSON-encoded in the file's string metadata
_JSON_KEYS = (*ARCH_FIELDS, "aux_depth", PREPROCESSING, *provenance.JSON_FIELDS)


class LearngeneFileError(ValueError, UserError):
    pass


def check_arch(file_arch: ViTArch, arch: ViTArch, where) -> None:
    """A learngene fixes every architecture field but the class count (a head may start fresh)."""
    bad = [f"{k}: file has {getattr(file_arch, k)}, recipe wants {getattr(arch, k)}"
           for k in ARCH_FIELDS if k != "num_classes" and getattr(file_arch, k) != getattr(arch, k)]
    if bad:
        raise LearngeneFileError(f"learngene {where} does not fit model: " + "; ".join(bad))


@dataclass
class LearngeneFile:
    arch: ViTArch
    aux_depth: int
    tensors: dict[str, torch.Tensor]
    extra: dict[str, str]
    path: Path | None = None  # where it was read from, for messages

    def check_fits(self, arch: ViTArch) -> None:
        """LearngeneFileError naming each field in which `arch` differs from the file's."""
        check_arch(self.arch, arch, self.path)

    def des_state(self, depth: int) -> dict[str, torch.Tensor]:
        """The timm state dict of a Des-Net of `depth` layers (blocks expanded, shared tensors and head)."""
        return des_state_from_learngene(*split_file_tensors(self.tensors), depth)


def metadata(arch: ViTArch, aux_depth: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "aux_depth": str(aux_depth)}
    meta.update({k: json.dumps(v) for k, v in arch.to_dict().items()})
    meta.update(extra or {})
    return meta


def expected_shapes(arch: ViTArch) -> dict[str, tuple[int, ...]]:
    blocks = {file_key(name, which): shape for name, shape in block_param_shapes(arch).items() for which in "ab"}
    return blocks | shared_param_shapes(arch)


def validate(tensors: dict[str, torch.Tensor], arch: ViTArch, where: str) -> None:
    want = expected_shapes(arch)
    missing = sorted(set(want) - set(tensors))
    if missing:
        raise LearngeneFileError(f"{where}: missing tensors {missing}")
    unknown = sorted(set(tensors) - set(want))
    if unknown:
        raise LearngeneFileError(f"{where}: unexpected tensors {unknown}")
    for k, shape in want.items():
        if tuple(tensors[k].shape) != shape:
            raise LearngeneFileError(f"{where}: tensor {k} has shape {tuple(tensors[k].shape)}, expected {shape} for {arch}")


def save(path, tensors: dict[str, torch.Tensor], arch: ViTArch, aux_depth: int, *, force: bool = False,
         extra: dict[str, str] | None = None) -> Path:
    validate(tensors, arch, str(path))
    path = check_output(path, force)
    with atomic_path(path) as tmp:
        _write(tmp, tensors, arch, aux_depth, extra)
    return path


def _write(path, tensors, arch: ViTArch, aux_depth: int, extra: dict[str, str] | None) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path),
              metadata=metadata(arch, aux_depth, extra))


def folder_config(meta: dict[str, str]) -> dict:
    """config.json of a learngene folder: the file's metadata, JSON values decoded."""
    return {k: json.loads(v) if k in _JSON_KEYS else v for k, v in meta.items()}


def save_folder(folder, tensors: dict[str, torch.Tensor], arch: ViTArch, aux_depth: int, *,
                card: Callable[[dict], str], force: bool = False, extra: dict[str, str] | None = None) -> list[Path]:
    """FOLDER/{learngene.safetensors, config.json, README.md}; `card(config)` renders the README. All or nothing."""
    folder = Path(folder)
    validate(tensors, arch, str(folder / FOLDER_WEIGHTS))
    config = folder_config(metadata(arch, aux_depth, extra))
    return write_files(folder, {
        FOLDER_WEIGHTS: lambda tmp: _write(tmp, tensors, arch, aux_depth, extra),
        CONFIG: lambda tmp: tmp.write_text(json.dumps(config, indent=1) + "\n"),
        CARD: lambda tmp: tmp.write_text(card(config))}, force)


def weights_path(path) -> Path:
    """The learngene file of a path: itself, or FOLDER/learngene.safetensors for a folder or "local-dir:FOLDER"."""
    path = folder_of(path)
    return path / FOLDER_WEIGHTS if path.is_dir() else path


def _check_folder_config(folder: Path, meta: dict[str, str]) -> None:
    """A folder's config.json must be there and agree with its file: a hand-edited one would mislead readers."""
    f = folder / CONFIG
    if not f.is_file():
        raise LearngeneFileError(f"{f}: missing; a learngene folder holds {CONFIG} beside {FOLDER_WEIGHTS}")
    config = read_json(f, LearngeneFileError)
    want = folder_config(meta)
    bad = [k for k in (*HEADER, *ARCH_FIELDS)
           if not isinstance(config, dict) or config.get(k) != want.get(k)]
    if bad:
        got = config.get(bad[0]) if isinstance(config, dict) else config
        raise LearngeneFileError(f"{f}: {bad[0]} is {got!r} but {FOLDER_WEIGHTS} says {want.get(bad[0])!r}")


def read_safetensors(path, read: Callable, error: Callable[[str], Exception] = LearngeneFileError,
                     problem: str = "not a readable safetensors file"):
    """`read(f)` of the open safetensors file; `error("PATH: problem (why)")` if it cannot be read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return read(f)
    except (SafetensorError, OSError, ValueError) as e:
        raise error(f"{path}: {problem} ({e})") from e


def read_header(path) -> tuple[dict[str, str], ViTArch, int]:
    """(metadata, architecture, aux depth) of a learngene file, from its header alone: no tensor is read."""
    path = Path(path)
    if not path.is_file():
        raise LearngeneFileError(f"{path}: no such file")
    meta = read_safetensors(path, lambda f: f.metadata() or {})
    return (meta, *arch_from_metadata(meta, str(path)))


def arch_from_metadata(meta: dict[str, str], where: str) -> tuple[ViTArch, int]:
    if meta.get("format") != FORMAT:
        raise LearngeneFileError(f"{where}: not a learngene file (format={meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise LearngeneFileError(f"{where}: unsupported format_version {meta.get('format_version')!r}")
    bad = f"{where}: bad or missing architecture metadata"
    try:
        fields = {k: json.loads(meta[k]) for k in ARCH_FIELDS if k in meta}
        return ViTArch.from_dict(fields, bad), int(meta["aux_depth"])
    except KeyError as e:
        raise LearngeneFileError(f"{bad}: {e.args[0]} is missing") from None
    except ValueError as e:  # from_dict names the field; JSON and int() errors do not
        raise LearngeneFileError(str(e) if str(e).startswith(bad) else f"{bad} ({e})") from e


def load(path) -> LearngeneFile:
    """A learngene from its file, its folder or "local-dir:FOLDER"."""
    given, path = folder_of(path), weights_path(path)
    meta, arch, aux_depth = read_header(path)
    if given.is_dir():
        _check_folder_config(given, meta)
    tensors = read_safetensors(path, lambda f: {k: f.get_tensor(k) for k in f.keys()}, problem="corrupt tensor data")
    validate(tensors, arch, str(path))
    extra = {k: v for k, v in meta.items() if k not in ARCH_FIELDS and k not in HEADER}
    return LearngeneFile(arch, aux_depth, tensors, extra, path)


def preprocessing(lg: LearngeneFile) -> dict | None:
    """The eval preprocessing a learngene was trained with (timm pretrained_cfg fields), if it says."""
    if PREPROCESSING not in lg.extra:
        return None
    try:
        value = json.loads(lg.extra[PREPROCESSING])
    except ValueError as e:
        raise LearngeneFileError(f"{lg.path}: metadata '{PREPROCESSING}' is not readable JSON ({e})") from None
    if value is not None and not isinstance(value, dict):
        raise LearngeneFileError(f"{lg.path}: metadata '{PREPROCESSING}' is {type(value).__name__}, "
                                 "expected a JSON object")
    return value
