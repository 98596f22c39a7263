"""The ledger store: a directory holding a manifest, an SQLite index and one safetensors blob per step.

Layout of ``RUN/ledger``::

    manifest.json          format version, model fingerprint, optimizer, storage dtype, policy
    index.sqlite           steps, id -> step lookup, metadata (head), audit events
    initial.safetensors    the model's state when recording began (theta_initial)
    blobs/000000000042.safetensors   the update of step 42

Durability rules. A blob is written under a temporary name and renamed into place before its index row
is committed, so a committed row never points at a partial file; a blob with no committed row is an
orphan that :meth:`LedgerStore.open` removes. The index runs in WAL mode, which survives a killed
process. Every blob read is checked against the checksum recorded at write time (XXH3-64 by default,
which catches damage and truncation at memory speed; ``checksum='crc32'`` or ``'sha256'`` in the manifest
select the others, and ledgers written with any of them stay readable).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

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

from ..errors import ConfigError, LedgerCorruptError, LedgerError
from ..utils import atomic_write_bytes, atomic_write_json

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
    created REAL NOT NULL
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
    payload TEXT NOT NULL
);
"""


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

    @property
    def ok(self) -> bool:
        return not self.bad


def _ids_to_blob(ids: np.ndarray) -> bytes:
    return np.ascontiguousarray(ids, dtype="<i8").tobytes()


def _ids_from_blob(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<i8").copy()


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

    def __init__(self, path: Path, conn: sqlite3.Connection, manifest: dict[str, Any]) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        self.manifest = manifest

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path / "index.sqlite"), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(_SCHEMA)
        return conn

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, manifest: dict[str, Any]) -> "LedgerStore":
        """Start a new ledger at ``path``; refuses a directory that already holds one."""
        path = Path(path)
        if (path / "manifest.json").exists():
            raise LedgerError(f"{path} already holds a ledger; open it instead, or choose an empty directory")
        dtype = manifest.get("storage_dtype", "float32")
        if dtype not in STORAGE_DTYPES:
            raise ConfigError(f"storage dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
        manifest = {"checksum": "xxh3", **manifest}
        if manifest["checksum"] not in CHECKSUMS:
            raise ConfigError(f"checksum must be one of {', '.join(CHECKSUMS)}, got {manifest['checksum']!r}")
        (path / "blobs").mkdir(parents=True, exist_ok=True)
        full = {"format_version": FORMAT_VERSION, "created": time.time(), **manifest}
        conn = cls._connect(path)
        atomic_write_json(path / "manifest.json", full)  # last: its presence marks a usable ledger
        return cls(path, conn, full)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "LedgerStore":
        """Open an existing ledger, removing temporary files and orphan blobs a crash left behind."""
        path = Path(path)
        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise LedgerError(
                f"no ledger at {path} (manifest.json is missing); train with --record all|watch to create one"
            )
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise LedgerCorruptError(f"{mpath} is not valid JSON ({err})") from None
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise LedgerError(f"{path}: ledger format version {version!r} is not supported (this amnesiac reads {FORMAT_VERSION})")
        store = cls(path, cls._connect(path), manifest)
        store._cleanup()
        return store

    def _cleanup(self) -> None:
        known = {r[0] for r in self._conn.execute("SELECT blob FROM steps WHERE blob IS NOT NULL")}
        for entry in (self.path / "blobs").iterdir():
            if entry.name.endswith(".tmp") or (entry.suffix == ".safetensors" and entry.name not in known):
                entry.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the index connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "LedgerStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        None for a step that is indexed without a stored update.
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
        self._insert_rows([(int(step), int(epoch), kind, ids_np, blob, digest, nbytes)])

    def put_index_rows(self, rows: Sequence[tuple[int, int, str, np.ndarray]]) -> None:
        """Index several steps that store no update, ``(step, epoch, kind, ids)`` each, in one transaction."""
        self._insert_rows([(int(st), int(ep), kind, np.asarray(ids, dtype=np.int64).reshape(-1), None, None, 0)
                           for st, ep, kind, ids in rows])

    def _insert_rows(self, rows: list[tuple[int, int, str, np.ndarray, str | None, str | None, int]]) -> None:
        now = time.time()
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for step, epoch, kind, ids_np, blob, digest, nbytes in rows:
                    cur.execute(
                        "INSERT INTO steps (step, epoch, kind, n_ids, ids, recorded, blob, checksum, nbytes, state, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'applied', ?)",
                        (step, epoch, kind, int(ids_np.size), _ids_to_blob(ids_np), int(blob is not None),
                         blob, digest, nbytes, now),
                    )
                    cur.executemany("INSERT INTO step_ids (sample_id, step) VALUES (?, ?)",
                                    ((int(i), step) for i in np.unique(ids_np)))
                cur.execute("COMMIT")
            except sqlite3.IntegrityError:
                cur.execute("ROLLBACK")
                steps = ", ".join(str(r[0]) for r in rows)
                raise LedgerError(f"step(s) {steps} already in the ledger at {self.path}; a step is recorded once") from None
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def truncate_after(self, step: int) -> int:
        """Forget every step after ``step`` (used when resuming from a checkpoint); returns how many."""
        with self._lock:
            rows = self._conn.execute("SELECT blob FROM steps WHERE step > ?", (int(step),)).fetchall()
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("DELETE FROM step_ids WHERE step > ?", (int(step),))
            cur.execute("DELETE FROM steps WHERE step > ?", (int(step),))
            cur.execute("COMMIT")
        for (blob,) in rows:
            if blob:
                (self.path / "blobs" / blob).unlink(missing_ok=True)
        return len(rows)

    # ------------------------------------------------------------------ metadata and audit log
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, **values: Any) -> None:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, str(v)) for k, v in values.items()],
            )
            cur.execute("COMMIT")

    def add_event(self, kind: str, payload: dict[str, Any]) -> int:
        """Append an entry to the audit log; returns its number."""
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO events (time, kind, payload) VALUES (?, ?, ?)",
                (time.time(), kind, json.dumps(payload, sort_keys=True, default=str)),
            )
            return int(cur.lastrowid)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Audit-log entries, oldest first, optionally of one kind."""
        q = "SELECT id, time, kind, payload FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
        with self._lock:
            rows = self._conn.execute(q, (kind,) if kind else ()).fetchall()
        return [{"id": r[0], "time": r[1], "kind": r[2], **json.loads(r[3])} for r in rows]

    # ------------------------------------------------------------------ reading
    def _row(self, r: tuple[Any, ...]) -> StepRecord:
        return StepRecord(int(r[0]), int(r[1]), r[2], _ids_from_blob(r[3]), bool(r[4]), r[5], r[6], int(r[7]), r[8])

    _COLS = "step, epoch, kind, ids, recorded, blob, checksum, nbytes, state"

    def step(self, step: int) -> StepRecord:
        """The index row of one step; an unknown step raises LedgerError."""
        with self._lock:
            r = self._conn.execute(f"SELECT {self._COLS} FROM steps WHERE step = ?", (int(step),)).fetchone()
        if r is None:
            raise LedgerError(f"step {step} is not in the ledger at {self.path}")
        return self._row(r)

    def iter_steps(self, *, state: str | None = None) -> Iterator[StepRecord]:
        """Every step in order (optionally only those in ``state``)."""
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
        """Index rows of the given steps (unknown steps are left out)."""
        recs = (self._row(r) for r in self._select_in(f"SELECT {self._COLS} FROM steps WHERE step IN ({{}})", steps))
        return {rec.step: rec for rec in recs}

    def count_steps(self) -> int:
        """How many steps the index holds."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0])

    def steps_for_ids(self, ids: Iterable[int]) -> list[int]:
        """Every step whose batch held any of ``ids``, sorted (uses the id index)."""
        rows = self._select_in("SELECT DISTINCT step FROM step_ids WHERE sample_id IN ({})", ids)
        return sorted({r[0] for r in rows})

    def last_step(self) -> int:
        """The highest step number indexed (0 when empty)."""
        with self._lock:
            r = self._conn.execute("SELECT MAX(step) FROM steps").fetchone()
        return int(r[0] or 0)

    def summary(self) -> dict[str, Any]:
        """Counts and sizes for ``amnesiac ledger info``."""
        with self._lock:
            steps, recorded, nbytes, reverted = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(recorded), 0), COALESCE(SUM(nbytes), 0),"
                " COALESCE(SUM(state = 'reverted'), 0) FROM steps"
            ).fetchone()
            n_ids = self._conn.execute("SELECT COUNT(DISTINCT sample_id) FROM step_ids").fetchone()[0]
            stored = self._conn.execute("SELECT COUNT(*) FROM steps WHERE blob IS NOT NULL").fetchone()[0]
        return {
            "path": str(self.path),
            "steps": int(steps),
            "recorded_steps": int(recorded),
            "stored_blobs": int(stored),
            "reverted_steps": int(reverted),
            "distinct_ids": int(n_ids),
            "bytes": int(nbytes),
            "storage_dtype": self.manifest.get("storage_dtype"),
            "policy": self.manifest.get("policy"),
            "include_buffers": self.manifest.get("include_buffers"),
            "optimizer": self.manifest.get("optimizer"),
            "head_hash": self.get_meta("head_hash"),
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
        payload = memoryview(buf.numpy())[:size]
        if rec.checksum is None or size != rec.nbytes or not verify_checksum(payload, rec.checksum):
            raise LedgerCorruptError(
                f"the update of step {rec.step} does not match its checksum ({path}: {size} bytes, "
                f"{rec.nbytes} recorded); the blob is corrupt or truncated", [rec.step]
            )
        return buf, size

    def read_blob(self, rec: StepRecord) -> bytes:
        """The raw bytes of a step's blob, checked against its checksum."""
        buf, size = self._read_verified(rec)
        return bytes(memoryview(buf.numpy())[:size])

    def load_update(self, step: int | StepRecord) -> dict[str, torch.Tensor]:
        """The update of one step, verified against its checksum (tensors share one buffer, no copies)."""
        rec = step if isinstance(step, StepRecord) else self.step(step)
        buf, size = self._read_verified(rec)
        try:
            return tensors_from_buffer(buf, size)
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            try:
                return st_load(bytes(memoryview(buf.numpy())[:size]))
            except Exception:
                raise LedgerCorruptError(f"the update of step {rec.step} cannot be decoded ({err})", [rec.step]) from None

    def delete_blobs(self, steps: Iterable[int]) -> int:
        """Delete the stored updates of ``steps`` (index rows stay, with no blob). Returns how many."""
        steps = [int(s) for s in steps]
        rows = self._select_in("SELECT blob FROM steps WHERE blob IS NOT NULL AND step IN ({})", steps)
        for (blob,) in rows:
            (self.path / "blobs" / blob).unlink(missing_ok=True)
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            for start in range(0, len(steps), 500):
                chunk = steps[start : start + 500]
                cur.execute(
                    f"UPDATE steps SET blob = NULL, checksum = NULL WHERE step IN ({','.join('?' * len(chunk))})", chunk
                )
            cur.execute("COMMIT")
        return len(rows)

    def verify(self, *, progress: bool | None = None) -> VerifyReport:
        """Check every stored blob against its checksum and that it decodes; report bad steps by number."""
        from ..utils import progress_bar

        report = VerifyReport()
        recs = list(self.iter_steps())
        report.steps = len(recs)
        expected = 1
        for rec in recs:  # steps must be numbered 1..N without gaps
            if rec.step != expected:
                for missing in range(expected, rec.step):
                    report.bad[missing] = "missing from the index (gap in step numbers)"
            expected = rec.step + 1
        for rec in progress_bar(recs, enabled=progress, desc="verify"):
            if not rec.recorded:
                continue
            report.recorded += 1
            if rec.blob is None:
                continue  # destroyed after a forget, on purpose
            try:
                self.load_update(rec)
                report.checked += 1
            except LedgerCorruptError as err:
                report.bad[rec.step] = str(err)
        known = {rec.blob for rec in recs if rec.blob}
        report.orphans = sorted(p.name for p in (self.path / "blobs").iterdir() if p.name not in known)
        return report

    def commit_revert(self, steps: Sequence[int], *, new_hash: str, event: dict[str, Any],
                      forgotten_ids: Sequence[int] = (), extra_meta: dict[str, Any] | None = None) -> int:
        """In one transaction: mark ``steps`` reverted, move the head to ``new_hash``, log ``event``.

        This transaction is the commit point of a forget: before it the old model is the truth, after it
        the new one. Returns the event's number.
        """
        steps = [int(s) for s in steps]
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(steps), 500):
                    chunk = steps[start : start + 500]
                    cur.execute(
                        f"UPDATE steps SET state = 'reverted' WHERE step IN ({','.join('?' * len(chunk))})", chunk
                    )
                meta = {"head_hash": new_hash, **(extra_meta or {})}
                cur.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [(k, str(v)) for k, v in meta.items()],
                )
                cur.execute(
                    "INSERT INTO events (time, kind, payload) VALUES (?, ?, ?)",
                    (time.time(), event.get("kind", "forget"), json.dumps(event, sort_keys=True, default=str)),
                )
                event_id = int(cur.lastrowid)
                cur.executemany(
                    "INSERT OR IGNORE INTO forgotten (sample_id, event) VALUES (?, ?)",
                    ((int(i), event_id) for i in forgotten_ids),
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return event_id


    def forgotten_ids(self) -> np.ndarray:
        """Every sample id a committed deletion removed (they are never trained on again)."""
        with self._lock:
            rows = self._conn.execute("SELECT sample_id FROM forgotten ORDER BY sample_id").fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def id_salt(self) -> str:
        """A random salt, made once per ledger, for the hashed ids in receipts."""
        salt = self.get_meta("id_salt")
        if salt is None:
            import secrets

            salt = secrets.token_hex(16)
            with self._lock:
                self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('id_salt', ?)", (salt,))
            salt = self.get_meta("id_salt")
        return str(salt)

    # ------------------------------------------------------------------ initial state
    def save_initial(self, state: dict[str, torch.Tensor]) -> None:
        """Keep the model state at the start of recording (theta_initial)."""
        atomic_write_bytes(self.path / "initial.safetensors", st_save({k: v.detach().cpu().contiguous() for k, v in state.items()}))

    def load_initial(self) -> dict[str, torch.Tensor]:
        """The model state at the start of recording."""
        path = self.path / "initial.safetensors"
        if not path.is_file():
            raise LedgerError(f"{path} is missing; this ledger kept no initial state")
        return st_load(path.read_bytes())

