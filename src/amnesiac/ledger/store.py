"""The ledger store: a directory holding a manifest, an SQLite index and one safetensors blob per step.

Layout of ``RUN/ledger``::

    manifest.json          format version, model fingerprint, optimizer, storage dtype, policy
    index.sqlite           steps, id -> step lookup, metadata (head), audit events
    initial.safetensors    the model's state when recording began (theta_initial)
    blobs/000000000042.safetensors   the update of step 42

:class:`LedgerStore` is the front door for library users: open or create, record, ask which steps saw a
record, read updates, mark the head. Behind it are its parts, each in its own module:

- ``store.index`` (:class:`~amnesiac.ledger.index.LedgerIndex`): rows, the id -> steps table, checksummed
  metadata, forgotten ids and the audit log, with the raw reads the audit uses;
- ``store.blobs`` (:class:`~amnesiac.ledger.storage.BlobStore`): writing, verified reading and syncing blobs;
- ``store.shards`` (:class:`~amnesiac.ledger.shardsums.ShardSums`): a shard ledger's running sums;
- ``store.commits`` (:class:`~amnesiac.ledger.commits.Commits`): the operations that change what a deletion
  relies on (head moves, reverts, destruction, truncation, crash cleanup), driven by the commit protocols.

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

Opening a ledger never changes it. Only the holder of the run's lock opens it ``writable=True``, and only
then are the leftovers a crash explains removed (:meth:`Commits.remove_leftovers
<amnesiac.ledger.commits.Commits.remove_leftovers>`). A missing or unreadable index is an error naming the
file; nothing is created in its place.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, LedgerCorruptError, LedgerError, PendingChangeError
from ..faults import point as fault_point
from ..utils import atomic_write_bytes, fsync_dir, shared_lock_unless_busy
from .blob import CHECKSUMS, BlobBuffer, blob_from_tensors, checksum
from .commits import Commits
from .format import (  # noqa: F401  (StepRecord and VerifyReport are re-exported)
    LEDGER_LOCK,
    PENDING_DELETION,
    StepRecord,
    VerifyReport,
    file_checksum,
)
from .index import LedgerIndex
from .scope import head_hash
from .shardsums import ShardSums
from .storage import BlobStore

FORMAT_VERSION = 1
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _check_dirs(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise LedgerError(f"{path} should be the ledger directory but is a file")
    blobs = path / "blobs"
    if blobs.exists() and not blobs.is_dir():
        raise LedgerCorruptError(f"{blobs} should be the directory of stored updates but is a file")


def read_manifest(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    """The manifest of the ledger at ``path`` and its raw bytes; a missing or malformed one raises."""
    path = Path(path)
    _check_dirs(path)
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

    Attributes: ``path``, ``manifest``, ``writable``, ``kind`` (``"steps"``: one update per optimizer step,
    the paper's ledger; ``"shards"``: one summed update per shard of records, rows numbered by shard, see
    :mod:`amnesiac.data.shards`) and the parts ``index``, ``blobs``, ``shards`` and ``commits`` (see the
    module's docstring).
    """

    def __init__(self, path: Path, manifest: dict[str, Any], *, writable: bool = True, create: bool = False) -> None:
        self.path = path
        self.manifest = manifest
        self.writable = writable
        self.kind = str(manifest.get("ledger_kind", "steps"))
        self.index = LedgerIndex(path, create=create, writable=writable, shard_rows=self.kind == "shards",
                                 row_sums_required=manifest.get("row_sums") is True)
        self.blobs = BlobStore(path, checksum_kind=str(manifest.get("checksum", "sha256")))
        self.shards = ShardSums(self.index, self.blobs,
                                storage_dtype=STORAGE_DTYPES[manifest.get("storage_dtype", "float32")])
        self.commits = Commits(self.index, self.blobs, self.shards, sync=self.sync)

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, manifest: dict[str, Any],
               initial: dict[str, torch.Tensor] | None = None) -> LedgerStore:
        """Start a new ledger at ``path``; refuses a directory that already holds one.

        ``initial`` (the model state when recording begins) is written, with its hash recorded in the
        index, before the manifest: a ledger whose manifest exists always has its initial state.
        """
        path = Path(path)
        _check_dirs(path)
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
        store = cls(tmp, full, create=True)
        if initial is not None:
            store.commits.save_initial(initial)
        # the salt of the hashed ids in receipts, made with the ledger, so copies of a run hash ids alike
        store.index.set_meta(manifest_sum=checksum(raw, "xxh3"), id_salt=secrets.token_hex(16), durable=True)
        fault_point("train:creating-ledger")
        atomic_write_bytes(tmp / "manifest.json", raw)
        store.close()
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
        fsync_dir(path.parent)
        return cls(path, full)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, writable: bool = False, check_manifest: bool = True) -> LedgerStore:
        """Open an existing ledger. Nothing on disk changes unless ``writable`` (for the holder of the
        run's lock), which also removes the leftovers a crash explains (see the module's docstring).

        The manifest's bytes are checked against the checksum recorded at creation (``check_manifest``;
        the audit turns it off to report the damage with everything else it finds)."""
        path = Path(path)
        manifest, raw = read_manifest(path)
        if not (path / "blobs").is_dir():
            raise LedgerCorruptError(f"{path / 'blobs'} (the directory of stored updates) is missing")
        store = cls(path, manifest, writable=writable)
        want = store.index.get_meta("manifest_sum")
        if check_manifest and want is not None and checksum(raw, "xxh3") != want:
            store.close()
            raise LedgerCorruptError(f"{path / 'manifest.json'} does not match the checksum recorded when the ledger "
                                     "was created; it was changed or damaged. Nothing was changed")
        if writable:
            store.index.add_checksum_columns()  # a ledger from before row checksums gets their columns
            store.commits.remove_leftovers()
        return store

    def close(self) -> None:
        """Close the index connection."""
        self.index.close()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ recording
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
            blob = BlobStore.step_name(step)
            digest = self.blobs.write(blob, buf, fsync=fsync)
            nbytes = buf.size
        self.index.insert_rows([(int(step), int(epoch), kind, ids_np, blob, digest, nbytes)])

    def sync(self) -> None:
        """Make everything written so far survive a power loss: fsync new blobs and their directory, then
        checkpoint the index's WAL with a full sync."""
        self.blobs.sync()
        self.index.checkpoint()

    def mark_head(self, model: torch.nn.Module, *, model_file: str | os.PathLike[str] | None = None) -> str:
        """Record ``model`` as the model this ledger describes (its head), after training in your own loop.

        A deletion applies only to the head model: :func:`amnesiac.forget_records` refuses any other, so a
        model changed outside amnesiac is never subtracted from. ``model_file``: the file you saved it to, whose
        checksum ``verify`` then checks too. Returns the model's hash.
        """
        h = head_hash(self.manifest, model)
        meta: dict[str, Any] = {"head_hash": h, "head_step": self.last_step(), "training_complete": 1}
        if model_file is not None:
            meta["head_file_sum"] = file_checksum(Path(model_file))
        self.commits.head(**meta)
        return h

    # ------------------------------------------------------------------ reading
    def steps_for_ids(self, ids: Iterable[int], *, cross_check: bool = False) -> list[int]:
        """Every step whose batch held any of ``ids``, sorted (uses the id -> steps table).

        With ``cross_check`` the answer is confirmed against the ids stored in every step's own row (each
        row's checksum checked too); any disagreement raises :class:`LedgerCorruptError` naming the steps.
        The planner always cross-checks: a damaged id table must refuse a deletion, never revert the wrong
        steps. The scan reads 8 bytes per sample per step (about 5 MB for 10 epochs of MNIST at batch 64).
        """
        return self.index.steps_for_ids(ids, cross_check=cross_check)

    def step(self, step: int) -> StepRecord:
        """The index row of one step (checked); an unknown step raises LedgerError."""
        return self.index.step(step)

    def iter_steps(self, *, state: str | None = None) -> Iterator[StepRecord]:
        """Every step in order (optionally only those in ``state``); each row's checksum is checked."""
        return self.index.iter_steps(state=state)

    def last_step(self) -> int:
        """The highest step number indexed (0 when empty)."""
        return self.index.last_step()

    def load_update(self, step: int | StepRecord) -> dict[str, torch.Tensor]:
        """The update of one step, verified against its checksum (tensors share one buffer, no copies)."""
        return self.blobs.load(step if isinstance(step, StepRecord) else self.index.step(step))

    def load_initial(self) -> dict[str, torch.Tensor]:
        """The model state at the start of recording, checked against the checksum recorded when it was saved."""
        return self.blobs.read_initial(self.index.get_meta("initial_file_sum"))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Audit-log entries, oldest first, optionally of one kind; a damaged entry raises."""
        return self.index.events(kind)

    def forgotten_ids(self) -> np.ndarray:
        """Every sample id a committed deletion removed (they are never trained on again)."""
        return self.index.forgotten_ids()

    def summary(self) -> dict[str, Any]:
        """Counts and sizes for ``amnesiac ledger info``."""
        get = self.index.get_meta
        return {
            "path": str(self.path),
            "kind": self.kind,
            **self.index.counts(),
            "storage_dtype": self.manifest.get("storage_dtype"),
            "policy": self.manifest.get("policy"),
            "include_buffers": self.manifest.get("include_buffers"),
            "optimizer": self.manifest.get("optimizer"),
            "head_hash": get("head_hash"),
            "head_step": get("head_step"),
            "training_complete": get("training_complete") == "1",
        }


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
            if store.index.get_meta(PENDING_DELETION) and not interrupted_ok:
                raise PendingChangeError(
                    f"a deletion on the ledger {path} died after its commit point; the next forget_records completes "
                    f"it, or run `amnesiac ledger recover {path}` to do it now")
            yield store
