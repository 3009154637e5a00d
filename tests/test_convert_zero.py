"""convert/zero.py's guarded torch.load: a file it cannot read is one line naming the file, what was
tried and what torch said, with the cause kept in the exception chain (no DeepSpeed run needed)."""

from __future__ import annotations

import pytest
import torch

from tleg_dist.convert import ConvertError, zero


def test_unreadable_bytes_name_the_file_what_was_tried_and_keep_the_cause(tmp_path):
    f = tmp_path / "mp_rank_00_model_states.pt"
    f.write_bytes(b"not a zip, not a pickle")
    with pytest.raises(ConvertError) as e, zero.guarded_torch_load():
        torch.load(f)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{f}: torch {torch.__version__} torch.load(weights_only=True)"), msg
    assert "truncated or corrupt" in msg and e.value.__cause__ is not None
    assert type(e.value.__cause__).__name__ in msg


def test_a_version_mismatch_is_not_reported_as_corruption_alone(tmp_path, monkeypatch):
    """What torch says is in the message, and the original error is the chained cause."""
    cause = RuntimeError("PytorchStreamReader failed reading file: file version 99 is not supported\nmore")
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(cause))
    with pytest.raises(ConvertError) as e, zero.guarded_torch_load():
        torch.load(tmp_path / "x.pt")
    msg = str(e.value)
    assert "file version 99 is not supported" in msg and "more" not in msg, msg
    assert "torch/DeepSpeed version" in msg and e.value.__cause__ is cause


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConvertError, match="missing checkpoint file") as e, zero.guarded_torch_load():
        torch.load(tmp_path / "gone.pt")
    assert isinstance(e.value.__cause__, FileNotFoundError)
