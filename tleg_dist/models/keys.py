"""Key-name adapters between the Aux-Net, the learngene file and timm Des-Nets.

The only place that knows how one naming maps onto another; tested both ways.

  Aux-Net state dict                 learngene file                       timm Des-Net
  learngene.theta_a.attn_qkv_weight  learngene.attn.qkv.weight.theta_a    blocks.<i>.attn.qkv.weight (expanded)
  learngene.theta_b.attn_qkv_weight  learngene.attn.qkv.weight.theta_b
  pos_embed, patch_embed.*, fc_norm.*, head.*  -- identical in all three
"""

from __future__ import annotations

import torch

from tleg_dist.models.des_net import HEAD_KEYS, SHARED_KEYS
from tleg_dist.models.learngene import BLOCK_PARAMS, module_key

SHARED_FILE_KEYS = SHARED_KEYS + HEAD_KEYS


def file_key(name: str, which: str) -> str:
    """'attn.qkv.weight', 'a' -> 'learngene.attn.qkv.weight.theta_a'."""
    return f"learngene.{name}.theta_{which}"


def aux_key(name: str, which: str) -> str:
    return f"learngene.theta_{which}.{module_key(name)}"


def _pairs() -> list[tuple[str, str]]:
    """(Aux-Net key, learngene-file key) for every expanded tensor, then the shared ones."""
    return ([(aux_key(n, w), file_key(n, w)) for n in BLOCK_PARAMS for w in "ab"]
            + [(k, k) for k in SHARED_FILE_KEYS])


def aux_to_file(aux_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Aux-Net state dict -> learngene-file tensors (a shared key missing is a KeyError)."""
    pairs = _pairs()
    unknown = set(aux_state) - {a for a, _ in pairs}
    if unknown:
        raise KeyError(f"Aux-Net state has keys the learngene format does not know: {sorted(unknown)}")
    return {f: aux_state[a] for a, f in pairs if a in aux_state or f in SHARED_FILE_KEYS}


def file_to_aux(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Learngene-file tensors -> Aux-Net state dict."""
    return {a: tensors[f] for a, f in _pairs() if f in tensors or f in SHARED_FILE_KEYS}


def split_file_tensors(tensors: dict[str, torch.Tensor]):
    """-> (theta_a, theta_b, shared), block dicts keyed by timm block-parameter names."""
    theta_a = {n: tensors[file_key(n, "a")] for n in BLOCK_PARAMS if file_key(n, "a") in tensors}
    theta_b = {n: tensors[file_key(n, "b")] for n in BLOCK_PARAMS if file_key(n, "b") in tensors}
    shared = {k: tensors[k] for k in SHARED_FILE_KEYS}
    return theta_a, theta_b, shared
