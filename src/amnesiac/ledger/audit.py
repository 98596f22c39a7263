"""The ledger's own audit: everything in ``RUN/ledger`` that can be checked without the model.

:func:`verify_ledger` is the entry point; the run-level audit (``amnesiac ledger verify``) adds the model, the
pending journal and the reconstruction check. Every finding is collected, never raised, so one report
lists all damage at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LedgerCorruptError
from ..utils import progress_bar, state_hash
from ..utils.hashing import hash_ids
from .blob import checksum
from .format import (
    PENDING_DELETION,
    VerifyReport,
    file_checksum,
    ids_from_bytes,
    meta_sealed,
    shard_of_blob,
    step_of_blob,
)
from .storage import BlobStore
from .store import LedgerStore, read_manifest


def verify_ledger(store: LedgerStore, *, deep: bool = True, progress: bool | None = None) -> VerifyReport:
    """Audit a ledger directory: manifest, index integrity and self-consistency, initial state, blobs; each
    finding collected in one report, never raised.

    ``deep`` reads and checks every stored blob (and the initial weights' hash); without it blobs are only
    checked for presence and size. The run-level audit (:func:`amnesiac.run.audit_run`) adds the model, the
    pending journal and, with every step stored, the reconstruction check.

    >>> import tempfile, torch
    >>> store = LedgerStore.create(tempfile.mkdtemp() + "/ledger", manifest={})
    >>> store.put_step(1, epoch=0, ids=[3], update={"w": torch.ones(2)})
    >>> verify_ledger(store).ok
    True
    """
    report = VerifyReport()
    _check_manifest(store, report)
    _check_sqlite(store, report)
    read = _check_rows(store, report)
    if read is None:  # the index cannot be read at all: nothing below can be checked
        return report
    recs, damaged_blobs, pairs, row_pairs = read
    _check_id_table(report, pairs, row_pairs)
    _check_initial(store, report, deep)
    _check_blobs(store, report, recs, deep, progress)
    _check_orphans(store, report, recs, damaged_blobs)
    _check_meta(store, report)
    _check_pending(store, report)
    return report


def _check_pending(store: LedgerStore, report: VerifyReport) -> None:
    """A library deletion that committed and then died: its model file may not be in place, its reverted
    updates not yet destroyed."""
    raw = store.index.get_meta(PENDING_DELETION)
    if raw:
        try:
            where = json.loads(raw).get("target")
        except (ValueError, AttributeError):
            where = None
        report.problems.append(
            "a deletion died after its commit point and is not complete"
            + (f" (its new model may still wait beside {where} as {Path(str(where)).name}.next)" if where else "")
            + "; the next forget_records on this ledger completes it, or run `amnesiac ledger recover "
            f"{store.path}`")


def _check_manifest(store: LedgerStore, report: VerifyReport) -> None:
    # manifest: the bytes on disk against the checksum the index recorded when the ledger was created
    try:
        _, raw = read_manifest(store.path)
        want = store.index.get_meta("manifest_sum")
        if want is None:
            report.problems.append("the manifest has no recorded checksum (a ledger from an older amnesiac): not checked")
        elif checksum(raw, "xxh3") != want:
            report.problems.append(f"{store.path / 'manifest.json'} does not match the checksum recorded at creation; it was changed or damaged")
    except LedgerCorruptError as err:
        report.problems.append(str(err))


def _check_sqlite(store: LedgerStore, report: VerifyReport) -> None:
    idx = store.path / "index.sqlite"
    # SQLite's own structural check
    try:
        found = store.index.quick_check()
    except Exception as err:  # sqlite3.DatabaseError on a damaged page
        found = [f"quick_check failed: {err}"]
    if found != ["ok"]:
        report.problems.append(f"{idx} fails SQLite's integrity check: " + "; ".join(map(str, found[:5])))


def _check_rows(store: LedgerStore, report: VerifyReport) -> tuple[list[Any], set[str], np.ndarray, list[np.ndarray]] | None:
    """Every row's checksum, shape and numbering; the rows that pass, blobs named by damaged rows, and the
    id -> steps pairs of the table and of the rows."""
    idx = store.path / "index.sqlite"
    # every row: checksum, shape, numbering; the id -> steps table against the rows' own ids
    try:
        rows, pairs = store.index.rows_and_pairs()
    except Exception as err:
        report.problems.append(f"{idx} cannot be read: {err}")
        return None
    report.steps = len(rows)
    expected = 1
    row_pairs: list[np.ndarray] = []
    recs = []
    damaged_blobs: set[str] = set()  # named by rows that are damaged: reported with the row, not as orphans
    for r in rows:
        step = r[0]
        if not isinstance(step, int):
            report.problems.append(f"{idx}: a step number is not an integer ({step!r})")
            continue
        if step != expected and store.kind != "shards":  # shard rows are numbered by shard, gaps allowed
            for missing in range(expected, step):
                report.bad[missing] = "missing from the index (gap in step numbers)"
        expected = step + 1
        problem = store.index.row_problem(r)
        if problem is None and r[10] is None:
            report.unchecked_rows += 1
        if problem:
            report.bad[step] = f"index row damaged: {problem}"
            if isinstance(r[5], str):
                damaged_blobs.add(r[5])
            continue
        rec = store.index.record(r, check=False)
        if rec.blob is not None and (not _blob_named_for(store, rec.blob, step) or rec.checksum is None):
            report.bad[step] = f"index row names blob {rec.blob!r} with checksum {rec.checksum!r}"
            continue
        ids = np.unique(ids_from_bytes(r[3]))
        row_pairs.append(np.stack([ids, np.full(ids.size, step, dtype=np.int64)], axis=1))
        recs.append(rec)
    committed = store.index.committed_step() if store.kind != "shards" else None
    for missing in range(expected, (committed or 0) + 1):  # rows lost at the end: the sealed head covers them
        report.bad[missing] = f"missing from the index, although the sealed head says step {missing} was committed"
    return recs, damaged_blobs, pairs, row_pairs


def _blob_named_for(store: LedgerStore, blob: str, step: int) -> bool:
    """Whether a row's blob name is the one the ledger writes for that row (a step, or a shard's version)."""
    if store.kind != "shards":
        return blob == BlobStore.step_name(step)
    parsed = shard_of_blob(blob)
    return parsed is not None and parsed[0] == step and parsed[1] <= store.index.shard_generation()


def _check_id_table(report: VerifyReport, pairs: np.ndarray, row_pairs: list[np.ndarray]) -> None:
    """The id -> steps table against the rows' own ids."""
    table = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))] if pairs.size else np.empty((0, 2), np.int64)
    ours = np.concatenate(row_pairs) if row_pairs else np.empty((0, 2), np.int64)
    ours = ours[np.lexsort((ours[:, 0], ours[:, 1]))] if ours.size else ours
    if table.shape != ours.shape or not np.array_equal(table, ours):
        a = {tuple(x) for x in table.tolist()}
        b = {tuple(x) for x in ours.tolist()}
        odd = sorted({s for _, s in a ^ b})
        for s in odd[:50]:
            report.bad.setdefault(int(s), "the id -> steps table disagrees with the ids stored in this step's row")
        if not odd:
            report.problems.append("the id -> steps table holds duplicate entries")


def _check_initial(store: LedgerStore, report: VerifyReport, deep: bool) -> None:
    # initial weights
    ipath = store.blobs.initial_path
    want = store.index.get_meta("initial_file_sum")
    if not ipath.is_file():
        if want is not None or store.index.get_meta("initial_hash") is not None:
            report.problems.append(f"{ipath} (the initial weights) is missing")
    else:
        if want is not None and file_checksum(ipath) != want:
            report.problems.append(f"{ipath} does not match the checksum recorded when it was saved")
        elif deep and want is not None:
            try:
                if state_hash(store.load_initial()) != store.index.get_meta("initial_hash"):
                    report.problems.append(f"{ipath} does not match the initial hash recorded in the index")
            except LedgerCorruptError as err:
                report.problems.append(str(err))


def _check_blobs(store: LedgerStore, report: VerifyReport, recs: list[Any], deep: bool, progress: bool | None) -> None:
    # blobs: presence and size always; content with deep
    blobs_dir = store.path / "blobs"
    for rec in progress_bar(recs, enabled=progress, desc="verify"):
        if not rec.recorded:
            continue
        report.recorded += 1
        if rec.blob is None:
            continue  # destroyed after a forget, on purpose (the row records it)
        path = blobs_dir / rec.blob
        try:
            size = path.stat().st_size
        except OSError:
            report.bad[rec.step] = f"the update of step {rec.step} is missing ({path})"
            continue
        if size != rec.nbytes:
            report.bad[rec.step] = f"the update of step {rec.step} has {size} bytes, {rec.nbytes} recorded"
            continue
        if deep:
            try:
                store.load_update(rec)
                report.checked += 1
            except LedgerCorruptError as err:
                report.bad[rec.step] = str(err)


def _check_orphans(store: LedgerStore, report: VerifyReport, recs: list[Any], damaged_blobs: set[str]) -> None:
    blobs_dir = store.path / "blobs"
    committed = store.index.committed_step()
    known = {rec.blob for rec in recs if rec.blob} | damaged_blobs
    for p in sorted(blobs_dir.iterdir()) if blobs_dir.is_dir() else []:
        if p.name in known:
            continue
        step = shard_of_blob(p.name) if store.kind == "shards" else step_of_blob(p.name)
        report.orphans.append(p.name)
        if step is None and not (p.name.startswith(".") and p.name.endswith(".tmp")):
            report.problems.append(f"{p} is not a file the ledger writes; it was left alone")
        elif store.kind != "shards" and isinstance(step, int) and step <= (committed or 0):
            report.problems.append(f"{p} holds the update of step {step}, which the sealed head says was committed, "
                                   "but the index has no row for it: the index is damaged (the blob is kept)")


def _check_meta(store: LedgerStore, report: VerifyReport) -> None:
    idx = store.path / "index.sqlite"
    # the metadata (head, hashes, salt) as a whole, the audit log, and forgotten ids against their receipts
    meta, forgotten = store.index.meta_and_forgotten()
    if not meta_sealed(meta):
        report.problems.append(f"{idx}: the ledger's metadata (head, hashes, salt) does not match its checksum")
    try:
        events = {e["id"]: e for e in store.events()}
        salt = dict(meta).get("id_salt")
        if salt is not None:
            for sample_id, event in forgotten:
                e = events.get(event)
                hashed = e.get("ids_hashed") if e else None
                if hashed is not None and hash_ids([sample_id], salt)[1][0] not in hashed:
                    report.problems.append(f"{idx}: forgotten record {sample_id} is not in the receipt of event {event}")
                    break
    except LedgerCorruptError as err:
        report.problems.append(str(err))
