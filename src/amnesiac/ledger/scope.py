"""What a ledger tracks of a model, and what its head hash covers.

A ledger records the tensors that train (:func:`tracked_state`: trainable parameters and floating buffers). For
most models that is nearly all of them and the head hash covers the whole state. For a model whose large base is
frozen (a LoRA adapter on a pretrained network) the ledger can be created with :func:`head_scope` of the model:
its head hash then covers only the tracked tensors (milliseconds, not a pass over the base at every deletion),
and a sampled fingerprint of the frozen base, taken once, refuses a model on another base
(:func:`check_base`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ModelMismatchError
from ..utils import model_hash, sampled_state_hash, state_hash

RECORDED = "recorded"


def tracked_state(model: nn.Module, *, include_buffers: bool = True) -> dict[str, torch.Tensor]:
    """The live tensors whose changes a ledger records: trainable parameters and floating buffers.

    Names are state-dict names; tensors that share storage (tied weights) are listed once.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    params = {id(p) for p in model.parameters() if p.requires_grad}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key in seen:
            continue
        if key in params:
            out[name] = tensor.data
        elif include_buffers and not isinstance(tensor, nn.Parameter) and tensor.is_floating_point():
            out[name] = tensor
        else:
            continue
        seen.add(key)
    return out


def _frozen(model: nn.Module, include_buffers: bool) -> dict[str, torch.Tensor]:
    tracked = tracked_state(model, include_buffers=include_buffers)
    return {k: v.detach() for k, v in model.state_dict().items() if k not in tracked}


def head_scope(model: nn.Module, *, include_buffers: bool = True) -> dict[str, Any]:
    """Manifest entries for a ledger of ``model``: with a frozen part, the head hash covers only what trains
    and the frozen base is fingerprinted once; without one, nothing (the whole state is hashed)."""
    frozen = _frozen(model, include_buffers)
    if not frozen:
        return {}
    return {"head_scope": RECORDED, "base_fingerprint": sampled_state_hash(frozen)}


def head_hash(manifest: Mapping[str, Any], model: nn.Module) -> str:
    """The hash a ledger with this manifest keeps as its head for ``model``."""
    if manifest.get("head_scope") == RECORDED:
        return state_hash(tracked_state(model, include_buffers=bool(manifest.get("include_buffers", True))))
    return model_hash(model)


def check_base(manifest: Mapping[str, Any], model: nn.Module, *, ledger: str) -> None:
    """A ledger recorded on a frozen base applies only to a model on that base."""
    expected = manifest.get("base_fingerprint")
    if expected is None or getattr(model, "amnesiac_adapter_only", False):
        return  # an adapter file on its own has no base here; its head hash still ties it to the ledger
    found = sampled_state_hash(_frozen(model, bool(manifest.get("include_buffers", True))))
    if found != expected:
        raise ModelMismatchError(f"the model's frozen base (fingerprint {found[:16]}) is not the one the ledger at "
                                 f"{ledger} was recorded on ({str(expected)[:16]}); its stored adapter updates do not "
                                 "apply to it. Load the adapter onto the base it was trained on")
