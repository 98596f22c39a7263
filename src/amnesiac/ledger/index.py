"""The ledger's index: one SQLite file with a row per step (or shard), the id -> steps table, checksummed
metadata (the head), the forgotten ids and the audit log.

Every row carries a checksum of its fields and ids (``row_sum``); every read through :class:`LedgerIndex`
checks it and raises :class:`~amnesiac.errors.LedgerCorruptError` on damage, except the audit's reads
(:meth:`LedgerIndex.rows_and_pairs`, :meth:`LedgerIndex.meta_and_forgotten`), which return rows as stored so
that every problem can be reported. Writes run in one transaction each (:meth:`LedgerIndex.transaction`);
the operations that change what a deletion relies on are driven by :class:`amnesiac.ledger.commits.Commits`.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ..errors import LedgerCorruptError, LedgerError
from .chain import CHAINED_KINDS, GENESIS, RECEIPT_HASH, leaf_hash, merkle_root, receipt_hash, row_preimage
from .format import (
    StepRecord,
    event_checksum,
    ids_from_bytes,
    ids_to_bytes,
    meta_checksum,
    meta_sealed,
    row_checksum,
)

INDEX_FILE = "index.sqlite"
_COLUMNS = "step, epoch, kind, ids, recorded, blob, checksum, nbytes, state, n_ids, row_sum, created"
_LEAF_COLUMNS = "step, epoch, kind, ids, recorded, blob, checksum, state"  # what a row's Merkle leaf commits to

_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    step INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'train',
    n_ids INTEGER NOT NULL,
    ids BLOB NOT NULL,
    recorded INTEGER NOT NULL,
    blob TEXT,
    checksum TEXT,
    nbytes INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'applied',
    created REAL NOT NULL,
    row_sum TEXT
);
CREATE TABLE IF NOT EXISTS step_ids (
    sample_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    PRIMARY KEY (sample_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forgotten (sample_id INTEGER PRIMARY KEY, event INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    sum TEXT
);
"""


@contextmanager
def _damage_is_corruption(path: Path) -> Iterator[None]:
    """SQLite's own errors about a damaged file become LedgerCorruptError naming the index; constraint
    violations and a busy database stay what they are (callers handle them)."""
    try:
        yield
    except (sqlite3.IntegrityError, LedgerError):
        raise
    except (sqlite3.DatabaseError, UnicodeError) as err:
        if isinstance(err, sqlite3.OperationalError) and ("locked" in str(err) or "busy" in str(err)):
            raise
        raise LedgerCorruptError(f"the ledger index {path} is damaged ({err}); nothing was changed") from None


def _check_sqlite_header(index: Path) -> None:
    """Refuse an index that is not an SQLite file before SQLite opens it: opening an empty (or truncated to
    nothing) file would write a new, empty database into it, silently replacing the damage with a lie."""
    try:
        with open(index, "rb") as fh:
            head = fh.read(16)
    except OSError as err:
        raise LedgerCorruptError(f"the ledger index {index} cannot be read ({err})") from None
    if head != b"SQLite format 3\x00":
        what = "is empty (0 bytes)" if not head else "does not start with SQLite's header"
        raise LedgerCorruptError(f"the ledger index {index} {what}; it is damaged. Nothing was changed: restore "
                                 "the file from a backup, or retrain")


class _Cursor(sqlite3.Cursor):
    def execute(self, *args: Any) -> _Cursor:
        with _damage_is_corruption(self.connection.index_path):  # type: ignore[attr-defined]
            return super().execute(*args)

    def executemany(self, *args: Any) -> _Cursor:
        with _damage_is_corruption(self.connection.index_path):  # type: ignore[attr-defined]
            return super().executemany(*args)

    def fetchone(self) -> Any:
        with _damage_is_corruption(self.connection.index_path):  # type: ignore[attr-defined]
            return super().fetchone()

    def fetchall(self) -> list[Any]:
        with _damage_is_corruption(self.connection.index_path):  # type: ignore[attr-defined]
            return super().fetchall()

    def __next__(self) -> Any:
        with _damage_is_corruption(self.connection.index_path):  # type: ignore[attr-defined]
            return super().__next__()


class _Connection(sqlite3.Connection):
    """A connection whose every statement reports a damaged file as :class:`LedgerCorruptError`, never as a
    raw sqlite3 or Unicode traceback; text that is not UTF-8 is read with replacement characters (so the row
    checksums, not the decoder, report the damage)."""

    index_path: Path

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    def execute(self, *args: Any) -> Any:
        with _damage_is_corruption(self.index_path):
            return self.cursor().execute(*args)

    def executemany(self, *args: Any) -> Any:
        with _damage_is_corruption(self.index_path):
            return self.cursor().executemany(*args)

    def executescript(self, script: str) -> Any:
        with _damage_is_corruption(self.index_path):
            return super().executescript(script)




def connect_index(ledger_dir: Path, *, create: bool) -> sqlite3.Connection:
    """Open (or, with ``create``, make) the index of the ledger at ``ledger_dir``; a missing, empty or foreign
    file raises :class:`LedgerCorruptError` naming it, and nothing is created in its place."""
    index = ledger_dir / INDEX_FILE
    if not create:
        if not index.exists():
            raise LedgerCorruptError(
                f"the ledger index {index} is missing; without it no stored update can be attributed to its "
                "samples. Nothing was changed: restore the file from a backup, or retrain"
            )
        if not index.is_file():
            raise LedgerCorruptError(f"the ledger index {index} is not a file")
        _check_sqlite_header(index)  # SQLite would write a fresh header into an empty file
    uri = f"file:{quote(str(index.resolve()))}?mode={'rwc' if create else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, factory=_Connection)
        conn.index_path = index
        conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if create:
            conn.executescript(_SCHEMA)
        else:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            missing = {"steps", "step_ids", "meta", "forgotten", "events"} - tables
            if missing:
                conn.close()
                raise LedgerCorruptError(f"the ledger index {index} lacks the table(s) {', '.join(sorted(missing))}; "
                                         "it is damaged or not an amnesiac index")
    except (sqlite3.DatabaseError, UnicodeError) as err:
        raise LedgerCorruptError(f"the ledger index {index} cannot be read ({err}); it is damaged") from None
    return conn


class LedgerIndex:
    """The index of one ledger directory: rows, the id -> steps table, metadata, forgotten ids, audit log.

    ``shard_rows``: the rows are numbered by shard (a shard ledger), so gaps in the numbering are allowed and
    no committed step is sealed. ``row_sums_required``: a row without a checksum is damage (every ledger made
    since row checksums exist), not an old row read unchecked.
    """

    def __init__(self, ledger_dir: Path, *, create: bool = False, writable: bool = True, shard_rows: bool = False,
                 row_sums_required: bool = True) -> None:
        self.ledger_dir = ledger_dir
        self.file = ledger_dir / INDEX_FILE
        self.writable = writable
        self.shard_rows = shard_rows
        self._row_sums_required = row_sums_required
        self._conn = connect_index(ledger_dir, create=create)
        self._lock = threading.RLock()
        self._ids_writes = 0  # this connection's writes of rows' ids, a key of the scan cache
        self._scan: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None
        self._leaves: dict[int, tuple[str, dict[str, Any], bytes]] = {}  # step -> (row_sum, preimage, leaf)
        self._read_columns()

    def _read_columns(self) -> None:
        """Which checksum columns this index has: a ledger written before row and event checksums existed is
        read (as unchecked) without them, until :meth:`add_checksum_columns` adds them."""
        self._has_row_sum = "row_sum" in {r[1] for r in self._conn.execute("PRAGMA table_info(steps)")}
        has_event_sum = "sum" in {r[1] for r in self._conn.execute("PRAGMA table_info(events)")}
        self._cols = _COLUMNS if self._has_row_sum else _COLUMNS.replace("row_sum", "NULL")
        self._event_sum = "sum" if has_event_sum else "NULL"

    def add_checksum_columns(self) -> None:
        """Give an index from before row and event checksums their columns (writable opens do this)."""
        if not self._has_row_sum:
            self.transaction(lambda cur: cur.execute("ALTER TABLE steps ADD COLUMN row_sum TEXT"))
        if self._event_sum == "NULL":
            self.transaction(lambda cur: cur.execute("ALTER TABLE events ADD COLUMN sum TEXT"))
        self._read_columns()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def transaction(self, work: Callable[[sqlite3.Cursor], Any], *, durable: bool = False) -> Any:
        """Run ``work`` in one write transaction, rolled back on any error (the connection stays usable).

        ``durable`` makes this commit survive a power loss (a full sync of the WAL).
        """
        if not self.writable:
            raise LedgerError(f"the ledger at {self.ledger_dir} was opened read-only")
        with self._lock:
            cur = self._conn.cursor()
            if durable:
                cur.execute("PRAGMA synchronous=FULL")
            cur.execute("BEGIN IMMEDIATE")
            try:
                result = work(cur)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                if durable:
                    cur.execute("PRAGMA synchronous=NORMAL")
            return result

    def checkpoint(self) -> None:
        """Checkpoint the WAL with a full sync: everything committed so far survives a power loss."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(FULL)")

    # ------------------------------------------------------------------ metadata
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @staticmethod
    def upsert_meta(cur: sqlite3.Cursor, values: Mapping[str, Any]) -> None:
        """Set metadata inside a transaction and reseal the checksum over all of it."""
        cur.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, str(v)) for k, v in values.items()],
        )
        LedgerIndex._seal_meta(cur)

    @staticmethod
    def _seal_meta(cur: sqlite3.Cursor) -> None:
        total = meta_checksum(cur.execute("SELECT key, value FROM meta").fetchall())
        cur.execute("INSERT INTO meta (key, value) VALUES ('meta_sum', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (total,))

    def set_meta(self, *, durable: bool = False, **values: Any) -> None:
        """Set metadata keys in one transaction (``durable`` syncs it to the disk)."""
        self.transaction(lambda cur: self.upsert_meta(cur, values), durable=durable)

    def committed_mark(self, cur: sqlite3.Cursor) -> dict[str, int]:
        """Inside a head commit: the highest step the commit covers, sealed with the metadata. It is how the
        cleanup knows that a blob whose index row is gone was committed (index damage, reported and kept) and
        not a write that never committed (removed)."""
        if self.shard_rows:
            return {}
        return {"committed_step": int(cur.execute("SELECT MAX(step) FROM steps").fetchone()[0] or 0)}

    def committed_step(self) -> int | None:
        """The highest step a head commit covered, read from the sealed metadata (``head_step`` for ledgers
        from before this was recorded); None when the metadata fails its checksum, so nothing can be known
        committed or not by number."""
        with self._lock:
            meta = self._conn.execute("SELECT key, value FROM meta").fetchall()
        if not meta_sealed(meta):
            return None
        values = dict(meta)
        found = [int(v) for k in ("committed_step", "head_step") if (v := values.get(k)) and str(v).isdigit()]
        return max(found) if found else 0

    def id_salt(self) -> str:
        """A random salt, made once per ledger, for the hashed ids in receipts."""
        salt = self.get_meta("id_salt")
        if salt is None:  # a ledger made before salts were made with it
            candidate = secrets.token_hex(16)

            def work(cur: sqlite3.Cursor) -> None:
                cur.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('id_salt', ?)", (candidate,))
                self._seal_meta(cur)

            self.transaction(work)
            salt = self.get_meta("id_salt")
        return str(salt)

    def shard_generation(self) -> int:
        """How many head commits have adopted shard sums (the version number of the newest sums)."""
        value = self.get_meta("shard_generation", "0")
        return int(value) if value and value.isdigit() else 0

    # ------------------------------------------------------------------ audit log
    def add_event(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Append an entry to the audit log (one durable transaction); returns its number."""
        return int(self.transaction(lambda cur: self.insert_event(cur, kind, payload), durable=True))

    def insert_event(self, cur: sqlite3.Cursor, kind: str, payload: Mapping[str, Any], *,
                     rows: tuple[str, str, int] | None = None) -> int:
        """Inside a transaction: append an entry to the audit log; returns its number.

        A receipt (kinds :data:`~amnesiac.ledger.chain.CHAINED_KINDS`) joins the hash chain: it gets its place
        and the previous receipt's hash (``chain``), the Merkle roots of the rows before and after its change
        (``ledger_rows``; ``rows`` gives them, else the rows as they are now stand for both) and its own
        ``receipt_hash``, and the sealed metadata moves the chain's head to it, all in this transaction."""
        now = time.time()
        body = json.loads(json.dumps(dict(payload), default=str))
        chained = kind in CHAINED_KINDS
        if chained:
            meta = dict(cur.execute("SELECT key, value FROM meta WHERE key IN ('chain_head', 'chain_length')"))
            seq = int(meta.get("chain_length", 0)) + 1
            if rows is None:
                root, n = self.rows_root(cur)
                rows = (root, root, n)
            before, after, count = rows
            body["chain"] = {"seq": seq, "prev": meta.get("chain_head", GENESIS), "kind": kind}
            body["ledger_rows"] = {"root_before": before, "root_after": after, "count": count}
            body[RECEIPT_HASH] = receipt_hash(body)
        text = json.dumps(body, sort_keys=True)
        cur.execute("INSERT INTO events (time, kind, payload, sum) VALUES (?, ?, ?, ?)",
                    (now, kind, text, event_checksum(now, kind, text)))
        number = int(cur.lastrowid or 0)
        if chained:
            self.upsert_meta(cur, {"chain_head": body[RECEIPT_HASH], "chain_length": body["chain"]["seq"],
                                   **({"chain_start_event": number} if body["chain"]["seq"] == 1 else {})})
        return number

    def rows_root(self, cur: sqlite3.Cursor | None = None, *, destroying: Iterable[int] = ()) -> tuple[str, int]:
        """The Merkle root over every row's leaf (see :mod:`amnesiac.ledger.chain`) and the number of rows;
        ``destroying``: steps whose stored update the change being committed destroys right after its commit
        point, counted as destroyed. A row's leaf is kept while its checksum is the same (the checksum covers
        every field the leaf does), so a writer holding the ledger open reads only the rows that changed."""
        gone = {int(s) for s in destroying}
        with self._lock:
            db = cur or self._conn
            sums = db.execute("SELECT step, row_sum FROM steps ORDER BY step").fetchall()
            stale = [int(st) for st, rs in sums if rs is None or self._leaves.get(int(st), ("",))[0] != rs]
            for start in range(0, len(stale), 500):
                chunk = stale[start : start + 500]
                for r in db.execute(f"SELECT {_LEAF_COLUMNS}, row_sum FROM steps"
                                    f" WHERE step IN ({','.join('?' * len(chunk))})", chunk).fetchall():
                    pre = row_preimage(*r[:8])
                    self._leaves[int(r[0])] = (r[8] or "", pre, leaf_hash(pre))
            leaves = [leaf_hash({**self._leaves[int(st)][1], "update": None}) if int(st) in gone
                      else self._leaves[int(st)][2] for st, _ in sums]
        return merkle_root(leaves), len(leaves)

    def row_preimages(self, cur: sqlite3.Cursor | None = None) -> list[dict[str, Any]]:
        """What each row's Merkle leaf commits to, in step order (as stored: the audit reports damage)."""
        sql = f"SELECT {_LEAF_COLUMNS} FROM steps ORDER BY step"
        with self._lock:
            raw = (cur or self._conn).execute(sql).fetchall()
        return [row_preimage(*r) for r in raw]

    def chain_entries(self) -> list[tuple[int, str, str, bool]]:
        """The receipts as stored, for checking the chain: ``(event id, kind, payload text, checksum ok)``."""
        kinds = ",".join("?" * len(CHAINED_KINDS))
        with self._lock:
            rows = self._conn.execute(f"SELECT id, time, kind, payload, {self._event_sum} FROM events "
                                      f"WHERE kind IN ({kinds}) ORDER BY id", CHAINED_KINDS).fetchall()
        return [(int(r[0]), str(r[2]), r[3] if isinstance(r[3], str) else "",
                 r[4] is None or (isinstance(r[1], float) and isinstance(r[3], str)
                                  and event_checksum(r[1], r[2], r[3]) == r[4])) for r in rows]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Audit-log entries, oldest first, optionally of one kind; a damaged entry raises."""
        q = f"SELECT id, time, kind, payload, {self._event_sum} FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
        with self._lock:
            rows = self._conn.execute(q, (kind,) if kind else ()).fetchall()
        out = []
        for r in rows:
            if r[4] is not None and (not isinstance(r[1], float) or not isinstance(r[3], str)
                                     or event_checksum(r[1], r[2], r[3]) != r[4]):
                raise LedgerCorruptError(f"audit-log entry {r[0]} of {self.ledger_dir} is damaged (checksum mismatch)")
            try:
                payload = json.loads(r[3])
            except (TypeError, ValueError):
                raise LedgerCorruptError(f"audit-log entry {r[0]} of {self.ledger_dir} is damaged (not JSON)") from None
            out.append({"id": r[0], "time": r[1], "kind": r[2], **payload})
        return out

    @staticmethod
    def add_forgotten(cur: sqlite3.Cursor, ids: Iterable[int], event_id: int) -> None:
        """Inside a transaction: remember ``ids`` as forgotten by audit-log entry ``event_id``."""
        cur.executemany("INSERT OR IGNORE INTO forgotten (sample_id, event) VALUES (?, ?)",
                        ((int(i), event_id) for i in ids))

    def forgotten_ids(self) -> np.ndarray:
        """Every sample id a committed deletion removed (they are never trained on again)."""
        with self._lock:
            rows = self._conn.execute("SELECT sample_id FROM forgotten ORDER BY sample_id").fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    # ------------------------------------------------------------------ rows
    def record(self, raw: tuple[Any, ...], *, check: bool = True) -> StepRecord:
        """A StepRecord from a raw row; with ``check`` a row whose checksum does not match raises."""
        if check:
            problem = self.row_problem(raw)
            if problem:
                step = raw[0]
                raise LedgerCorruptError(f"the index row of step {step} is damaged ({problem}); {self.file} "
                                         "can no longer be trusted for deletions", [int(step)] if isinstance(step, int) else [])
        return StepRecord(int(raw[0]), int(raw[1]), raw[2], ids_from_bytes(raw[3]), bool(raw[4]), raw[5], raw[6],
                          int(raw[7]), raw[8])

    def row_problem(self, raw: tuple[Any, ...]) -> str | None:
        """What is wrong with a raw row (None when its checksum and shape hold)."""
        step, epoch, kind, ids, recorded, blob, digest, nbytes, state, n_ids, rsum, created = raw
        if not isinstance(ids, (bytes, bytearray)) or len(ids) % 8 or len(ids) // 8 != n_ids:
            return "its ids do not match their count"
        if state not in ("applied", "reverted"):
            return f"unknown state {state!r}"
        if rsum is None:
            return None if not self._has_row_sum or not self._row_sums_required else "its checksum is missing"
        try:
            expected = row_checksum(step, epoch, kind, bytes(ids), recorded, blob, digest, nbytes, state, created)
        except (TypeError, ValueError):
            return "a field has the wrong type"
        return None if expected == rsum else "its checksum does not match its fields"

    def step(self, step: int) -> StepRecord:
        """The index row of one step (checked); an unknown step raises LedgerError."""
        with self._lock:
            r = self._conn.execute(f"SELECT {self._cols} FROM steps WHERE step = ?", (int(step),)).fetchone()
        if r is None:
            raise LedgerError(f"step {step} is not in the ledger at {self.ledger_dir}")
        return self.record(r)

    def iter_steps(self, *, state: str | None = None) -> Iterator[StepRecord]:
        """Every step in order (optionally only those in ``state``); each row's checksum is checked."""
        q = f"SELECT {self._cols} FROM steps" + (" WHERE state = ?" if state else "") + " ORDER BY step"
        with self._lock:
            rows = self._conn.execute(q, (state,) if state else ()).fetchall()
        for r in rows:
            yield self.record(r)

    def _select_in(self, sql: str, values: Iterable[int]) -> list[tuple[Any, ...]]:
        """Run ``sql``, whose ``{}`` stands for an ``IN`` list, over ``values`` in chunks SQLite accepts."""
        wanted = sorted({int(v) for v in values})
        rows: list[tuple[Any, ...]] = []
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows += self._conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def steps_info(self, steps: Iterable[int]) -> dict[int, StepRecord]:
        """Index rows of the given steps, each checked (unknown steps are left out)."""
        recs = (self.record(r) for r in self._select_in(f"SELECT {self._cols} FROM steps WHERE step IN ({{}})", steps))
        return {rec.step: rec for rec in recs}

    def count_steps(self) -> int:
        """How many steps the index holds."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0])

    def last_step(self) -> int:
        """The highest step number indexed (0 when empty)."""
        with self._lock:
            r = self._conn.execute("SELECT MAX(step) FROM steps").fetchone()
        return int(r[0] or 0)

    def all_ids(self) -> np.ndarray:
        """Every sample id the ledger has seen in any step, sorted."""
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT sample_id FROM step_ids ORDER BY sample_id").fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def steps_for_ids(self, ids: Iterable[int], *, cross_check: bool = False) -> list[int]:
        """Every step whose batch held any of ``ids``, sorted (see :meth:`LedgerStore.steps_for_ids`)."""
        wanted = np.unique(np.asarray(list(ids), dtype=np.int64))
        rows = self._select_in("SELECT DISTINCT step FROM step_ids WHERE sample_id IN ({})", wanted.tolist())
        from_table = sorted({int(r[0]) for r in rows})
        if not cross_check:
            return from_table
        self.check_numbering()
        from_rows = self.scan_steps_holding(wanted)
        if from_rows != from_table:
            odd = sorted(set(from_rows) ^ set(from_table))
            raise LedgerCorruptError(
                f"the ledger index {self.file} contradicts itself for this request: the id -> steps "
                f"table and the steps' own rows disagree on step(s) {', '.join(map(str, odd[:20]))}. The index is "
                "damaged; nothing was changed. Run `amnesiac ledger verify` for a full report.", odd)
        return from_table

    def check_numbering(self) -> None:
        """Steps are numbered without gaps, up to at least the last committed one: an index that
        lost rows (deleted or re-keyed by damage) cannot say which steps saw a record, so it raises."""
        if self.shard_rows:
            return
        with self._lock:
            count, low, high = self._conn.execute("SELECT COUNT(*), MIN(step), MAX(step) FROM steps").fetchone()
        committed = self.committed_step()
        if committed is None:
            raise LedgerCorruptError(f"the metadata of {self.file} fails its checksum; which steps "
                                     "were committed cannot be known. Nothing was changed")
        lost = []
        if count and high - low + 1 != count:
            lost.append(f"its step numbers {low}..{high} have gaps ({count} rows)")
        if (high or 0) < committed:
            lost.append(f"steps {(high or 0) + 1}..{committed} were committed but have no row")
        if lost:
            raise LedgerCorruptError(f"the ledger index {self.file} lost rows: {'; '.join(lost)}. "
                                     "A deletion could miss steps that saw the records; nothing was changed. Run "
                                     "`amnesiac ledger verify` for a full report")

    def scan_steps_holding(self, ids: np.ndarray) -> list[int]:
        """Steps whose own row (checksum checked) holds any of ``ids``: a full scan, no id table.

        The scan is kept while the rows' ids are unchanged: no write of ids by this connection (counted) and no
        write at all by another (SQLite's ``data_version``), so a writer that holds the ledger open, such as the
        deletion service, checks every row once instead of once per request.
        """
        with self._lock:
            key = (self._ids_writes, int(self._conn.execute("PRAGMA data_version").fetchone()[0]))
            if self._scan is None or self._scan[0] != key:
                rows = self._conn.execute(f"SELECT {self._cols} FROM steps ORDER BY step").fetchall()
                steps, chunks = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
                for r in rows:
                    rec = self.record(r)
                    steps.append(np.full(rec.ids.size, rec.step, dtype=np.int64))
                    chunks.append(rec.ids)
                self._scan = (key, np.concatenate(steps), np.concatenate(chunks))
            _, all_steps, all_ids = self._scan
        return sorted(set(np.unique(all_steps[np.isin(all_ids, ids)]).tolist()))

    def counts(self) -> dict[str, int]:
        """Row, blob, byte and id counts (for :meth:`LedgerStore.summary`)."""
        with self._lock:
            steps, recorded, nbytes, reverted, stored_bytes = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(recorded), 0), COALESCE(SUM(nbytes), 0),"
                " COALESCE(SUM(state = 'reverted'), 0), COALESCE(SUM(CASE WHEN blob IS NOT NULL THEN nbytes END), 0)"
                " FROM steps"
            ).fetchone()
            n_ids = self._conn.execute("SELECT COUNT(DISTINCT sample_id) FROM step_ids").fetchone()[0]
            stored = self._conn.execute("SELECT COUNT(*) FROM steps WHERE blob IS NOT NULL").fetchone()[0]
        return {"steps": int(steps), "recorded_steps": int(recorded), "stored_blobs": int(stored),
                "destroyed_blobs": int(recorded) - int(stored), "reverted_steps": int(reverted),
                "distinct_ids": int(n_ids), "bytes": int(stored_bytes), "bytes_ever_recorded": int(nbytes)}

    # ------------------------------------------------------------------ writing rows
    def insert_rows(self, rows: Sequence[tuple[int, int, str, np.ndarray, str | None, str | None, int]]) -> None:
        """Index steps, ``(step, epoch, kind, ids, blob, checksum, nbytes)`` each, in one transaction; a step
        already indexed raises :class:`LedgerError` and nothing is written."""
        now = time.time()
        self._ids_writes += 1

        def work(cur: sqlite3.Cursor) -> None:
            for step, epoch, kind, ids_np, blob, digest, nbytes in rows:
                raw = ids_to_bytes(ids_np)
                recorded = int(blob is not None)
                cur.execute(
                    "INSERT INTO steps (step, epoch, kind, n_ids, ids, recorded, blob, checksum, nbytes, state, created,"
                    " row_sum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'applied', ?, ?)",
                    (step, epoch, kind, int(ids_np.size), raw, recorded, blob, digest, nbytes, now,
                     row_checksum(step, epoch, kind, raw, recorded, blob, digest, nbytes, "applied", now)),
                )
                cur.executemany("INSERT INTO step_ids (sample_id, step) VALUES (?, ?)",
                                ((int(i), step) for i in np.unique(ids_np)))

        try:
            self.transaction(work)
        except sqlite3.IntegrityError:
            steps = ", ".join(str(r[0]) for r in rows)
            raise LedgerError(f"step(s) {steps} already in the ledger at {self.ledger_dir}; a step is recorded once") from None

    def delete_after(self, step: int) -> tuple[int, list[str]]:
        """Delete every row after ``step`` in one durable transaction; returns how many and the blobs they held."""
        self._ids_writes += 1
        with self._lock:
            rows = self._conn.execute("SELECT blob FROM steps WHERE step > ?", (int(step),)).fetchall()

        def work(cur: sqlite3.Cursor) -> None:
            cur.execute("DELETE FROM step_ids WHERE step > ?", (int(step),))
            cur.execute("DELETE FROM steps WHERE step > ?", (int(step),))

        self.transaction(work, durable=True)
        return len(rows), [str(b) for (b,) in rows if b]

    def rewrite_rows(self, cur: sqlite3.Cursor, steps: Sequence[int], **changes: Any) -> list[str]:
        """Inside a transaction: apply ``changes`` (column -> value) to ``steps``, keeping each row's checksum
        right. A row that is already damaged is refused (raises), so no damage is ever sealed in. Returns the
        blob names the rows held before."""
        held: list[str] = []
        for start in range(0, len(steps), 500):
            chunk = [int(x) for x in steps[start : start + 500]]
            rows = cur.execute(f"SELECT {self._cols} FROM steps WHERE step IN ({','.join('?' * len(chunk))})",
                               chunk).fetchall()
            if len(rows) != len(set(chunk)):
                missing = sorted(set(chunk) - {int(r[0]) for r in rows})
                raise LedgerError(f"step(s) {', '.join(map(str, missing[:10]))} are not in the ledger at {self.ledger_dir}")
            for r in rows:
                rec = self.record(r)
                if rec.blob:
                    held.append(rec.blob)
                new = {"blob": rec.blob, "checksum": rec.checksum, "state": rec.state, **changes}
                rsum = row_checksum(rec.step, rec.epoch, rec.kind, bytes(r[3]), int(rec.recorded), new["blob"],
                                    new["checksum"], rec.nbytes, new["state"], r[11])
                cur.execute("UPDATE steps SET blob = ?, checksum = ?, state = ?, row_sum = ? WHERE step = ?",
                            (new["blob"], new["checksum"], new["state"], rsum, rec.step))
        return held

    def replace_shard_row(self, cur: sqlite3.Cursor, rec: StepRecord, created: float) -> str | None:
        """Inside a head commit: make ``rec`` the row of its shard (inserting it for a new shard); returns the
        blob the row named before, or None for a new shard. A row that was reverted or destroyed since the new
        sum was written raises, and nothing is committed."""
        shard = rec.step
        self._ids_writes += 1
        r = cur.execute(f"SELECT {self._cols} FROM steps WHERE step = ?", (shard,)).fetchone()
        old_blob = None
        if r is not None:
            old = self.record(r)
            if old.state != "applied" or old.blob is None:
                raise LedgerError(f"shard {shard} changed since its new sum was written; nothing was committed")
            old_blob, created = old.blob, r[11]
            cur.execute("DELETE FROM steps WHERE step = ?", (shard,))
        raw = ids_to_bytes(rec.ids)
        cur.execute(
            "INSERT INTO steps (step, epoch, kind, n_ids, ids, recorded, blob, checksum, nbytes, state, created,"
            " row_sum) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, 'applied', ?, ?)",
            (shard, rec.epoch, rec.kind, int(rec.ids.size), raw, rec.blob, rec.checksum, rec.nbytes, created,
             row_checksum(shard, rec.epoch, rec.kind, raw, 1, rec.blob, rec.checksum, rec.nbytes, "applied",
                          created)))
        cur.executemany("INSERT OR IGNORE INTO step_ids (sample_id, step) VALUES (?, ?)",
                        ((int(i), shard) for i in rec.ids))
        return old_blob

    # ------------------------------------------------------------------ raw reads (the audit, the cleanup)
    def raw_rows(self) -> list[tuple[Any, ...]]:
        """Every step row as stored, damaged ones too (see :meth:`row_problem`), in step order."""
        with self._lock:
            return list(self._conn.execute(f"SELECT {self._cols} FROM steps ORDER BY step").fetchall())

    def quick_check(self) -> list[str]:
        """SQLite's structural check: ``["ok"]``, or what it found."""
        with self._lock:
            return [str(r[0]) for r in self._conn.execute("PRAGMA quick_check").fetchall()]

    def rows_and_pairs(self) -> tuple[list[tuple[Any, ...]], np.ndarray]:
        """Every step row as stored (damaged ones too; see :meth:`row_problem`) and the id -> steps table's
        pairs, read in one transaction (so a writer adding steps meanwhile cannot make them disagree)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                rows = self._conn.execute(f"SELECT {self._cols} FROM steps ORDER BY step").fetchall()
                pairs = self._conn.execute("SELECT sample_id, step FROM step_ids").fetchall()
            finally:
                self._conn.execute("COMMIT")
        return rows, np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    def meta_and_forgotten(self) -> tuple[list[tuple[str, str]], list[tuple[int, int]]]:
        """The metadata's key-value pairs and the (forgotten id, event) pairs, as stored."""
        with self._lock:
            meta = self._conn.execute("SELECT key, value FROM meta").fetchall()
            forgotten = self._conn.execute("SELECT sample_id, event FROM forgotten").fetchall()
        return meta, forgotten
