"""Hashes that identify model states, architectures and sets of ids."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``model`` by name (the state dict, detached)."""
    return {k: v.detach() for k, v in model.state_dict().items()}


def state_hash(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: names, dtypes, shapes and bytes, in sorted name order.

    >>> import torch
    >>> a = {"w": torch.ones(2)}
    >>> state_hash(a) == state_hash({"w": torch.ones(2)}), state_hash(a) == state_hash({"w": torch.zeros(2)})
    (True, False)
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def model_hash(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (see :func:`state_hash`)."""
    return state_hash(model_state(model))


def fingerprint(model: torch.nn.Module) -> list[list[Any]]:
    """Names, shapes and dtypes of every parameter and buffer: identifies an architecture."""
    return [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]


def hash_ids(ids: Iterable[int], salt: str) -> tuple[str, list[str]]:
    """A digest of the whole id set and a salted 64-bit hash per id.

    Whoever holds the salt (the ledger keeps it) can check whether a given id was in a request; the
    receipt alone does not reveal the ids.
    """
    ids = sorted(int(i) for i in ids)
    per_id = [hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()[:16] for i in ids]
    whole = hashlib.sha256((salt + ":" + ",".join(map(str, ids))).encode()).hexdigest()
    return whole, per_id
