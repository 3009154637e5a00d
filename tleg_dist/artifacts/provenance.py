"""Where an exported artefact's weights come from: one record, the same keys whoever wrote it.

The trainer's end-of-stage export and every `convert` command describe their learngenes and
model folders with a `Provenance`, so that a learngene exported by the trainer and one
converted from the same checkpoint carry the same metadata keys (their values differ in
`source` only). In a learngene file's string metadata the numbers are JSON (`JSON_FIELDS`);
in a model folder's config.json, the "tleg" section holds the record as JSON values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch

TRAINER, CHECKPOINT, LEARNGENE = "trainer", "deepspeed-checkpoint", "learngene"  # the `source`s
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
JSON_FIELDS = ("global_step", "val_top1")  # numbers (or null) in string metadata; the rest plain strings


def dtype_name(tensors: dict[str, torch.Tensor]) -> str:
    """The floating dtype of the tensors ("fp32", "bf16", ...), "mixed" if they differ."""
    names = {DTYPE_NAMES.get(t.dtype, str(t.dtype)) for t in tensors.values() if t.is_floating_point()}
    return names.pop() if len(names) == 1 else "mixed"


@dataclass(frozen=True)
class Provenance:
    source: str                      # TRAINER, CHECKPOINT (a convert command) or LEARNGENE (expand)
    source_tag: str | None           # the checkpoint tag that holds these weights
    global_step: int | None          # the optimizer step they were saved at
    val_top1: float | None = None    # the run's final val top-1, when the run's summary describes these weights

    def record(self, tensors: dict[str, torch.Tensor]) -> dict:
        """The fields as JSON values, with the dtype of `tensors` (what the file holds)."""
        return {**asdict(self), "dtype": dtype_name(tensors)}

    def metadata(self, tensors: dict[str, torch.Tensor]) -> dict[str, str]:
        """`record` as safetensors string metadata: numbers as JSON, strings as they are (None: "")."""
        return {k: json.dumps(v) if k in JSON_FIELDS else ("" if v is None else str(v))
                for k, v in self.record(tensors).items()}
