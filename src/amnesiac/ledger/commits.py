"""The operations that change what a deletion relies on, each one commit point: moving the head, marking
steps reverted, destroying stored updates, cutting the ledger back on resume, and removing what a crash left.

These live apart from :class:`~amnesiac.ledger.store.LedgerStore`'s front door on purpose: they are driven
by the commit protocols (a run's journal, :func:`amnesiac.forget_records`' pending-deletion record, the
trainer's epoch commit), which take the lock that makes them safe. ``store.commits`` is one.

Who may delete what. Only the holder of the run's (or the ledger's) lock opens a ledger writable, and only
then does :meth:`Commits.remove_leftovers` run: it removes temporary files, and blobs that no committed row
accounts for *and* that a committed operation explains (a step numbered after both the last indexed step and
the sealed committed step, whose row never committed; a step whose row records that its blob was
destroyed; a shard version no head commit adopted, or one a later commit replaced). Any other unexpected
file is reported by :func:`~amnesiac.ledger.verify_ledger`, never deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from ..errors import LedgerError
from .format import shard_of_blob, step_of_blob
from .index import LedgerIndex
from .shardsums import ShardSums
from .storage import BlobStore


class Commits:
    """The commit operations of one writable ledger (its index, blobs and shard sums)."""

    def __init__(self, index: LedgerIndex, blobs: BlobStore, shards: ShardSums, *,
                 sync: Callable[[], None]) -> None:
        self._index = index
        self._blobs = blobs
        self._shards = shards
        self._sync = sync  # the store's sync: blobs, then the index's WAL

    def head(self, **meta: Any) -> None:
        """Move the head (``head_hash`` and the other ``meta`` keys) in one durable transaction, adopting the
        shard sums written since the last commit (shard ledgers): the commit point of an epoch."""
        if self._shards.pending():
            self._sync()

        def work(cur: sqlite3.Cursor) -> list[str]:
            superseded = self._shards.fold(cur)
            self._index.upsert_meta(cur, {**meta, **self._index.committed_mark(cur)})
            return superseded

        self._shards.adopted(self._index.transaction(work, durable=True))

    def revert(self, steps: Sequence[int], *, new_hash: str, event: Mapping[str, Any],
               forgotten_ids: Iterable[int] = (), extra_meta: Mapping[str, Any] | None = None,
               destroying: Iterable[int] = ()) -> int:
        """In one durable transaction: mark ``steps`` reverted, move the head to ``new_hash``, log ``event``,
        remember ``forgotten_ids``.

        This transaction is the commit point of a forget: before it the old model is the truth, after it
        the new one. Returns the event's number.
        """
        return self.revert_batch(steps, new_hash=new_hash, events=[(event, forgotten_ids)], extra_meta=extra_meta,
                                 destroying=destroying)[0]

    def revert_batch(self, steps: Sequence[int], *, new_hash: str,
                     events: Sequence[tuple[Mapping[str, Any], Iterable[int]]],
                     extra_meta: Mapping[str, Any] | None = None, destroying: Iterable[int] = ()) -> list[int]:
        """:meth:`revert` for a batch of requests applied together: one commit point, one event (receipt) per
        request, each request's ids remembered. Returns the events' numbers in order. ``destroying``: the steps
        whose updates the caller destroys right after (:meth:`destroy`); the receipts' row root counts them
        destroyed, so the committed state matches it once the destruction is done."""
        steps = sorted({int(s) for s in steps})

        def work(cur: sqlite3.Cursor) -> tuple[list[int], list[str]]:
            before = self._index.rows_root(cur)[0]
            self._index.rewrite_rows(cur, steps, state="reverted")
            superseded = self._shards.fold(cur)
            self._index.upsert_meta(cur, {"head_hash": new_hash, **(extra_meta or {}),
                                          **self._index.committed_mark(cur)})
            rows = (before, *self._index.rows_root(cur, destroying=destroying))
            numbers = []
            for event, ids in events:
                event_id = self._index.insert_event(cur, event.get("kind", "forget"), event, rows=rows)
                # the ids forgotten are kept (never trained on again) apart from the receipt: no link to it
                self._index.add_forgotten(cur, ids, 0 if event.get("ids_committed") is not None else event_id)
                numbers.append(int(event_id))
            return numbers, superseded

        if self._shards.pending():
            self._sync()
        numbers, superseded = self._index.transaction(work, durable=True)
        self._shards.adopted(superseded)
        return numbers

    def destroy(self, steps: Iterable[int]) -> int:
        """Destroy the stored updates of ``steps`` (index rows stay, with no blob). Returns how many.

        The rows record the destruction first (one durable transaction), then the files go: a crash in
        between leaves blobs that the rows say are destroyed, which the next writable open removes.
        """
        steps = sorted({int(s) for s in steps})
        if not steps:
            return 0
        held = self._index.transaction(lambda cur: self._index.rewrite_rows(cur, steps, blob=None, checksum=None),
                                       durable=True)
        return self._blobs.remove(held)

    def truncate_after(self, step: int) -> int:
        """Forget every step after ``step`` (used when resuming from a checkpoint); returns how many.

        The rows go in one transaction first; then their blobs (a crash in between leaves blobs numbered
        after the last step, which the next writable open removes). A shard ledger's rows change only at a
        head commit, so it has nothing to cut back."""
        if self._index.shard_rows:
            return 0
        count, blobs = self._index.delete_after(step)
        for name in blobs:
            (self._blobs.dir / name).unlink(missing_ok=True)
        return count

    def save_initial(self, state: dict[str, torch.Tensor]) -> None:
        """Keep the model state at the start of recording (theta_initial), with its hashes in the index."""
        from ..utils import state_hash

        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        file_sum = self._blobs.write_initial(tensors)
        self._index.set_meta(initial_hash=state_hash(tensors), initial_file_sum=file_sum, durable=True)

    def remove_leftovers(self) -> None:
        """Remove temporary files and blobs that a committed operation explains (see the module's docstring)."""
        if not self._index.writable:
            raise LedgerError("a ledger opened read-only never deletes files")
        last = self._index.last_step()
        raw_rows = self._index.raw_rows()
        rows = {r[0]: r[5] for r in raw_rows if isinstance(r[0], int)}
        sound = {r[0] for r in raw_rows if isinstance(r[0], int) and self._index.row_problem(r) is None}
        generation = self._index.shard_generation()
        # numbered blobs are judged against the sealed head, never against what the index happens to list: a
        # row deleted or re-keyed by damage must not make a committed update look like an uncommitted write
        committed = self._index.committed_step()
        for entry in self._blobs.entries():
            if entry.name.endswith(".tmp") and entry.name.startswith("."):
                entry.unlink(missing_ok=True)
                continue
            shard_gen = shard_of_blob(entry.name) if self._index.shard_rows else None
            if shard_gen is not None:
                shard, gen = shard_gen
                # a version no head commit adopted, or one a later commit replaced (its row, checked, names another)
                if entry.name != rows.get(shard) and (gen > generation or shard in sound):
                    entry.unlink(missing_ok=True)
                continue
            step = step_of_blob(entry.name)
            if step is None or entry.name == rows.get(step):
                continue  # not ours, or accounted for: verify reports the former
            never_committed = committed is not None and step > max(last, committed)
            destroyed = step in sound and rows[step] is None
            if never_committed or destroyed:
                entry.unlink(missing_ok=True)  # a write that never committed, or a committed destruction
