"""What a ledger's index rows and files hold, and their checksums: shared by the store and its audit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xxhash

from ..errors import LedgerCorruptError


@dataclass(frozen=True)
class StepRecord:
    """One optimizer step as the index knows it."""

    step: int
    epoch: int
    kind: str
    ids: np.ndarray
    recorded: bool
    blob: str | None
    checksum: str | None
    nbytes: int
    state: str  # 'applied' (in the model) or 'reverted' (subtracted by a forget)


@dataclass
class VerifyReport:
    """What :meth:`LedgerStore.verify` found."""

    steps: int = 0
    recorded: int = 0
    checked: int = 0
    bad: dict[int, str] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # findings not tied to one step
    unchecked_rows: int = 0  # rows written before row checksums existed

    @property
    def ok(self) -> bool:
        return not self.bad and not self.problems


def ids_to_bytes(ids: np.ndarray) -> bytes:
    return np.ascontiguousarray(ids, dtype="<i8").tobytes()


def ids_from_bytes(raw: bytes) -> np.ndarray:
    if not isinstance(raw, (bytes, bytearray, memoryview)) or len(raw) % 8:
        raise LedgerCorruptError(f"an index row holds ids that are not a whole number of int64 values ({type(raw).__name__})")
    return np.frombuffer(raw, dtype="<i8").copy()


def row_checksum(step: int, epoch: int, kind: str, ids: bytes, recorded: int, blob: str | None,
                 digest: str | None, nbytes: int, state: str, created: float = 0.0) -> str:
    """Checksum of one index row: every field of it, the ids included."""
    head = f"{int(step)}|{int(epoch)}|{kind}|{int(recorded)}|{blob}|{digest}|{int(nbytes)}|{state}|{float(created)!r}|"
    return xxhash.xxh3_64_hexdigest(head.encode() + bytes(ids))


def event_checksum(time_: float, kind: str, payload: str) -> str:
    """Checksum of one audit-log entry."""
    return xxhash.xxh3_64_hexdigest(f"{float(time_)!r}|{kind}|{payload}".encode())


def meta_sealed(items: list[tuple[str, str]]) -> bool:
    """Whether the metadata's key-value pairs match the checksum stored among them (``meta_sum``); metadata
    from before that checksum existed counts as sealed."""
    want = dict(items).get("meta_sum")
    return want is None or meta_checksum(items) == want


def meta_checksum(items: Iterable[tuple[str, str]]) -> str:
    """Checksum over every metadata key and value (but itself)."""
    h = xxhash.xxh3_64()
    for k, v in sorted(items):
        if k != "meta_sum":
            h.update(f"{k}={v}\n".encode())
    return h.hexdigest()


def file_checksum(path: Path) -> str:
    """XXH3-64 of a whole file, as ``"xxh3:..."`` (used for the initial weights and the model)."""
    h = xxhash.xxh3_64()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return "xxh3:" + h.hexdigest()


def step_of_blob(name: str) -> int | None:
    """The step number a blob file name stands for, or None for a name the ledger never writes."""
    stem, dot, ext = name.partition(".")
    if ext != "safetensors" or len(stem) != 12 or not stem.isdigit():
        return None
    return int(stem)


def shard_blob_name(shard: int, generation: int) -> str:
    """The file of a shard's summed update as of one commit generation (shard ledgers)."""
    return f"{int(shard):012d}-g{int(generation):08d}.safetensors"


def shard_of_blob(name: str) -> tuple[int, int] | None:
    """(shard, generation) for a shard blob name, or None for a name a shard ledger never writes."""
    stem, dot, ext = name.partition(".")
    shard, dash, gen = stem.partition("-g")
    if ext != "safetensors" or len(shard) != 12 or not shard.isdigit() or len(gen) != 8 or not gen.isdigit():
        return None
    return int(shard), int(gen)


# what a library deletion (forget_records) still has to do after its commit point, kept in the ledger's sealed
# metadata as JSON (the new model file to rename, the updates to destroy); "" when nothing is pending
PENDING_DELETION = "pending_deletion"
# the lock file in a ledger directory: held by the library path while it changes the ledger; readers take it shared
LEDGER_LOCK = ".commit.lock"
