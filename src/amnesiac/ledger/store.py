"""The ledger store: a directory holding a manifest, an SQLite index and one safetensors blob per step.

Layout of ``RUN/ledger``::

    manifest.json          format version, model fingerprint, optimizer, storage dtype, policy
    index.sqlite           steps, id -> step lookup, metadata (head), audit events
    initial.safetensors    the model's state when recording began (theta_initial)
    blobs/000000000042.safetensors   the update of step 42

Durability rules. A blob is written under a temporary name and renamed into place before its index row
is committed, so a committed row never points at a partial file. The index runs in WAL mode, which
survives a killed process; :meth:`LedgerStore.sync` (called by ``Recorder.flush()`` and at every commit)
also makes everything so far survive a power loss: blobs and their directory are fsynced and the WAL is
checkpointed with a full sync. Every blob read is checked against the checksum recorded at write time
(XXH3-64 by default, which catches damage and truncation at memory speed; ``checksum='crc32'`` or
``'sha256'`` in the manifest select the others, and ledgers written with any of them stay readable).

Every index row carries a checksum of its own fields and ids (``row_sum``), and the id -> steps table
is checked against the ids stored with each step before a deletion uses it, so damage to the index
makes a deletion refuse instead of reverting the wrong steps.

Who may delete what. Opening a ledger never changes it. Only the holder of the run's lock opens it
``writable=True``, and only then are leftovers removed: temporary files, and blobs that no committed row
accounts for *and* that a committed operation explains (a step numbered after the last indexed step,
whose row never committed; a step whose row records that its blob was destroyed). Any other unexpected
file is reported by :meth:`verify`, never deleted. A missing or unreadable index is an error naming the
file; nothing is created in its place.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import ConfigError, LedgerCorruptError, LedgerError, PendingChangeError
from ..faults import point as fault_point
from ..utils import atomic_write_bytes, fsync_dir, shared_lock_unless_busy
from .blob import (
    CHECKSUMS,
    BlobBuffer,
    blob_from_tensors,
    checksum,
    read_file_aligned,
    tensors_from_buffer,
    verify_checksum,
    write_blob,
)
from .format import (  # noqa: F401  (StepRecord, VerifyReport and the checksums are re-exported)
    LEDGER_LOCK,
    PENDING_DELETION,
    StepRecord,
    VerifyReport,
    event_checksum,
    file_checksum,
    ids_from_bytes,
    ids_to_bytes,
    meta_checksum,
    meta_sealed,
    row_checksum,
    shard_blob_name,
    shard_of_blob,
    step_of_blob,
)

FORMAT_VERSION = 1
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

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


class IndexQueries:
    """Read-only queries over the index as it is stored, damaged rows included, for the audit
    (:func:`amnesiac.ledger.verify_ledger`): the store's own reads check every row and raise on damage, the
    audit wants to see and report all of it. ``store.queries`` is one."""

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def quick_check(self) -> list[str]:
        """SQLite's structural check: ``["ok"]``, or what it found."""
        with self._store._lock:
            return [str(r[0]) for r in self._store._conn.execute("PRAGMA quick_check").fetchall()]

    def rows_and_pairs(self) -> tuple[list[tuple[Any, ...]], np.ndarray]:
        """Every step row as stored and the id -> steps table's pairs, read in one transaction (so a writer
        adding steps meanwhile cannot make them disagree)."""
        store = self._store
        with store._lock:
            store._conn.execute("BEGIN")
            try:
                rows = store._conn.execute(f"SELECT {store._COLS} FROM steps ORDER BY step").fetchall()
                pairs = store._conn.execute("SELECT sample_id, step FROM step_ids").fetchall()
            finally:
                store._conn.execute("COMMIT")
        return rows, np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    def meta_and_forgotten(self) -> tuple[list[tuple[str, str]], list[tuple[int, int]]]:
        """The metadata's key-value pairs and the (forgotten id, event) pairs, as stored."""
        with self._store._lock:
            meta = self._store._conn.execute("SELECT key, value FROM meta").fetchall()
            forgotten = self._store._conn.execute("SELECT sample_id, event FROM forgotten").fetchall()
        return meta, forgotten

    def row_problem(self, raw: tuple[Any, ...]) -> str | None:
        """What is wrong with a raw row (None when its checksum and shape hold)."""
        return self._store._row_problem(raw)

    def record(self, raw: tuple[Any, ...]) -> StepRecord:
        """A raw row as a StepRecord, unchecked (after :meth:`row_problem` said it is sound)."""
        return self._store._row(raw, check=False)


class LedgerStore:
    """A local ledger directory. Open an existing one with :meth:`open`, start one with :meth:`create`.

    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> store = LedgerStore.create(d + "/ledger", manifest={"storage_dtype": "float32"})
    >>> store.put_step(1, epoch=0, ids=[3, 4], update={"w": torch.ones(2)})
    >>> store.put_step(2, epoch=0, ids=[5], update=None)
    >>> store.steps_for_ids([4, 5])
    [1, 2]
    >>> store.load_update(1)["w"].tolist()
    [1.0, 1.0]
    >>> store.close()
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, manifest: dict[str, Any], *, writable: bool = True) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        self.manifest = manifest
        self.writable = writable
        self._unsynced: list[Path] = []  # blobs written since the last sync()
        # shard ledgers: new versions of shard sums written since the last head commit (shard -> version)
        self._pending_shards: dict[int, StepRecord] = {}
        self._read_columns()
        self.queries = IndexQueries(self)

    def _read_columns(self) -> None:
        """Which checksum columns this index has: a ledger written before row and event checksums existed is
        read (as unchecked) without them, until its next writable open adds them."""
        self._has_row_sum = "row_sum" in {r[1] for r in self._conn.execute("PRAGMA table_info(steps)")}
        has_event_sum = "sum" in {r[1] for r in self._conn.execute("PRAGMA table_info(events)")}
        self._COLS = type(self)._COLS if self._has_row_sum else type(self)._COLS.replace("row_sum", "NULL")
        self._event_sum = "sum" if has_event_sum else "NULL"

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
        index = path / "index.sqlite"
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

    @staticmethod
    def _check_dirs(path: Path) -> None:
        if path.exists() and not path.is_dir():
            raise LedgerError(f"{path} should be the ledger directory but is a file")
        blobs = path / "blobs"
        if blobs.exists() and not blobs.is_dir():
            raise LedgerCorruptError(f"{blobs} should be the directory of stored updates but is a file")

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, manifest: dict[str, Any],
               initial: dict[str, torch.Tensor] | None = None) -> LedgerStore:
        """Start a new ledger at ``path``; refuses a directory that already holds one.

        ``initial`` (the model state when recording begins) is written, with its hash recorded in the
        index, before the manifest: a ledger whose manifest exists always has its initial state.
        """
        path = Path(path)
        cls._check_dirs(path)
        if (path / "manifest.json").exists() or (path / "index.sqlite").exists():
            raise LedgerError(f"{path} already holds a ledger; open it instead, or choose an empty directory")
        dtype = manifest.get("storage_dtype", "float32")
        if dtype not in STORAGE_DTYPES:
            raise ConfigError(f"storage dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
        manifest = {"checksum": "xxh3", **manifest}
        if manifest["checksum"] not in CHECKSUMS:
            raise ConfigError(f"checksum must be one of {', '.join(CHECKSUMS)}, got {manifest['checksum']!r}")
        if path.exists() and any(path.iterdir()):
            raise LedgerError(f"{path} is not empty; a new ledger needs an empty or missing directory")
        # built under a temporary name and renamed into place whole: a crash leaves either no ledger or a
        # complete one, never a directory that looks damaged (the temporary one is removed by the next
        # holder of the run's lock)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "blobs").mkdir(parents=True)
        (tmp / LEDGER_LOCK).touch()  # made now, so readers that take it never create a file
        full = {"format_version": FORMAT_VERSION, "created": time.time(), "row_sums": True, **manifest}
        raw = (json.dumps(full, indent=2, sort_keys=True, default=str) + "\n").encode()
        conn = cls._connect(tmp, create=True)
        store = cls(tmp, conn, full)
        if initial is not None:
            store.save_initial(initial)
        # the salt of the hashed ids in receipts, made with the ledger, so copies of a run hash ids alike
        store.set_meta(manifest_sum=checksum(raw, "xxh3"), id_salt=secrets.token_hex(16), durable=True)
        fault_point("train:creating-ledger")
        atomic_write_bytes(tmp / "manifest.json", raw)
        conn.close()
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
        fsync_dir(path.parent)
        return cls(path, cls._connect(path, create=False), full)

    @classmethod
    def read_manifest(cls, path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
        """The manifest of the ledger at ``path`` and its raw bytes; a missing or malformed one raises."""
        path = Path(path)
        cls._check_dirs(path)
        mpath = path / "manifest.json"
        if not mpath.exists():
            raise LedgerError(
                f"no ledger at {path} (manifest.json is missing); train with record='all' or record='watch' to create one"
            )
        if not mpath.is_file():
            raise LedgerCorruptError(f"{mpath} is not a file")
        try:
            raw = mpath.read_bytes()
            manifest = json.loads(raw.decode("utf-8"))
        except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise LedgerCorruptError(f"{mpath} is damaged: not valid UTF-8 JSON ({err})") from None
        if not isinstance(manifest, dict):
            raise LedgerCorruptError(f"{mpath} is damaged: expected a JSON object, got {type(manifest).__name__}")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise LedgerError(f"{path}: ledger format version {version!r} is not supported (this amnesiac reads {FORMAT_VERSION})")
        if manifest.get("storage_dtype", "float32") not in STORAGE_DTYPES:
            raise LedgerCorruptError(f"{mpath} is damaged: unknown storage dtype {manifest.get('storage_dtype')!r}")
        return manifest, raw

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, writable: bool = False, check_manifest: bool = True) -> LedgerStore:
        """Open an existing ledger. Nothing on disk changes unless ``writable`` (for the holder of the
        run's lock), which also removes the leftovers a crash explains (see the module's docstring).

        The manifest's bytes are checked against the checksum recorded at creation (``check_manifest``;
        the audit turns it off to report the damage with everything else it finds)."""
        path = Path(path)
        manifest, raw = cls.read_manifest(path)
        if not (path / "blobs").is_dir():
            raise LedgerCorruptError(f"{path / 'blobs'} (the directory of stored updates) is missing")
        store = cls(path, cls._connect(path, create=False), manifest, writable=writable)
        want = store.get_meta("manifest_sum")
        if check_manifest and want is not None and checksum(raw, "xxh3") != want:
            store.close()
            raise LedgerCorruptError(f"{path / 'manifest.json'} does not match the checksum recorded when the ledger "
                                     "was created; it was changed or damaged. Nothing was changed")
        if writable:
            if not store._has_row_sum:  # a ledger from before row checksums: add the columns
                store._write(lambda cur: cur.execute("ALTER TABLE steps ADD COLUMN row_sum TEXT"))
            if store._event_sum == "NULL":
                store._write(lambda cur: cur.execute("ALTER TABLE events ADD COLUMN sum TEXT"))
            store._read_columns()
            store._cleanup()
        return store

    def _cleanup(self) -> None:
        """Remove temporary files and blobs that a committed operation explains (writable stores only)."""
        if not self.writable:
            raise LedgerError("a ledger opened read-only never deletes files")
        last = self.last_step()
        with self._lock:
            raw_rows = self._conn.execute(f"SELECT {self._COLS} FROM steps").fetchall()
        rows = {r[0]: r[5] for r in raw_rows if isinstance(r[0], int)}
        sound = {r[0] for r in raw_rows if isinstance(r[0], int) and self._row_problem(r) is None}
        generation = self.shard_generation()
        # numbered blobs are judged against the sealed head, never against what the index happens to list: a
        # row deleted or re-keyed by damage must not make a committed update look like an uncommitted write
        committed = self.committed_step()
        for entry in (self.path / "blobs").iterdir():
            if entry.name.endswith(".tmp") and entry.name.startswith("."):
                entry.unlink(missing_ok=True)
                continue
            shard_gen = shard_of_blob(entry.name) if self.kind == "shards" else None
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

    def close(self) -> None:
        """Close the index connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, work: Callable[[sqlite3.Cursor], Any], *, durable: bool = False) -> Any:
        """Run ``work`` in one write transaction, rolled back on any error (the connection stays usable).

        ``durable`` makes this commit survive a power loss (a full sync of the WAL).
        """
        if not self.writable:
            raise LedgerError(f"the ledger at {self.path} was opened read-only")
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

    def sync(self) -> None:
        """Make everything written so far survive a power loss: fsync new blobs and their directory, then
        checkpoint the index's WAL with a full sync."""
        pending, self._unsynced = self._unsynced, []
        for p in pending:
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                continue  # destroyed since (a committed removal)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.path / "blobs")
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(FULL)")

    # ------------------------------------------------------------------ writing
    @staticmethod
    def blob_name(step: int) -> str:
        return f"{step:012d}.safetensors"

    def put_step(
        self,
        step: int,
        *,
        epoch: int,
        ids: Sequence[int] | np.ndarray | torch.Tensor,
        update: dict[str, torch.Tensor] | BlobBuffer | None,
        kind: str = "train",
        fsync: bool = False,
    ) -> None:
        """Store one step: first its blob (if any), then its index row and id rows in one transaction.

        ``update`` is a dict of tensors, a filled :class:`BlobBuffer` (the recorder's zero-copy path), or
        None for a step that is indexed without a stored update. ``fsync`` syncs the blob at once; without
        it the blob is synced by the next :meth:`sync`.
        """
        ids_np = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64).reshape(-1)
        blob = digest = None
        nbytes = 0
        if update is not None:
            buf = update if isinstance(update, BlobBuffer) else blob_from_tensors(update)
            buf.seal({"step": str(int(step)), "kind": kind})
            blob = self.blob_name(step)
            digest = checksum(buf.payload(), self.manifest.get("checksum", "sha256"))
            nbytes = buf.size
            write_blob(self.path / "blobs" / blob, buf, fsync=fsync)
            if not fsync:
                self._unsynced.append(self.path / "blobs" / blob)
        self._insert_rows([(int(step), int(epoch), kind, ids_np, blob, digest, nbytes)])

    def put_index_rows(self, rows: Sequence[tuple[int, int, str, np.ndarray]]) -> None:
        """Index several steps that store no update, ``(step, epoch, kind, ids)`` each, in one transaction."""
        self._insert_rows([(int(st), int(ep), kind, np.asarray(ids, dtype=np.int64).reshape(-1), None, None, 0)
                           for st, ep, kind, ids in rows])

    def _insert_rows(self, rows: list[tuple[int, int, str, np.ndarray, str | None, str | None, int]]) -> None:
        now = time.time()

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
            self._write(work)
        except sqlite3.IntegrityError:
            steps = ", ".join(str(r[0]) for r in rows)
            raise LedgerError(f"step(s) {steps} already in the ledger at {self.path}; a step is recorded once") from None

    def truncate_after(self, step: int) -> int:
        """Forget every step after ``step`` (used when resuming from a checkpoint); returns how many.

        The rows go in one transaction first; then their blobs (a crash in between leaves blobs numbered
        after the last step, which the next writable open removes). A shard ledger's rows change only at a
        head commit, so it has nothing to cut back."""
        if self.kind == "shards":
            return 0
        with self._lock:
            rows = self._conn.execute("SELECT blob FROM steps WHERE step > ?", (int(step),)).fetchall()

        def work(cur: sqlite3.Cursor) -> None:
            cur.execute("DELETE FROM step_ids WHERE step > ?", (int(step),))
            cur.execute("DELETE FROM steps WHERE step > ?", (int(step),))

        self._write(work, durable=True)
        for (blob,) in rows:
            if blob:
                (self.path / "blobs" / blob).unlink(missing_ok=True)
        return len(rows)

    # ------------------------------------------------------------------ metadata and audit log
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @staticmethod
    def _upsert_meta(cur: sqlite3.Cursor, values: dict[str, Any]) -> None:
        """Set metadata inside a transaction and reseal the checksum over all of it."""
        cur.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, str(v)) for k, v in values.items()],
        )
        LedgerStore._seal_meta(cur)

    @staticmethod
    def _seal_meta(cur: sqlite3.Cursor) -> None:
        total = meta_checksum(cur.execute("SELECT key, value FROM meta").fetchall())
        cur.execute("INSERT INTO meta (key, value) VALUES ('meta_sum', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (total,))

    def set_meta(self, *, durable: bool = False, **values: Any) -> None:
        """Set metadata keys in one transaction (``durable`` syncs it to the disk)."""
        self._write(lambda cur: self._upsert_meta(cur, values), durable=durable)

    def add_event(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Append an entry to the audit log; returns its number."""
        def work(cur: sqlite3.Cursor) -> int:
            return self._insert_event(cur, kind, payload)

        return int(self._write(work, durable=True))

    @staticmethod
    def _insert_event(cur: sqlite3.Cursor, kind: str, payload: Mapping[str, Any]) -> int:
        now, text = time.time(), json.dumps(dict(payload), sort_keys=True, default=str)
        cur.execute("INSERT INTO events (time, kind, payload, sum) VALUES (?, ?, ?, ?)",
                    (now, kind, text, event_checksum(now, kind, text)))
        return int(cur.lastrowid or 0)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Audit-log entries, oldest first, optionally of one kind; a damaged entry raises."""
        q = f"SELECT id, time, kind, payload, {self._event_sum} FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
        with self._lock:
            rows = self._conn.execute(q, (kind,) if kind else ()).fetchall()
        out = []
        for r in rows:
            if r[4] is not None and (not isinstance(r[1], float) or not isinstance(r[3], str)
                                     or event_checksum(r[1], r[2], r[3]) != r[4]):
                raise LedgerCorruptError(f"audit-log entry {r[0]} of {self.path} is damaged (checksum mismatch)")
            try:
                payload = json.loads(r[3])
            except (TypeError, ValueError):
                raise LedgerCorruptError(f"audit-log entry {r[0]} of {self.path} is damaged (not JSON)") from None
            out.append({"id": r[0], "time": r[1], "kind": r[2], **payload})
        return out

    # ------------------------------------------------------------------ reading
    _COLS = "step, epoch, kind, ids, recorded, blob, checksum, nbytes, state, n_ids, row_sum, created"

    def _row(self, r: tuple[Any, ...], *, check: bool = True) -> StepRecord:
        """A StepRecord from a raw row; with ``check`` a row whose checksum does not match raises."""
        if check:
            problem = self._row_problem(r)
            if problem:
                raise LedgerCorruptError(f"the index row of step {r[0]} is damaged ({problem}); {self.path / 'index.sqlite'} "
                                         "can no longer be trusted for deletions", [int(r[0])] if isinstance(r[0], int) else [])
        return StepRecord(int(r[0]), int(r[1]), r[2], ids_from_bytes(r[3]), bool(r[4]), r[5], r[6], int(r[7]), r[8])

    def _row_problem(self, r: tuple[Any, ...]) -> str | None:
        step, epoch, kind, ids, recorded, blob, digest, nbytes, state, n_ids, rsum, created = r
        if not isinstance(ids, (bytes, bytearray)) or len(ids) % 8 or len(ids) // 8 != n_ids:
            return "its ids do not match their count"
        if state not in ("applied", "reverted"):
            return f"unknown state {state!r}"
        if rsum is None:
            return None if not self._has_row_sum or self.manifest.get("row_sums") is not True else "its checksum is missing"
        try:
            expected = row_checksum(step, epoch, kind, bytes(ids), recorded, blob, digest, nbytes, state, created)
        except (TypeError, ValueError):
            return "a field has the wrong type"
        return None if expected == rsum else "its checksum does not match its fields"

    def step(self, step: int) -> StepRecord:
        """The index row of one step (checked); an unknown step raises LedgerError."""
        with self._lock:
            r = self._conn.execute(f"SELECT {self._COLS} FROM steps WHERE step = ?", (int(step),)).fetchone()
        if r is None:
            raise LedgerError(f"step {step} is not in the ledger at {self.path}")
        return self._row(r)

    def iter_steps(self, *, state: str | None = None) -> Iterator[StepRecord]:
        """Every step in order (optionally only those in ``state``); each row's checksum is checked."""
        q = f"SELECT {self._COLS} FROM steps" + (" WHERE state = ?" if state else "") + " ORDER BY step"
        with self._lock:
            rows = self._conn.execute(q, (state,) if state else ()).fetchall()
        for r in rows:
            yield self._row(r)

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
        recs = (self._row(r) for r in self._select_in(f"SELECT {self._COLS} FROM steps WHERE step IN ({{}})", steps))
        return {rec.step: rec for rec in recs}

    def count_steps(self) -> int:
        """How many steps the index holds."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0])

    def steps_for_ids(self, ids: Iterable[int], *, cross_check: bool = False) -> list[int]:
        """Every step whose batch held any of ``ids``, sorted (uses the id -> steps table).

        With ``cross_check`` the answer is confirmed against the ids stored in every step's own row (each
        row's checksum checked too); any disagreement raises :class:`LedgerCorruptError` naming the steps.
        The planner always cross-checks: a damaged id table must refuse a deletion, never revert the wrong
        steps. The scan reads 8 bytes per sample per step (about 5 MB for 10 epochs of MNIST at batch 64).
        """
        wanted = np.unique(np.asarray(list(ids), dtype=np.int64))
        rows = self._select_in("SELECT DISTINCT step FROM step_ids WHERE sample_id IN ({})", wanted.tolist())
        from_table = sorted({int(r[0]) for r in rows})
        if not cross_check:
            return from_table
        self._check_numbering()
        from_rows = self.scan_steps_holding(wanted)
        if from_rows != from_table:
            odd = sorted(set(from_rows) ^ set(from_table))
            raise LedgerCorruptError(
                f"the ledger index {self.path / 'index.sqlite'} contradicts itself for this request: the id -> steps "
                f"table and the steps' own rows disagree on step(s) {', '.join(map(str, odd[:20]))}. The index is "
                "damaged; nothing was changed. Run `amnesiac ledger verify` for a full report.", odd)
        return from_table

    def _check_numbering(self) -> None:
        """Steps are numbered without gaps, up to at least the last committed one: an index that
        lost rows (deleted or re-keyed by damage) cannot say which steps saw a record, so it raises."""
        if self.kind == "shards":
            return
        with self._lock:
            count, low, high = self._conn.execute("SELECT COUNT(*), MIN(step), MAX(step) FROM steps").fetchone()
        committed = self.committed_step()
        if committed is None:
            raise LedgerCorruptError(f"the metadata of {self.path / 'index.sqlite'} fails its checksum; which steps "
                                     "were committed cannot be known. Nothing was changed")
        lost = []
        if count and high - low + 1 != count:
            lost.append(f"its step numbers {low}..{high} have gaps ({count} rows)")
        if (high or 0) < committed:
            lost.append(f"steps {(high or 0) + 1}..{committed} were committed but have no row")
        if lost:
            raise LedgerCorruptError(f"the ledger index {self.path / 'index.sqlite'} lost rows: {'; '.join(lost)}. "
                                     "A deletion could miss steps that saw the records; nothing was changed. Run "
                                     "`amnesiac ledger verify` for a full report")

    def scan_steps_holding(self, ids: np.ndarray) -> list[int]:
        """Steps whose own row (checksum checked) holds any of ``ids``: a full scan, no id table."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {self._COLS} FROM steps ORDER BY step").fetchall()
        steps, chunks = [], []
        for r in rows:
            rec = self._row(r)
            steps.append(np.full(rec.ids.size, rec.step, dtype=np.int64))
            chunks.append(rec.ids)
        if not chunks:
            return []
        all_steps, all_ids = np.concatenate(steps), np.concatenate(chunks)
        return sorted(set(np.unique(all_steps[np.isin(all_ids, ids)]).tolist()))

    def last_step(self) -> int:
        """The highest step number indexed (0 when empty)."""
        with self._lock:
            r = self._conn.execute("SELECT MAX(step) FROM steps").fetchone()
        return int(r[0] or 0)

    def summary(self) -> dict[str, Any]:
        """Counts and sizes for ``amnesiac ledger info``."""
        with self._lock:
            steps, recorded, nbytes, reverted, stored_bytes = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(recorded), 0), COALESCE(SUM(nbytes), 0),"
                " COALESCE(SUM(state = 'reverted'), 0), COALESCE(SUM(CASE WHEN blob IS NOT NULL THEN nbytes END), 0)"
                " FROM steps"
            ).fetchone()
            n_ids = self._conn.execute("SELECT COUNT(DISTINCT sample_id) FROM step_ids").fetchone()[0]
            stored = self._conn.execute("SELECT COUNT(*) FROM steps WHERE blob IS NOT NULL").fetchone()[0]
        return {
            "path": str(self.path),
            "kind": self.kind,
            "steps": int(steps),
            "recorded_steps": int(recorded),
            "stored_blobs": int(stored),
            "destroyed_blobs": int(recorded) - int(stored),
            "reverted_steps": int(reverted),
            "distinct_ids": int(n_ids),
            "bytes": int(stored_bytes),
            "bytes_ever_recorded": int(nbytes),
            "storage_dtype": self.manifest.get("storage_dtype"),
            "policy": self.manifest.get("policy"),
            "include_buffers": self.manifest.get("include_buffers"),
            "optimizer": self.manifest.get("optimizer"),
            "head_hash": self.get_meta("head_hash"),
            "head_step": self.get_meta("head_step"),
            "training_complete": self.get_meta("training_complete") == "1",
        }

    def _read_verified(self, rec: StepRecord) -> tuple[torch.Tensor, int]:
        if not rec.recorded or rec.blob is None:
            raise LedgerError(f"step {rec.step} has no stored update")
        path = self.path / "blobs" / rec.blob
        try:
            buf, size = read_file_aligned(path)
        except FileNotFoundError:
            raise LedgerCorruptError(f"the update of step {rec.step} is missing ({path})", [rec.step]) from None
        except OSError as err:
            raise LedgerCorruptError(f"the update of step {rec.step} cannot be read ({err})", [rec.step]) from None
        payload = buf.numpy().data[:size]
        if rec.checksum is None or size != rec.nbytes or not verify_checksum(payload, rec.checksum):
            raise LedgerCorruptError(
                f"the update of step {rec.step} does not match its checksum ({path}: {size} bytes, "
                f"{rec.nbytes} recorded); the blob is corrupt or truncated", [rec.step]
            )
        return buf, size

    def read_blob(self, rec: StepRecord) -> bytes:
        """The raw bytes of a step's blob, checked against its checksum."""
        buf, size = self._read_verified(rec)
        return bytes(buf.numpy().data[:size])

    def load_update(self, step: int | StepRecord) -> dict[str, torch.Tensor]:
        """The update of one step, verified against its checksum (tensors share one buffer, no copies)."""
        rec = step if isinstance(step, StepRecord) else self.step(step)
        buf, size = self._read_verified(rec)
        try:
            return tensors_from_buffer(buf, size)
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            try:
                return st_load(bytes(buf.numpy().data[:size]))
            except Exception:
                raise LedgerCorruptError(f"the update of step {rec.step} cannot be decoded ({err})", [rec.step]) from None

    def _rewrite_rows(self, cur: sqlite3.Cursor, steps: Sequence[int], **changes: Any) -> list[str]:
        """Inside a transaction: apply ``changes`` (column -> value) to ``steps``, keeping each row's checksum
        right. A row that is already damaged is refused (raises), so no damage is ever sealed in. Returns the
        blob names the rows held before."""
        held: list[str] = []
        for start in range(0, len(steps), 500):
            chunk = [int(x) for x in steps[start : start + 500]]
            rows = cur.execute(f"SELECT {self._COLS} FROM steps WHERE step IN ({','.join('?' * len(chunk))})",
                               chunk).fetchall()
            if len(rows) != len(set(chunk)):
                missing = sorted(set(chunk) - {int(r[0]) for r in rows})
                raise LedgerError(f"step(s) {', '.join(map(str, missing[:10]))} are not in the ledger at {self.path}")
            for r in rows:
                rec = self._row(r)
                if rec.blob:
                    held.append(rec.blob)
                new = {"blob": rec.blob, "checksum": rec.checksum, "state": rec.state, **changes}
                rsum = row_checksum(rec.step, rec.epoch, rec.kind, bytes(r[3]), int(rec.recorded), new["blob"],
                                    new["checksum"], rec.nbytes, new["state"], r[11])
                cur.execute("UPDATE steps SET blob = ?, checksum = ?, state = ?, row_sum = ? WHERE step = ?",
                            (new["blob"], new["checksum"], new["state"], rsum, rec.step))
        return held

    def delete_blobs(self, steps: Iterable[int]) -> int:
        """Destroy the stored updates of ``steps`` (index rows stay, with no blob). Returns how many.

        The rows record the destruction first (one durable transaction), then the files go: a crash in
        between leaves blobs that the rows say are destroyed, which the next writable open removes.
        """
        steps = sorted({int(s) for s in steps})
        if not steps:
            return 0
        held = self._write(lambda cur: self._rewrite_rows(cur, steps, blob=None, checksum=None), durable=True)
        for blob in held:
            (self.path / "blobs" / blob).unlink(missing_ok=True)
        if held:
            fsync_dir(self.path / "blobs")
        return len(held)

    def commit_revert(self, steps: Sequence[int], *, new_hash: str, event: Mapping[str, Any],
                      forgotten_ids: Sequence[int] = (), extra_meta: dict[str, Any] | None = None) -> int:
        """In one durable transaction: mark ``steps`` reverted, move the head to ``new_hash``, log ``event``.

        This transaction is the commit point of a forget: before it the old model is the truth, after it
        the new one. Returns the event's number.
        """
        steps = sorted({int(s) for s in steps})

        def work(cur: sqlite3.Cursor) -> tuple[int, list[str]]:
            self._rewrite_rows(cur, steps, state="reverted")
            superseded = self._fold_pending(cur)
            self._upsert_meta(cur, {"head_hash": new_hash, **(extra_meta or {}), **self._committed(cur)})
            event_id = self._insert_event(cur, event.get("kind", "forget"), event)
            cur.executemany("INSERT OR IGNORE INTO forgotten (sample_id, event) VALUES (?, ?)",
                            ((int(i), event_id) for i in forgotten_ids))
            return event_id, superseded

        if self._pending_shards:
            self.sync()
        event_id, superseded = self._write(work, durable=True)
        self._after_fold(superseded)
        return int(event_id)

    def commit_head(self, **meta: Any) -> None:
        """Move the head (``head_hash`` and the other ``meta`` keys) in one durable transaction, adopting the
        shard sums written since the last commit (shard ledgers): the commit point of an epoch."""
        if self._pending_shards:
            self.sync()

        def work(cur: sqlite3.Cursor) -> list[str]:
            superseded = self._fold_pending(cur)
            self._upsert_meta(cur, {**meta, **self._committed(cur)})
            return superseded

        self._after_fold(self._write(work, durable=True))

    def _committed(self, cur: sqlite3.Cursor) -> dict[str, int]:
        """Inside a head commit: the highest step the commit covers, sealed with the metadata. It is how the
        cleanup knows that a blob whose index row is gone was committed (index damage, reported and kept) and
        not a write that never committed (removed)."""
        if self.kind == "shards":
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

    def forgotten_ids(self) -> np.ndarray:
        """Every sample id a committed deletion removed (they are never trained on again)."""
        with self._lock:
            rows = self._conn.execute("SELECT sample_id FROM forgotten ORDER BY sample_id").fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def id_salt(self) -> str:
        """A random salt, made once per ledger, for the hashed ids in receipts."""
        salt = self.get_meta("id_salt")
        if salt is None:  # a ledger made before salts were made with it
            candidate = secrets.token_hex(16)
            def work(cur: sqlite3.Cursor) -> None:
                cur.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('id_salt', ?)", (candidate,))
                self._seal_meta(cur)

            self._write(work)
            salt = self.get_meta("id_salt")
        return str(salt)

    def mark_head(self, model: torch.nn.Module, *, model_file: str | os.PathLike[str] | None = None) -> str:
        """Record ``model`` as the model this ledger describes (its head), after training in your own loop.

        A deletion applies only to the head model: :func:`amnesiac.forget_records` refuses any other, so a
        model changed outside amnesiac is never subtracted from. ``model_file``: the file you saved it to, whose
        checksum ``verify`` then checks too. Returns the model's hash.
        """
        from ..utils import model_hash

        h = model_hash(model)
        meta: dict[str, Any] = {"head_hash": h, "head_step": self.last_step(), "training_complete": 1}
        if model_file is not None:
            meta["head_file_sum"] = file_checksum(Path(model_file))
        self.commit_head(**meta)
        return h

    def all_ids(self) -> np.ndarray:
        """Every sample id the ledger has seen in any step, sorted."""
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT sample_id FROM step_ids ORDER BY sample_id").fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    # ------------------------------------------------------------------ initial state
    @property
    def initial_path(self) -> Path:
        return self.path / "initial.safetensors"

    def save_initial(self, state: dict[str, torch.Tensor]) -> None:
        """Keep the model state at the start of recording (theta_initial), with its hashes in the index."""
        from ..utils import state_hash

        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        atomic_write_bytes(self.initial_path, st_save(tensors))
        self.set_meta(initial_hash=state_hash(tensors), initial_file_sum=file_checksum(self.initial_path), durable=True)

    def load_initial(self) -> dict[str, torch.Tensor]:
        """The model state at the start of recording, checked against the checksum recorded when it was saved."""
        path = self.initial_path
        if not path.is_file():
            raise LedgerCorruptError(f"{path} is missing; the ledger's initial weights are gone")
        expected = self.get_meta("initial_file_sum")
        if expected is not None and file_checksum(path) != expected:
            raise LedgerCorruptError(f"{path} does not match the checksum recorded when it was saved; it is damaged")
        try:
            return st_load(path.read_bytes())
        except Exception as err:  # safetensors raises several types for a bad file
            raise LedgerCorruptError(f"{path} cannot be decoded ({err})") from None

    # ------------------------------------------------------------------ shard ledgers
    @property
    def kind(self) -> str:
        """``"steps"``: one update per optimizer step (the paper's ledger); ``"shards"``: one summed update per
        shard of records, whose rows are numbered by shard (see :mod:`amnesiac.data.shards`)."""
        return str(self.manifest.get("ledger_kind", "steps"))

    def shard_generation(self) -> int:
        """How many head commits have adopted shard sums (the version number of the newest sums)."""
        value = self.get_meta("shard_generation", "0")
        return int(value) if value and value.isdigit() else 0

    def put_shard_visit(self, shard: int, *, epoch: int, ids: Sequence[int] | np.ndarray,
                        update: dict[str, torch.Tensor], kind: str = "train", fsync: bool = False) -> None:
        """Add one visit's update (θ after the shard's consecutive steps minus θ before them) to the shard's
        running sum, written as a new version of the shard's blob, summed in float32.

        The index is not changed here: the new version becomes the shard's stored update at the next head
        commit (:meth:`commit_head`, :meth:`commit_revert`, :meth:`mark_head`). A crash before it leaves the
        sums the last commit adopted, which are the ones the committed model contains. With float16 or
        bfloat16 storage each new version is rounded again, so the error of a shard's sum grows with the
        number of its visits (one rounding per epoch) where an every-step ledger rounds each step once.
        """
        if self.kind != "shards":
            raise LedgerError(f"the ledger at {self.path} stores one update per step, not per shard")
        shard = int(shard)
        ids_np = np.asarray(ids, dtype=np.int64).reshape(-1)
        base_rec = self._pending_shards.get(shard)
        if base_rec is None:
            rows = self.steps_info([shard])
            base_rec = rows.get(shard)
            if base_rec is not None and base_rec.state != "applied":
                raise LedgerError(f"shard {shard} was subtracted by a deletion; training on its remaining records "
                                  "must be recorded under a new shard number")
            if base_rec is not None and base_rec.blob is None:
                raise LedgerError(f"the stored sum of shard {shard} was destroyed by an earlier deletion; its "
                                  "records can no longer be trained on with this ledger")
        base = self.load_update(base_rec) if base_rec is not None else {}
        if base and set(base) != set(update):
            raise LedgerError(f"shard {shard}: the update's tensors differ from those of its stored sum")
        total = {name: base[name].float() + t.float() if base else t.float() for name, t in update.items()}
        gen = self.shard_generation() + 1
        name = shard_blob_name(shard, gen)
        buf = blob_from_tensors(total, STORAGE_DTYPES[self.manifest.get("storage_dtype", "float32")])
        buf.seal({"shard": str(shard), "generation": str(gen), "kind": kind})
        digest = checksum(buf.payload(), self.manifest.get("checksum", "sha256"))
        write_blob(self.path / "blobs" / name, buf, fsync=fsync)
        if not fsync:
            self._unsynced.append(self.path / "blobs" / name)
        all_ids = np.union1d(base_rec.ids, ids_np) if base_rec is not None else np.unique(ids_np)
        first_kind = base_rec.kind if base_rec is not None else kind
        fault_point("ledger:shard-visit")
        self._pending_shards[shard] = StepRecord(shard, int(epoch), first_kind, all_ids, True, name, digest,
                                                 buf.size, "applied")

    def pending_shards(self) -> list[int]:
        """Shards with a sum written since the last head commit."""
        return sorted(self._pending_shards)

    def _fold_pending(self, cur: sqlite3.Cursor) -> list[str]:
        """Inside a head commit: point each pending shard's row at its new sum (inserting rows for new shards);
        returns the blob names the rows held before (removed once the commit is durable)."""
        if not self._pending_shards:
            return []
        superseded: list[str] = []
        now = time.time()
        for shard, rec in sorted(self._pending_shards.items()):
            r = cur.execute(f"SELECT {self._COLS} FROM steps WHERE step = ?", (shard,)).fetchone()
            raw = ids_to_bytes(rec.ids)
            created = now
            if r is not None:
                old = self._row(r)
                if old.state != "applied" or old.blob is None:
                    raise LedgerError(f"shard {shard} changed since its new sum was written; nothing was committed")
                superseded.append(old.blob)
                created = r[11]
                cur.execute("DELETE FROM steps WHERE step = ?", (shard,))
            cur.execute(
                "INSERT INTO steps (step, epoch, kind, n_ids, ids, recorded, blob, checksum, nbytes, state, created,"
                " row_sum) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, 'applied', ?, ?)",
                (shard, rec.epoch, rec.kind, int(rec.ids.size), raw, rec.blob, rec.checksum, rec.nbytes, created,
                 row_checksum(shard, rec.epoch, rec.kind, raw, 1, rec.blob, rec.checksum, rec.nbytes, "applied",
                              created)))
            cur.executemany("INSERT OR IGNORE INTO step_ids (sample_id, step) VALUES (?, ?)",
                            ((int(i), shard) for i in rec.ids))
        self._upsert_meta(cur, {"shard_generation": self.shard_generation() + 1})
        return superseded

    def _after_fold(self, superseded: list[str]) -> None:
        """After a durable head commit: the adopted versions are committed; the ones they replaced go."""
        self._pending_shards.clear()
        if superseded:
            fault_point("ledger:after-fold")
        for blob in superseded:
            (self.path / "blobs" / blob).unlink(missing_ok=True)
        if superseded:
            fsync_dir(self.path / "blobs")


def is_bare_ledger(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ledger directory of its own (recorded from your own loop), not a run directory."""
    p = Path(path)
    return (p / "manifest.json").is_file() and not (p / "config.json").exists()


@contextmanager
def reading_ledger(path: str | os.PathLike[str], *, interrupted_ok: bool = False) -> Iterator[LedgerStore]:
    """A ledger of your own loop opened for reading, as a run's readers are: the ledger's lock held shared for
    the block, so :func:`amnesiac.forget_records` cannot change it meanwhile. Raises
    :class:`~amnesiac.errors.PendingChangeError` while a deletion is changing it, or (unless
    ``interrupted_ok``) when a deletion died after its commit point and awaits completion. Changes nothing."""
    path = Path(path)
    with shared_lock_unless_busy(path / LEDGER_LOCK) as free:
        if not free:
            raise PendingChangeError(f"the ledger {path} is being changed right now (a deletion); try again when it "
                                     "finishes")
        with LedgerStore.open(path) as store:
            if store.get_meta(PENDING_DELETION) and not interrupted_ok:
                raise PendingChangeError(
                    f"a deletion on the ledger {path} died after its commit point; the next forget_records completes "
                    f"it, or run `amnesiac ledger recover {path}` to do it now")
            yield store
