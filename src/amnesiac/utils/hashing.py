"""Hashes that identify model states, architectures and sets of ids."""

from __future__ import annotations

import hashlib
import secrets
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


def sampled_state_hash(state: Mapping[str, torch.Tensor], *, samples: int = 4096) -> str:
    """A cheap fingerprint of a large, frozen state: names, dtypes and shapes of every tensor and about
    ``samples`` evenly strided values of each (not every byte). It tells one pretrained base from another in
    milliseconds where :func:`state_hash` would read gigabytes; it is not a proof that no byte changed.

    >>> import torch
    >>> a, same, moved = ({"w": torch.arange(10000.0) + k} for k in (0, 0, 1))
    >>> sampled_state_hash(a) == sampled_state_hash(same), sampled_state_hash(a) == sampled_state_hash(moved)
    (True, False)
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().reshape(-1)
        stride = max(1, t.numel() // samples)
        picked = t[::stride].contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(state[name].shape)}|".encode())
        digest.update(picked.view(torch.uint8).numpy().tobytes() if picked.numel() else b"")
    return digest.hexdigest()


def new_secret() -> str:
    """256 random bits as hex: the secret a request's id commitments are made with."""
    return secrets.token_hex(32)


def id_commitment(secret: str, sample_id: int) -> str:
    """The commitment to one id under a request's secret: SHA-256 of ``amnesiac-id-v1:SECRET:ID``."""
    return hashlib.sha256(f"amnesiac-id-v1:{secret}:{int(sample_id)}".encode()).hexdigest()


def commit_ids(ids: Iterable[int], secret: str | None = None) -> tuple[str, str, list[str]]:
    """Commitments to a request's ids under a fresh secret: ``(secret, digest, commitments)``.

    The commitments are sorted by value (not by id) and the digest covers the whole set; without the secret
    (256 random bits, returned to the requester only) no id can be found from them, by a dictionary of ids or
    otherwise; with it and the ids, anyone can check they are the ones committed to.

    >>> secret, digest, per_id = commit_ids([42, 7], secret="s")
    >>> per_id == sorted([id_commitment("s", 7), id_commitment("s", 42)]), commit_ids([7, 42], "s")[1] == digest
    (True, True)
    """
    secret = new_secret() if secret is None else secret
    ordered = sorted({int(i) for i in ids})
    per_id = sorted(id_commitment(secret, i) for i in ordered)
    digest = hashlib.sha256(f"amnesiac-ids-v1:{secret}:{','.join(map(str, ordered))}".encode()).hexdigest()
    return secret, digest, per_id
