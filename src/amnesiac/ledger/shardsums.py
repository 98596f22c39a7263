"""Shard ledgers' stored updates: one running sum per shard of records, a new version per visit.

A visit's update is added to the shard's sum and written as a new version of the shard's blob; the index
is not touched until the next head commit adopts the pending versions (:meth:`ShardSums.fold`, called by
:class:`amnesiac.ledger.commits.Commits` inside its transaction). A crash before that leaves the sums the
last commit adopted, which are the ones the committed model contains.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import LedgerError
from ..faults import point as fault_point
from .blob import blob_from_tensors
from .format import StepRecord, shard_blob_name
from .index import LedgerIndex
from .storage import BlobStore


class ShardSums:
    """The per-shard sums of a shard ledger, written through ``blobs`` and adopted into ``index``."""

    def __init__(self, index: LedgerIndex, blobs: BlobStore, *, storage_dtype: torch.dtype) -> None:
        self._index = index
        self._blobs = blobs
        self._dtype = storage_dtype
        self._pending: dict[int, StepRecord] = {}  # shard -> its new version, written since the last head commit

    def pending(self) -> list[int]:
        """Shards with a sum written since the last head commit."""
        return sorted(self._pending)

    def _current(self, shard: int) -> StepRecord | None:
        """The shard's newest sum: a pending version, else its committed row (which must still be usable)."""
        rec = self._pending.get(shard)
        if rec is not None:
            return rec
        rec = self._index.steps_info([shard]).get(shard)
        if rec is not None and rec.state != "applied":
            raise LedgerError(f"shard {shard} was subtracted by a deletion; training on its remaining records "
                              "must be recorded under a new shard number")
        if rec is not None and rec.blob is None:
            raise LedgerError(f"the stored sum of shard {shard} was destroyed by an earlier deletion; its "
                              "records can no longer be trained on with this ledger")
        return rec

    def put_visit(self, shard: int, *, epoch: int, ids: Sequence[int] | np.ndarray,
                  update: dict[str, torch.Tensor], kind: str = "train", fsync: bool = False) -> None:
        """Add one visit's update (θ after the shard's consecutive steps minus θ before them) to the shard's
        running sum, written as a new version of the shard's blob, summed in float32.

        The new version becomes the shard's stored update at the next head commit. With float16 or bfloat16
        storage each new version is rounded again, so the error of a shard's sum grows with the number of its
        visits (one rounding per epoch) where an every-step ledger rounds each step once.
        """
        shard = int(shard)
        ids_np = np.asarray(ids, dtype=np.int64).reshape(-1)
        base_rec = self._current(shard)
        base = self._blobs.load(base_rec) if base_rec is not None else {}
        if base and set(base) != set(update):
            raise LedgerError(f"shard {shard}: the update's tensors differ from those of its stored sum")
        total = {name: base[name].float() + t.float() if base else t.float() for name, t in update.items()}
        gen = self._index.shard_generation() + 1
        name = shard_blob_name(shard, gen)
        buf = blob_from_tensors(total, self._dtype)
        buf.seal({"shard": str(shard), "generation": str(gen), "kind": kind})
        digest = self._blobs.write(name, buf, fsync=fsync)
        all_ids = np.union1d(base_rec.ids, ids_np) if base_rec is not None else np.unique(ids_np)
        first_kind = base_rec.kind if base_rec is not None else kind
        fault_point("ledger:shard-visit")
        self._pending[shard] = StepRecord(shard, int(epoch), first_kind, all_ids, True, name, digest, buf.size,
                                          "applied")

    def fold(self, cur: sqlite3.Cursor) -> list[str]:
        """Inside a head commit: point each pending shard's row at its new sum (inserting rows for new shards)
        and count the generation up; returns the blob names the rows held before (removed by :meth:`adopted`
        once the commit is durable)."""
        if not self._pending:
            return []
        now = time.time()
        superseded = [old for _, rec in sorted(self._pending.items())
                      if (old := self._index.replace_shard_row(cur, rec, now)) is not None]
        self._index.upsert_meta(cur, {"shard_generation": self._index.shard_generation() + 1})
        return superseded

    def adopted(self, superseded: list[str]) -> None:
        """After a durable head commit: the pending versions are committed; the ones they replaced go."""
        self._pending.clear()
        if superseded:
            fault_point("ledger:after-fold")
        self._blobs.remove(superseded)
