"""The durable queue of deletion requests a service accepts: one SQLite file beside the run's ledger.

A request is stored (and fsynced: a WAL commit with ``synchronous=FULL``) before the service answers 202, so a
crash after that answer never loses it. Each request moves ``queued`` → ``applying`` (taken into a batch) →
``done`` (its receipt committed to the ledger) or ``refused`` (with the reason). The ledger is the truth about
what was applied: after a crash, :meth:`DeletionQueue.reconcile` looks up the receipt of every request not yet
done in the ledger and marks it done, or puts it back in the queue when no receipt was committed, so each
accepted request is applied exactly once. That is why the later moves need no fsync of their own (a process
crash loses no WAL commit; a power loss may lose the last moves, and reconciling redoes them from the ledger).

The raw ids of a request are kept only until it is done or refused (the ledger's receipts carry commitments
to them, and the ledger its own list of forgotten ids); a fingerprint of the request stays for idempotency.

>>> import tempfile, pathlib
>>> q = DeletionQueue(pathlib.Path(tempfile.mkdtemp()) / "queue.sqlite")
>>> r = q.submit(ids=[3, 1], idempotency_key="ticket-7")
>>> r.status, r.ids, q.submit(ids=[1, 3], idempotency_key="ticket-7").request_id == r.request_id
('queued', [1, 3], True)
>>> q.close()
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import AmnesiacError, RequestError
from ..unlearn.receipts import PROOF_FORMAT

QUEUED, APPLYING, DONE, REFUSED = "queued", "applying", "done", "refused"
STATUSES = (QUEUED, APPLYING, DONE, REFUSED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,
    ids TEXT,
    subjects TEXT,
    n_ids INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    batch_id TEXT,
    receipt TEXT,
    done_seq INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_status ON requests(status, seq);
CREATE INDEX IF NOT EXISTS requests_done ON requests(done_seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

T = TypeVar("T")


class QueueFullError(AmnesiacError):
    """The queue holds as many unapplied requests as it may; try again later."""


class IdempotencyConflictError(RequestError):
    """An idempotency key already names a different request."""


@dataclass(frozen=True)
class QueuedRequest:
    """One deletion request as the queue holds it. ``ids`` is the resolved, sorted list of sample ids (empty
    once the request is done or refused); ``subjects`` the data subjects it named, if any."""

    request_id: str
    seq: int
    kind: str
    ids: list[int]
    subjects: list[str] | None
    n_ids: int
    status: str
    reason: str | None = None
    batch_id: str | None = None
    idempotency_key: str | None = None
    created: float = 0.0
    updated: float = 0.0
    receipt: dict[str, Any] | None = field(default=None, repr=False)

    def public(self, *, with_proof: bool = False) -> dict[str, Any]:
        """What the service shows about the request (no raw ids, no receipt body); ``with_proof``: a done
        request's proof secret, for the requester (``amnesiac receipts prove``)."""
        out = {"request_id": self.request_id, "status": self.status, "kind": self.kind, "records": self.n_ids,
               "subjects": len(self.subjects) if self.subjects is not None else None, "reason": self.reason,
               "batch_id": self.batch_id, "idempotency_key": self.idempotency_key,
               "created": _iso(self.created), "updated": _iso(self.updated)}
        if with_proof and self.receipt is not None and "proof" in self.receipt:
            out["proof"] = self.receipt["proof"]
        return out

    def receipt_body(self) -> dict[str, Any] | None:
        """The receipt as the ledger committed it, with the request id (without the requester's proof)."""
        if self.receipt is None:
            return None
        return {"request_id": self.request_id, **{k: v for k, v in self.receipt.items() if k != "proof"}}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""


def fingerprint(kind: str, ids: Sequence[int], subjects: Sequence[str] | None) -> str:
    """What makes two submissions the same request (for idempotency keys)."""
    body = json.dumps({"kind": kind, "ids": sorted(int(i) for i in ids),
                       "subjects": sorted(subjects) if subjects is not None else None})
    return hashlib.sha256(body.encode()).hexdigest()


class DeletionQueue:
    """A durable FIFO of deletion requests in one SQLite file, safe to share between threads.

    Args:
        path: the queue's file (created with its folder if missing).
        max_pending: how many requests may wait (queued or applying) at once; one more raises
            :class:`QueueFullError` (the service answers 429).
    """

    def __init__(self, path: str | Path, *, max_pending: int = 10_000) -> None:
        if not isinstance(max_pending, int) or isinstance(max_pending, bool) or max_pending < 1:
            raise RequestError(f"max_pending must be a positive integer, got {max_pending!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_pending = max_pending
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # only accepting is fsynced (see the module's text)
        self._conn.executescript(_SCHEMA)

    # ----------------------------------------------------------------- plumbing
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> DeletionQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """Run ``work`` in one immediate transaction; ``durable``: on disk (fsynced) when this returns."""
        with self._lock:
            if durable:
                self._conn.execute("PRAGMA synchronous=FULL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    out = work(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return out
            finally:
                if durable:
                    self._conn.execute("PRAGMA synchronous=NORMAL")

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[QueuedRequest]:
        with self._lock:
            return [_row(r) for r in self._conn.execute(sql, args).fetchall()]

    # ----------------------------------------------------------------- accepting
    def submit(self, *, ids: Iterable[int], subjects: Sequence[str] | None = None,
               idempotency_key: str | None = None) -> QueuedRequest:
        """Store a validated request durably and return it (``status == "queued"``). A second submission with
        the same ``idempotency_key`` and the same records returns the first request unchanged; with other
        records it raises :class:`IdempotencyConflictError`. A full queue raises :class:`QueueFullError`."""
        id_list = sorted({int(i) for i in ids})
        kind = "subjects" if subjects is not None else "ids"
        fp = fingerprint(kind, id_list, subjects)

        def work(conn: sqlite3.Connection) -> QueuedRequest:
            if idempotency_key is not None:
                old = conn.execute(f"SELECT {_COLS} FROM requests WHERE idempotency_key = ?",
                                   (idempotency_key,)).fetchone()
                if old is not None:
                    if old[3] != fp:
                        raise IdempotencyConflictError(
                            f"idempotency_key {idempotency_key!r} already names request {old[1]} for other records; "
                            "use a new key for a new request")
                    return _row(old)
            pending = conn.execute("SELECT COUNT(*) FROM requests WHERE status IN (?, ?)",
                                   (QUEUED, APPLYING)).fetchone()[0]
            if pending >= self.max_pending:
                raise QueueFullError(f"the queue holds {pending} unapplied requests (max_pending={self.max_pending}); "
                                     "try again when some are applied")
            now = time.time()
            rid = "del_" + uuid.uuid4().hex[:20]
            conn.execute(
                "INSERT INTO requests (request_id, idempotency_key, fingerprint, kind, ids, subjects, n_ids, status, "
                "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rid, idempotency_key, fp, kind, json.dumps(id_list),
                 json.dumps(list(subjects)) if subjects is not None else None, len(id_list), QUEUED, now, now))
            return self._one(conn, rid)

        return self._write(work, durable=True)  # accepting: on disk before the 202

    def _one(self, conn: sqlite3.Connection, request_id: str) -> QueuedRequest:
        return _row(conn.execute(f"SELECT {_COLS} FROM requests WHERE request_id = ?", (request_id,)).fetchone())

    # ----------------------------------------------------------------- applying
    def take(self, *, limit: int | None = None) -> list[QueuedRequest]:
        """The queued requests, oldest first (at most ``limit``), without changing them."""
        sql = f"SELECT {_COLS} FROM requests WHERE status = ? ORDER BY seq"
        return self._rows(sql + (f" LIMIT {int(limit)}" if limit else ""), (QUEUED,))

    def mark_applying(self, request_ids: Sequence[str], batch_id: str, secrets: Mapping[str, str] | None = None) -> None:
        """Note that these requests are in batch ``batch_id`` (before its commit), with the secret each one's
        id commitments will be made with (kept for the requester's proof, so a crash after the commit does
        not lose it)."""
        self._set(request_ids, status=APPLYING, batch_id=batch_id, keep_ids=True, secrets=secrets)

    def mark_done(self, receipts: Mapping[str, Mapping[str, Any]]) -> None:
        """Each request's receipt is committed in the ledger: keep a copy (with the requester's proof secret
        noted when it was taken into its batch), drop its raw ids."""
        def work(conn: sqlite3.Connection) -> None:
            nxt = (conn.execute("SELECT COALESCE(MAX(done_seq), 0) FROM requests").fetchone()[0] or 0) + 1
            for k, (rid, receipt) in enumerate(receipts.items()):
                old = conn.execute("SELECT receipt FROM requests WHERE request_id = ?", (rid,)).fetchone()
                proof = {**(json.loads(old[0]).get("proof", {}) if old and old[0] else {}),
                         **receipt.get("proof", {})}
                body = {**receipt, **({"proof": {**proof, "ids_digest": receipt.get("ids_digest")}} if proof else {})}
                conn.execute("UPDATE requests SET status = ?, receipt = ?, done_seq = ?, ids = NULL, reason = NULL, "
                             "updated = ? WHERE request_id = ?",
                             (DONE, json.dumps(body), nxt + k, time.time(), rid))
        self._write(work)

    def mark_refused(self, request_id: str, reason: str) -> None:
        self._set([request_id], status=REFUSED, reason=reason, keep_ids=False)

    def requeue(self, request_ids: Sequence[str]) -> None:
        """Put requests back (a batch that never committed)."""
        self._set(request_ids, status=QUEUED, batch_id=None, keep_ids=True)

    def _set(self, request_ids: Sequence[str], *, status: str, keep_ids: bool, batch_id: str | None = None,
             reason: str | None = None, secrets: Mapping[str, str] | None = None) -> None:
        def work(conn: sqlite3.Connection) -> None:
            for rid in request_ids:
                proof = json.dumps({"proof": {"format": PROOF_FORMAT, "secret": secrets[rid]}}) if secrets else None
                conn.execute("UPDATE requests SET status = ?, batch_id = ?, reason = ?, updated = ?, receipt = ?"
                             + ("" if keep_ids else ", ids = NULL") + " WHERE request_id = ?",
                             (status, batch_id, reason, time.time(), proof, rid))
        # with secrets, fsynced: a receipt the ledger keeps must never outlive its requester's secret
        self._write(work, durable=bool(secrets))

    def reconcile(self, committed: Mapping[str, Mapping[str, Any]]) -> tuple[int, int]:
        """After a restart: every request not yet done whose receipt ``committed`` holds (request id → receipt,
        read from the ledger) is done, whatever the queue last noted; every other ``applying`` one goes back to
        the queue. Returns (done, requeued)."""
        open_ = self._rows(f"SELECT {_COLS} FROM requests WHERE status IN (?, ?, ?) ORDER BY seq",
                           (QUEUED, APPLYING, REFUSED))
        found = {r.request_id: committed[r.request_id] for r in open_ if r.request_id in committed}
        back = [r.request_id for r in open_ if r.status == APPLYING and r.request_id not in committed]
        if found:
            self.mark_done(found)
        if back:
            self.requeue(back)
        return len(found), len(back)

    # ----------------------------------------------------------------- reading
    def get(self, request_id: str) -> QueuedRequest | None:
        rows = self._rows(f"SELECT {_COLS} FROM requests WHERE request_id = ?", (request_id,))
        return rows[0] if rows else None

    def receipts(self, *, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Receipts of done requests in the order they were committed, each with its ``request_id``; ``after``
        a request id: only those committed after it."""
        start = 0
        if after is not None:
            ref = self.get(after)
            if ref is None or ref.status != DONE:
                raise RequestError(f"after={after!r} is not a request with a receipt; give a request_id from an "
                                   "earlier answer")
            with self._lock:
                start = self._conn.execute("SELECT done_seq FROM requests WHERE request_id = ?", (after,)).fetchone()[0]
        rows = self._rows(f"SELECT {_COLS} FROM requests WHERE status = ? AND done_seq > ? ORDER BY done_seq LIMIT ?",
                          (DONE, start, int(limit)))
        return [body for r in rows if (body := r.receipt_body()) is not None]

    def counts(self) -> dict[str, int]:
        with self._lock:
            got = dict(self._conn.execute("SELECT status, COUNT(*) FROM requests GROUP BY status").fetchall())
        return {s: int(got.get(s, 0)) for s in STATUSES}

    def recent(self, limit: int = 20) -> list[QueuedRequest]:
        return self._rows(f"SELECT {_COLS} FROM requests ORDER BY updated DESC, seq DESC LIMIT ?", (int(limit),))

    def __iter__(self) -> Iterator[QueuedRequest]:
        return iter(self._rows(f"SELECT {_COLS} FROM requests ORDER BY seq"))


_COLS = ("seq, request_id, idempotency_key, fingerprint, kind, ids, subjects, n_ids, status, reason, batch_id, "
         "receipt, created, updated")


def _row(r: Sequence[Any]) -> QueuedRequest:
    return QueuedRequest(
        request_id=r[1], seq=int(r[0]), kind=r[4], ids=json.loads(r[5]) if r[5] else [],
        subjects=json.loads(r[6]) if r[6] is not None else None, n_ids=int(r[7]), status=r[8], reason=r[9],
        batch_id=r[10], idempotency_key=r[2], receipt=json.loads(r[11]) if r[11] else None, created=float(r[12]),
        updated=float(r[13]))
