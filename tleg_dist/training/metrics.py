"""Rank-0 reporting: a JSON-lines log, TensorBoard scalars and a progress bar."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from tleg_dist.artifacts import run_folder


class MetricsLog:
    def __init__(self, output_dir: Path, enabled: bool, progress: bool):
        self.enabled = enabled
        self.progress = progress and enabled
        self._bar = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._jsonl = open(Path(output_dir) / run_folder.METRICS, "a", buffering=1)
            self._tb = SummaryWriter(str(Path(output_dir) / run_folder.TB))

    def log(self, kind: str, step: int, **values) -> None:
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"kind": kind, "step": step, "time": time.time(), **values}) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)) and k != "epoch":
                self._tb.add_scalar(f"{kind}/{k}", v, step)

    def bar(self, total: int, initial: int, desc: str) -> None:
        if self.progress:
            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                             mininterval=1.0, file=sys.stderr, leave=True)

    def update(self, n: int = 1, **postfix) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def print(self, msg: str) -> None:
        if self.enabled:
            (tqdm.write if self._bar is not None else print)(msg, file=sys.stderr)

    def close(self) -> None:
        self.close_bar()
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
