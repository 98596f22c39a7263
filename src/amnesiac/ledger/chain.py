"""The deletion log as a hash chain with Merkle commitments to the ledger's rows: what lets a third party check
the receipts without trusting the operator's disk.

- Every receipt (audit-log entries of kind ``forget`` and ``recover``) is hashed over a canonical serialization
  (:func:`canonical`: sorted keys, no spaces, UTF-8) and carries the hash of the receipt before it
  (``chain.prev``) and its place (``chain.seq``); the ledger's sealed metadata keeps the head (``chain_head``,
  ``chain_length``). Editing, dropping or reordering a receipt breaks a hash or a link.
- A receipt commits to the ledger's rows before and after its change: the root of a Merkle tree over one leaf
  per index row (step or shard), built as Certificate Transparency builds its tree (RFC 6962: leaves hashed
  with a 0x00 prefix, nodes with 0x01, the split at the largest power of two below the size). A leaf holds a
  row's number, kind, a SHA-256 of its ids (not the ids), its state and whether its stored update still exists,
  so an inclusion proof shows that a row was reverted and its update destroyed in the committed state.

What this proves and what it does not: that the receipts were not changed since an auditor (or the requester)
last saw the chain head, that each names the algorithm, options, plan and model hashes of a change, and that the
rows a request reverted are marked so in the committed state. It does not prove that the weights "no longer
contain" a record; a chain without signatures can also be rewritten whole by whoever holds the file, which is
why the head is worth exporting (``amnesiac receipts export``) and keeping elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

CHAINED_KINDS = ("forget", "recover")
GENESIS = "0" * 64
RECEIPT_HASH = "receipt_hash"
_DOMAIN = b"amnesiac-receipt-v1\x00"


def canonical(obj: Any) -> bytes:
    """The one serialization hashes are taken over: JSON with sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def receipt_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 of a receipt's canonical form, its own ``receipt_hash`` left out."""
    body = {k: v for k, v in payload.items() if k != RECEIPT_HASH}
    return hashlib.sha256(_DOMAIN + canonical(body)).hexdigest()


# ---------------------------------------------------------------------- rows as Merkle leaves
def row_preimage(step: int, epoch: int, kind: str, ids: bytes, recorded: Any, blob: str | None,
                 checksum: str | None, state: str) -> dict[str, Any]:
    """What a row's leaf commits to (the ids only through their SHA-256)."""
    return {"step": int(step), "epoch": int(epoch), "kind": str(kind), "ids_sha256": hashlib.sha256(bytes(ids)).hexdigest(),
            "recorded": bool(recorded), "update": checksum if blob is not None else None, "state": str(state)}


def leaf_hash(preimage: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(b"\x00" + canonical(dict(preimage))).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below ``n`` (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: Sequence[bytes]) -> str:
    """The tree head over ``leaves`` (RFC 6962's MTH); the empty tree's is SHA-256 of nothing. Built level by
    level, pairing left to right and carrying a last lone node up as it is, which gives the same tree as the
    RFC's split at the largest power of two."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = list(leaves)
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


def _root(leaves: list[bytes]) -> bytes:
    level = leaves
    if len(level) == 1:
        return level[0]
    k = _split(len(level))
    return _node(_root(level[:k]), _root(level[k:]))


def inclusion_path(index: int, leaves: Sequence[bytes]) -> list[str]:
    """The audit path of leaf ``index`` (RFC 6962's PATH), bottom up, as hex."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)}")
    path: list[bytes] = []
    items = list(leaves)
    while len(items) > 1:
        k = _split(len(items))
        if index < k:
            path.append(_root(items[k:]))
            items = items[:k]
        else:
            path.append(_root(items[:k]))
            items, index = items[k:], index - k
    return [p.hex() for p in reversed(path)]


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[str], root: str) -> bool:
    """Whether ``path`` proves leaf ``index`` of a tree of ``size`` leaves under ``root`` (RFC 9162, 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for hex_p in path:
        p = bytes.fromhex(hex_p)
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r.hex() == root
