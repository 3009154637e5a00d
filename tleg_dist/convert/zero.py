"""DeepSpeed checkpoints as the converter reads them: open a complete tag (artifacts/checkpoints.py)
and consolidate the module's weights with DeepSpeed's own code.

Trust boundary. Every `*_states.pt` file is a torch pickle, and DeepSpeed's consolidation
(`deepspeed.utils.zero_to_fp32`) opens them with `torch.load(weights_only=False)`: a
crafted checkpoint could run arbitrary code on the machine converting it. So while
DeepSpeed's code runs here, every `torch.load` is forced to `weights_only=True`, with
only the few plain-data DeepSpeed classes these files hold allowed (loss scaler, ZeRO
stage enum, fragment address). A file holding anything else is refused, naming the
file and the class. `allow_pickle=True` (`--allow-pickle`) restores DeepSpeed's full
unpickling for a checkpoint you made yourself. The checkpoint marker is plain JSON.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from tleg_dist.artifacts import checkpoints, run_folder
from tleg_dist.artifacts.provenance import CHECKPOINT, Provenance
from tleg_dist.convert import ConvertError
from tleg_dist.models.arch import ViTArch, check_depth
from tleg_dist.training.deepspeed_compat import checkpoint_classes



@dataclass
class Checkpoint:
    tag_dir: Path
    meta: dict
    arch: ViTArch | None  # None for a teacher checkpoint (not a ViT)
    depth: int | None

    def run_summary(self) -> dict | None:
        """The run's summary when it describes this very checkpoint (same step): metrics for a card."""
        summary = run_folder.read_summary(self.tag_dir.parent.parent)
        return summary if summary is not None and summary.get("global_step") == self.meta.get("global_step") else None

    def preprocessing(self) -> dict:
        """The run's eval preprocessing as its trainer recorded it in the marker."""
        key = checkpoints.PREPROCESSING
        if not isinstance(self.meta.get(key), dict):
            raise ConvertError(f"{self.tag_dir / checkpoints.MARKER}: no '{key}' recorded: this checkpoint predates "
                               "recorded eval preprocessing; train it again with this version to export it")
        return self.meta[key]

    def provenance(self) -> Provenance:
        """Where converted weights come from: this tag, and the run's val top-1 when its summary is of this step."""
        summary = self.run_summary() or {}
        return Provenance(CHECKPOINT, self.tag_dir.name, self.meta.get("global_step"), summary.get("val_top1"))


def open_checkpoint(path: str | Path, tag: str | None = None, stage: str | None = None, hint: str = "") -> Checkpoint:
    """The tag `checkpoints.find` picks, with its architecture from the marker; refused, with `hint`,
    unless it is of `stage` (when given)."""
    tag_dir = checkpoints.find(path, tag)
    meta = checkpoints.check_meta(tag_dir)
    if stage is not None and meta["stage"] != stage:
        raise ConvertError(f"{tag_dir}: a {meta['stage']}-stage checkpoint, this command needs a {stage}-stage one; "
                           f"{hint}")
    if meta["stage"] == "teacher":
        return Checkpoint(tag_dir, meta, None, None)
    where = tag_dir / checkpoints.MARKER
    try:
        arch = ViTArch.from_dict(meta.get("arch"), f"{where}: bad architecture metadata")
        depth = check_depth(int(meta["depth"]))
    except KeyError as e:
        raise ConvertError(f"{where}: {e.args[0]} is missing") from None
    except (TypeError, ValueError) as e:
        raise ConvertError(f"{where}: {e}" if not str(e).startswith(str(where)) else str(e)) from None
    return Checkpoint(tag_dir, meta, arch, depth)


@contextlib.contextmanager
def guarded_torch_load(allow_pickle: bool = False):
    """Within: torch.load is weights-only (unless allow_pickle) and names the file on failure.

    Patching the attribute reaches DeepSpeed's `torch.load(..., weights_only=False)`
    calls without copying its code. The converter is single-threaded, and the original
    is restored on exit.
    """
    real = torch.load

    def load(f, *args, **kwargs):
        kwargs["weights_only"] = not allow_pickle
        tried = f"torch {torch.__version__} torch.load(weights_only={not allow_pickle})"
        try:
            return real(f, *args, **kwargs)
        except FileNotFoundError as e:
            raise ConvertError(f"{f}: missing checkpoint file") from e
        except Exception as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            # A class or function the weights-only unpickler will not import; other refusals ("Unsupported
            # operand") are bytes that are not a pickle at all, reported as such below.
            found = re.search(r"unsupported GLOBAL:? (?:GLOBAL )?(\S+)", str(e), re.IGNORECASE)
            if isinstance(e, pickle.UnpicklingError) and found:
                detail = f"it holds {found.group(1)}"
                raise ConvertError(
                    f"{f}: refusing to unpickle it ({detail}). Checkpoint files are pickles; by default only tensors "
                    f"and a few DeepSpeed data classes are read. If you made this checkpoint yourself, "
                    f"--allow-pickle loads it with full pickle (never do that for a file from elsewhere).") from e
            # Damaged bytes surface as almost anything (a cut-off zip as RuntimeError or OSError(EINVAL), random
            # bytes through the unpickler as IndexError, KeyError, struct.error, ...), and so does a file another
            # torch or DeepSpeed version wrote: say what was tried and what it said, and keep the cause.
            raise ConvertError(f"{f}: {tried} failed ({type(e).__name__}: {first}): the file is truncated or corrupt, "
                               "or was written by a torch/DeepSpeed version this one cannot read") from e

    torch.load = load
    try:
        with contextlib.ExitStack() as stack:
            if not allow_pickle:
                if hasattr(torch.serialization, "safe_globals"):
                    stack.enter_context(torch.serialization.safe_globals(checkpoint_classes()))
                else:  # torch < 2.5 (not restored on exit, but these classes are plain data)
                    torch.serialization.add_safe_globals(checkpoint_classes())
            yield
    finally:
        torch.load = real


def consolidate(ckpt: Checkpoint, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The module's full state dict, in fp32 where the checkpoint holds fp32 master weights.

    ZeRO 1-3: DeepSpeed's zero_to_fp32 merges every rank's fp32 partitions. ZeRO 0: the
    whole module is in mp_rank_00_model_states.pt; under bf16/fp16 its fp32 master copies
    are taken from the optimizer state when they can be matched to names unambiguously.
    """
    files = checkpoints.shards(ckpt.tag_dir)
    if not files:
        raise ConvertError(f"{ckpt.tag_dir}: not a DeepSpeed checkpoint (no *_model_states.pt)")
    with guarded_torch_load(allow_pickle), contextlib.redirect_stdout(sys.stderr):
        states = torch.load(files[0], map_location="cpu", weights_only=not allow_pickle)
        if not isinstance(states, dict) or "module" not in states:
            raise ConvertError(f"{files[0]}: not a DeepSpeed model-states file (no 'module' entry)")
        zero_stage = ((states.get("ds_config") or {}).get("zero_optimization") or {}).get("stage")
        if zero_stage is None:
            zero_stage = ckpt.meta.get("zero_stage", 1 if checkpoints.shards(ckpt.tag_dir, "optim") else 0)
        if int(zero_stage) == 0:
            state = _zero0_state(states, files[0])
        else:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
            try:
                state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt.tag_dir.parent), tag=ckpt.tag_dir.name)
            except ConvertError:
                raise  # a file torch.load could not read, named by guarded_torch_load
            except (ValueError, KeyError, FileNotFoundError, IndexError, TypeError) as e:
                raise ConvertError(f"{ckpt.tag_dir}: DeepSpeed could not consolidate this checkpoint "
                                   f"({type(e).__name__}: {e})") from e
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _zero0_state(states: dict, file: Path) -> dict[str, torch.Tensor]:
    module = states["module"]
    masters = _fp32_masters((states.get("optimizer") or {}).get("fp32_groups"), module)
    low = [k for k, v in module.items() if v.is_floating_point() and v.dtype != torch.float32]
    if low and not masters:
        print(f"[tleg-convert] note: {file}: fp32 master weights could not be matched to parameter names; "
              f"using the {module[low[0]].dtype} module weights", file=sys.stderr)
    return {k: masters.get(k, v) for k, v in module.items()}


def _fp32_masters(groups, module: dict) -> dict[str, torch.Tensor]:
    """Name ZeRO-0's unnamed fp32 master copies by pairing each with the one module tensor
    of its shape that it rounds to. Any ambiguity -> {} (the module weights are used):
    a wrong pairing would be a silently wrong model."""
    low = {k: v for k, v in module.items() if v.is_floating_point() and v.dtype != torch.float32}
    if not groups or not low:
        return {}
    masters = [t for g in groups for t in g if isinstance(t, torch.Tensor)]
    if len(masters) != len(low):
        return {}
    named = {}
    for m in masters:
        hits = [k for k, v in low.items() if v.shape == m.shape and torch.equal(m.to(v.dtype), v)]
        if len(hits) != 1 or hits[0] in named:
            return {}
        named[hits[0]] = m
    return named
