"""One typed config tree, loaded from YAML and validated at load time.

Each component gets only its own section (cfg.model, cfg.data, ...). Unknown keys,
wrong types and out-of-range values fail at once with the key's dotted name:

    ConfigError: optim.lr: Input should be greater than 0 (got -0.1)
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Literal, Optional, get_type_hints

import yaml
from pydantic import Field, ValidationInfo, create_model, field_validator, model_validator

from tleg_dist.models.arch import ARCH_FIELDS, SIZES, ViTArch, check_depth, shape_problems, size_fields
# The YAML-and-overrides machinery every recipe (run, demo, sweep, experiment) is read with.
from tleg_dist.utils.recipes import (ConfigError, Section, apply_overrides, parse_override, read_yaml,  # noqa: F401
                                     set_dotted, validate)


def _input_file_exists(path: Optional[Path], info: ValidationInfo) -> Optional[Path]:
    """Input files named by a recipe must exist at load time, not hours into a run.

    Code that validates recipes whose inputs are produced later (a pipeline that writes
    the learngene before the Des-Net stage, a test that loads every recipe) passes
    check_paths=False to `load`/`from_dict`.
    """
    if path is not None and (info.context or {}).get("check_paths", True) and not path.is_file():
        raise ValueError(f"file does not exist: {path}")
    return path


class CompileConfig(Section):
    """torch.compile of the trained model, through DeepSpeed's engine.compile (keeps ZeRO 1-3 and
    checkpoint keys). Costs a compile at start (seconds to minutes); see docs/performance.md."""

    enabled: bool = False
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"


def _arch_fields() -> dict:
    """ViTArch's fields as recipe keys (model.embed_dim, ...): its names, types and defaults (its shape
    rules are models/arch.py's, checked by ModelConfig._check)."""
    types = get_type_hints(ViTArch)
    return {f.name: (types[f.name], f.default) for f in fields(ViTArch)}


class ModelConfig(create_model("ArchSection", __base__=Section, **_arch_fields())):
    """The ViT: ViTArch's fields, and the depth (in the learngene stage the Aux-Net's; in
    finetune, the Des-Net's)."""

    size: Optional[str] = Field(None, description=f"a named size ({', '.join(SIZES)}) filling unset fields")
    depth: int = 6
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    # finetune only: how the Des-Net starts.
    init: Literal["learngene", "scratch", "truncated", "heur_lg", "heur_lg_paper"] = "scratch"
    learngene: Optional[Path] = Field(None, description="learngene file or folder for init=learngene")
    pretrained: Optional[Path] = Field(None, description="timm ViT state (safetensors) for "
                                                     "init=truncated|heur_lg|heur_lg_paper")
    # Transfer to new classes with the same class count would otherwise copy the old head.
    fresh_head: bool = Field(False, description="finetune: keep the classifier head at its fresh init "
                                                "(init=learngene|truncated|heur_lg|heur_lg_paper never copy it)")
    compile: CompileConfig = CompileConfig()

    @model_validator(mode="before")
    @classmethod
    def _fill_size(cls, data):
        if isinstance(data, dict) and data.get("size") is not None:
            try:
                data = {**size_fields(data["size"]), **data}
            except ValueError as e:
                raise ValueError(f"model.size: {e}") from None
        return data

    _files_exist = field_validator("pretrained")(_input_file_exists)
    _depth_usable = field_validator("depth")(check_depth)

    @field_validator("learngene")
    @classmethod
    def _learngene_exists(cls, path: Optional[Path], info: ValidationInfo) -> Optional[Path]:
        from tleg_dist.artifacts.learngene import weights_path  # a folder names its file inside

        return path if path is None or path.is_dir() and weights_path(path).is_file() else \
            _input_file_exists(path, info)

    @model_validator(mode="after")
    def _check(self):
        bad = shape_problems({k: getattr(self, k) for k in ARCH_FIELDS}, prefix="model.")
        if bad:
            raise ValueError("; ".join(bad))
        if self.num_classes < 2:  # a file's architecture may say 1; a run needs two classes to learn from
            raise ValueError(f"model.num_classes={self.num_classes}: a classifier needs at least 2 classes")
        if self.init == "learngene" and self.learngene is None:
            raise ValueError("model.init=learngene needs model.learngene (a learngene file)")
        if self.init in ("truncated", "heur_lg", "heur_lg_paper") and self.pretrained is None:
            raise ValueError(f"model.init={self.init} needs model.pretrained (a ViT state file)")
        return self

    def arch(self) -> ViTArch:
        return ViTArch(**{k: getattr(self, k) for k in ARCH_FIELDS})


class AugConfig(Section):
    """DeiT-style training augmentation (timm). All off by default for the small CPU recipes."""

    randaugment: Optional[str] = Field(None, description="timm auto_augment string, e.g. rand-m9-mstd0.5-inc1")
    hflip: float = Field(0.0, ge=0, le=1)
    random_resized_crop: bool = False
    mixup: float = Field(0.0, ge=0)
    cutmix: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    reprob: float = Field(0.0, ge=0, le=1, description="random erasing probability")
    random_shift: int = Field(0, ge=0, description="move each training image by up to N pixels in x and y "
                                                   "(zero fill); in-memory formats only")

    def per_epoch(self) -> list[str]:
        """Dotted names (data.aug.X) of the settings that are on and change an image between epochs.

        label_smoothing is not among them: it changes the targets the same way every epoch."""
        on = {"randaugment": bool(self.randaugment), "hflip": self.hflip > 0,
              "random_resized_crop": self.random_resized_crop, "mixup": self.mixup > 0,
              "cutmix": self.cutmix > 0, "reprob": self.reprob > 0, "random_shift": self.random_shift > 0}
        return [f"data.aug.{name}" for name, is_on in on.items() if is_on]


class FFCVConfig(Section):
    """FFCV loader settings (data.format=ffcv); see docs/ffcv.md."""

    order: Literal["random", "quasi_random"] = Field(
        "random", description="random: DistributedSampler's order; quasi_random: page-local, 1 rank only")
    os_cache: bool = Field(True, description="read through the OS page cache (shared by local ranks)")
    batches_ahead: int = Field(3, ge=1, description="batches prepared in advance")


# Formats held in memory as uint8 tensors, whose batches are made by tensor indexing.
IN_MEMORY_FORMATS = ("fashion_mnist", "digits", "animal_mnist", "synthetic")


class DataConfig(Section):
    """Which images train and which evaluate: see tleg_dist/data/splits.py."""

    format: Literal["fashion_mnist", "digits", "animal_mnist", "imagefolder", "synthetic", "ffcv"] = "fashion_mnist"
    root: Optional[Path] = Field(None, description="dataset folder (defaults per format)")
    train_path: Optional[Path] = Field(None, description="ffcv: train .beton")
    val_path: Optional[Path] = Field(None, description="ffcv: val .beton")
    classes: Optional[list[int]] = Field(None, description="keep only these labels, relabelled 0..k-1")
    train_limit: Optional[int] = Field(None, gt=0, description="use only the first N training images")
    train_per_class: Optional[int] = Field(None, gt=0, description="use only the first N training images of "
                                                                   "each class (exclusive with train_limit)")
    val_split: Optional[int] = Field(None, gt=0, description="hold out the last N images of the training pool "
                                                             "as a validation split")
    eval_on: Literal["test", "val"] = Field("test", description="evaluate on the test set or the validation "
                                                                "split (needs val_split)")
    val_limit: Optional[int] = Field(None, gt=0, description="evaluate on the first N images only")
    batch_size: int = Field(128, gt=0, description="per-rank micro-batch")
    eval_batch_size: int = Field(256, gt=0)
    num_workers: int = Field(0, ge=0)
    synthetic_size: int = Field(512, gt=0)
    on_bad_image: Literal["fail", "skip"] = "fail"
    # Normalisation statistics on the 0..1 scale, 1 value (grey) or 3 (RGB). Only image folders
    # take them: the other formats carry their own (Fashion-MNIST's, a .beton's sidecar).
    mean: Optional[list[float]] = Field(None, min_length=1, max_length=3,
                                        description="imagefolder: per-channel mean (default ImageNet's)")
    std: Optional[list[float]] = Field(None, min_length=1, max_length=3,
                                       description="imagefolder: per-channel std (default ImageNet's)")
    aug: AugConfig = AugConfig()
    ffcv: FFCVConfig = FFCVConfig()

    @model_validator(mode="after")
    def _check_splits(self):
        if self.train_per_class is not None and self.train_limit is not None:
            raise ValueError("data.train_per_class and data.train_limit are exclusive: set one of them")
        if self.eval_on == "val" and self.val_split is None:
            raise ValueError("data.eval_on=val needs data.val_split (the number of images held out)")
        if self.aug.random_shift and self.format not in IN_MEMORY_FORMATS:
            raise ValueError(f"data.aug.random_shift applies to the in-memory formats "
                             f"({', '.join(IN_MEMORY_FORMATS)}), not {self.format}")
        if self.aug.random_shift and self.aug.reprob > 0:
            raise ValueError("data.aug.random_shift cannot follow data.aug.reprob (erased images are "
                             "normalised, so a zero fill would not be black): set one of them")
        return self

    @model_validator(mode="after")
    def _check_stats(self):
        if (self.mean is None) != (self.std is None):
            raise ValueError("data.mean and data.std are set together (or neither)")
        if self.mean is not None:
            if self.format != "imagefolder":
                raise ValueError(f"data.mean/std apply to data.format=imagefolder only, not {self.format}")
            if len(self.mean) == 2 or len(self.std) != len(self.mean) or min(self.std) <= 0:
                raise ValueError(f"data.mean/std need 1 or 3 values each, as many for both, and std > 0 "
                                 f"(got {self.mean}, {self.std})")
        return self


class TeacherConfig(Section):
    model: str = Field("resnet10t", description="any timm model name")
    checkpoint: Optional[Path] = Field(None, description="local weights: safetensors or a weights-only torch file")
    pretrained: bool = False
    kwargs: dict = Field(default_factory=dict, description="extra timm.create_model arguments")
    cache: bool = Field(False, description="compute the teacher's logits for every training image once and read "
                                           "them back instead of running it (needs the same input every epoch; "
                                           "no effect with distill.type=none); see docs/performance.md")
    cache_dir: Optional[Path] = Field(None, description="where the cache lives (default RUN/teacher_logits); a "
                                                        "shared folder serves every run with the same teacher and data")

    _checkpoint_exists = field_validator("checkpoint")(_input_file_exists)


class DistillConfig(Section):
    type: Literal["none", "soft", "hard"] = "none"
    alpha: float = Field(0.5, ge=0, le=1)
    tau: float = Field(1.0, gt=0)
    teacher: TeacherConfig = TeacherConfig()


class OptimConfig(Section):
    lr: Optional[float] = Field(None, gt=0, description="absolute lr; default base_lr * global_batch / 512")
    base_lr: float = Field(5e-4, gt=0)
    min_lr: float = Field(1e-5, ge=0)
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    warmup_epochs: float = Field(0.0, ge=0)
    grad_accum: int = Field(1, ge=1)
    clip_grad: Optional[float] = Field(None, gt=0)
    # With train.max_steps this trains for a fractional number of epochs with a full schedule
    # (tleg_dist/experiments/budget.py matches budgets in images, not whole epochs).
    schedule_steps: Optional[int] = Field(None, gt=0, description="length of the warmup+cosine schedule in "
                                          "optimizer steps; default train.epochs x steps per epoch")


class CheckpointConfig(Section):
    every_steps: Optional[int] = Field(None, gt=0, description="also save every N optimizer steps")
    # Runs of many short epochs (a few batches of a small training set) would spend more time
    # saving than training at one save per epoch.
    every_epochs: int = Field(1, ge=1, description="save at the end of every N-th epoch (and of the last)")
    keep_last: int = Field(2, ge=1)
    keep_best: bool = True


class TrainConfig(Section):
    epochs: int = Field(1, ge=1)
    max_steps: Optional[int] = Field(None, gt=0, description="stop after N optimizer steps (smoke runs)")
    eval_every_epochs: int = Field(1, ge=1)
    log_every_steps: int = Field(20, ge=1)
    ema_decay: Optional[float] = Field(None, gt=0, lt=1)
    nan_policy: Literal["stop", "skip"] = "stop"
    max_nan_skips: int = Field(10, ge=0)
    progress: bool = True
    # A dead or hung peer leaves the others blocked in a collective; gloo notices a closed
    # socket at once but not a frozen or unreachable host, so every collective needs a limit.
    collective_timeout_s: Optional[float] = Field(
        None, gt=0, description="fail a collective after this many seconds (default: DeepSpeed's, "
                                "DEEPSPEED_TIMEOUT minutes or 10)")


class RunConfig(Section):
    stage: Literal["teacher", "learngene", "finetune"] = "learngene"
    seed: int = 0
    output_dir: Path = Path("runs/default")
    deepspeed_config: Path = Field(Path("configs/ds/zero0.json"), description="engine settings (ZeRO stage, bf16)")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    distill: DistillConfig = DistillConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    @model_validator(mode="after")
    def _check_teacher_cache(self):
        """The cache holds one set of logits per image: refused where an image's input changes between epochs."""
        if not self.distill.teacher.cache or self.distill.type == "none":
            return self
        varying = self.data.aug.per_epoch()
        if varying:
            raise ValueError(f"distill.teacher.cache needs the same training input every epoch, but {varying[0]} "
                             f"changes it: turn {varying[0]} off or set distill.teacher.cache=false")
        if self.data.format in ("imagefolder", "ffcv"):
            raise ValueError(f"distill.teacher.cache: data.format={self.data.format} reads its training images from "
                             f"files every epoch and cannot name them for a cache: set distill.teacher.cache=false")
        return self


def from_dict(raw: dict, source: str = "<config>", check_paths: bool = True) -> RunConfig:
    """check_paths=False skips the existence check of input files (see _input_file_exists)."""
    return validate(RunConfig, raw, source, check_paths=check_paths)


def load(path: str | Path | None, overrides: list[str] = (), check_paths: bool = True) -> RunConfig:
    raw = {} if path is None else read_yaml(path)
    source = "<defaults>" if path is None else str(path)
    return from_dict(apply_overrides(raw, list(overrides)), source, check_paths)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
