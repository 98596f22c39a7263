"""Crash-safe replacement of a run's model together with its ledger: one journal for train and forget.

A model change (the end of a training epoch, a forget, a repair) must leave either the old state or the
new one, never a mix. The protocol, with a journal file ``RUN/.commit.json``:

0. :func:`begin_change` takes the run's commit lock (readers wait for it or report the change) and writes
   the journal (kind, old hash, the ledger's last step) before any work that touches the ledger, such as
   recording repair steps;
1. :func:`commit_model` adds the new hash and what to clean up afterwards to the journal;
2. it writes the new model to ``model.next.safetensors`` (fsynced);
3. commit the ledger transaction that moves its head to the new hash and records the new file's checksum
   (the commit point; durable);
4. rename ``model.next.safetensors`` over ``model.safetensors`` and sync the directory;
5. clean up (destroy reverted updates, stale optimizer state), delete the journal, release the lock.

:func:`recover` runs whenever a process takes the run's lock (so never while another process is in the
middle of a change). It finishes steps 4-5 when the ledger already points at the new model, and otherwise
discards ``model.next.safetensors`` and every ledger step recorded after the journal was written: the old
state stands. A run without a ledger commits at the rename instead. Named crash points
(:func:`amnesiac.faults.point`) let the fault-injection tests kill the process at each step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import RunDirError
from ..faults import point as fault_point
from ..ledger import LedgerStore
from ..ledger.format import file_checksum
from ..utils import atomic_write_json, fsync_dir, model_hash, model_state
from .checkpoint import save_tensors
from .layout import COMMIT_LOCK, JOURNAL, NEXT_MODEL, RunFiles  # noqa: F401  (the names are this protocol's)


def read_journal(run: RunFiles) -> dict[str, Any] | None:
    """The pending journal, or None. A damaged journal raises RunDirError naming it."""
    jpath = run.path / JOURNAL
    if not jpath.exists():
        return None
    try:
        journal = json.loads(jpath.read_bytes().decode("utf-8"))
        if not isinstance(journal, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as err:
        raise RunDirError(f"the commit journal {jpath} is damaged ({err}); the run's state cannot be decided "
                          "automatically. Nothing was changed.") from None
    return journal


def _cleanup(run: RunFiles, store: LedgerStore | None, journal: dict[str, Any]) -> None:
    if store is not None and journal.get("destroy_steps"):
        store.commits.destroy(journal["destroy_steps"])
        fault_point("commit:after-destroy")
    keep = journal.get("keep_optimizer_step")
    if journal.get("destroy_optimizer") or keep is not None:
        for p in run.path.glob("optimizer-*.safetensors"):
            if keep is None or p != run.optimizer_path(int(keep)):
                p.unlink(missing_ok=True)


def _is_committed(run: RunFiles, store: LedgerStore | None, journal: dict[str, Any], nxt: Path) -> bool:
    if journal.get("new_hash") is None:  # died before commit_model began
        return False
    if store is not None:
        return store.index.get_meta("head_hash") == journal["new_hash"]
    if nxt.is_file():  # without a ledger the rename is the commit point, and it has not happened
        return False
    try:
        return run.model_meta().get("hash") == journal["new_hash"]
    except RunDirError:
        return False


def recover(run: RunFiles, *, log_rollback: bool = True) -> str | None:
    """Resolve an interrupted change (call with the run's lock held); returns ``"rolled-forward"``,
    ``"rolled-back"`` or None when there was nothing to do. Each outcome goes to the audit log, except a
    roll-back that dropped nothing from the ledger when ``log_rollback`` is False (a refused request
    aborting its own change: nothing happened to record)."""
    jpath = run.path / JOURNAL
    nxt = run.path / NEXT_MODEL
    journal = read_journal(run)
    if journal is None:
        nxt.unlink(missing_ok=True)
        return None
    run.commit_lock.hold()
    try:
        store = run.open_ledger(writable=True) if run.has_ledger() else None
        try:
            dropped = 0
            if _is_committed(run, store, journal, nxt):
                if nxt.is_file():
                    os.replace(nxt, run.model_path)
                    fsync_dir(run.path)
                _cleanup(run, store, journal)
                outcome = "rolled-forward"
            else:
                nxt.unlink(missing_ok=True)
                if store is not None and journal.get("base_last_step") is not None:
                    dropped = store.commits.truncate_after(int(journal["base_last_step"]))
                new_opt = journal.get("keep_optimizer_step")
                if new_opt is not None:  # the new epoch's optimizer state belongs to the model that lost
                    run.optimizer_path(int(new_opt)).unlink(missing_ok=True)
                outcome = "rolled-back"
            if store is not None and (log_rollback or outcome == "rolled-forward" or dropped):
                store.index.add_event("recover", {"journal": journal.get("kind", "forget"), "outcome": outcome})
        finally:
            if store is not None:
                store.close()
        jpath.unlink(missing_ok=True)
        fsync_dir(run.path)
    finally:
        run.commit_lock.release()
    return outcome


def begin_change(run: RunFiles, *, old_hash: str, store: LedgerStore | None, kind: str = "forget",
                 truncate_on_rollback: bool = True) -> dict[str, Any]:
    """Take the commit lock and write the journal that lets :func:`recover` undo a change that dies before
    its commit point (``truncate_on_rollback``: drop the ledger steps recorded after this point)."""
    run.commit_lock.hold()
    journal = {"kind": kind, "old_hash": old_hash, "new_hash": None,
               "base_last_step": store.last_step() if store is not None and truncate_on_rollback else None}
    atomic_write_json(run.path / JOURNAL, journal)
    fsync_dir(run.path)
    fault_point(f"{kind}:after-begin")
    return journal


def abort_change(run: RunFiles) -> None:
    """Undo a change that failed before its commit point (the same as recovering after a crash; logged only
    when it had recorded ledger steps that are now dropped)."""
    recover(run, log_rollback=False)


def commit_model(
    run: RunFiles,
    model: nn.Module,
    *,
    old_hash: str,
    new_hash: str | None = None,
    store: LedgerStore | None,
    ledger_commit: Callable[[str, str], Any] | None,
    destroy_steps: Sequence[int] = (),
    destroy_optimizer: bool = True,
    keep_optimizer_step: int | None = None,
    meta: dict[str, Any] | None = None,
    kind: str = "forget",
) -> str:
    """Replace the run's model with ``model`` following the protocol above; returns the new hash.

    ``ledger_commit(new_hash, file_checksum)`` performs step 3 (one durable ledger transaction).
    """
    new_hash = new_hash or model_hash(model)
    jpath = run.path / JOURNAL
    run.commit_lock.hold()
    try:
        journal = read_journal(run) or {"kind": kind, "old_hash": old_hash, "base_last_step": None}
        journal.update({"new_hash": new_hash, "destroy_steps": [int(s) for s in destroy_steps],
                        "destroy_optimizer": bool(destroy_optimizer), "keep_optimizer_step": keep_optimizer_step})
        atomic_write_json(jpath, journal)
        fault_point(f"{kind}:after-journal")
        save_tensors(run.path / NEXT_MODEL, model_state(model), {**(meta or {}), "hash": new_hash})
        fault_point(f"{kind}:after-next")
        if ledger_commit is not None:
            ledger_commit(new_hash, file_checksum(run.path / NEXT_MODEL))
        fault_point(f"{kind}:after-ledger")
        os.replace(run.path / NEXT_MODEL, run.model_path)
        fsync_dir(run.path)
        fault_point(f"{kind}:after-rename")
        _cleanup(run, store, journal)
        fault_point(f"{kind}:after-cleanup")
        jpath.unlink(missing_ok=True)
        fsync_dir(run.path)
    finally:
        run.commit_lock.release()
    return new_hash
