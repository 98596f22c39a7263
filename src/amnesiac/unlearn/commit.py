"""Crash-safe replacement of a run's model together with its ledger.

A model change (a forget, a repair) must leave either the old state or the new one, never a mix. The
protocol, with a journal file ``RUN/.commit.json``:

0. :func:`begin_change` writes the journal (old hash, the ledger's last step) before any work that
   touches the ledger, such as recording repair steps;
1. :func:`commit_model` adds the new hash and what to clean up afterwards to the journal;
2. it writes the new model to ``model.next.safetensors``;
3. commit the ledger transaction that moves its head to the new hash (the commit point);
4. rename ``model.next.safetensors`` over ``model.safetensors``;
5. clean up (destroy reverted updates, the stale optimizer state), then delete the journal.

:func:`recover`, run whenever a process takes the run's lock (so never while another process is in
the middle of a change), finishes steps 4-5 when the ledger already
points at the new model, and otherwise discards ``model.next.safetensors`` and every ledger step
recorded after the journal was written: the old state stands.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Callable, Sequence

from torch import nn

from ..checkpoint import save_tensors
from ..utils import atomic_write_json, model_hash, model_state

if TYPE_CHECKING:
    from ..ledger import LedgerStore
    from ..run import RunDir

JOURNAL = ".commit.json"
NEXT_MODEL = "model.next.safetensors"


def _cleanup(run: "RunDir", store: "LedgerStore | None", journal: dict[str, Any]) -> None:
    if store is not None and journal.get("destroy_steps"):
        store.delete_blobs(journal["destroy_steps"])
    if journal.get("destroy_optimizer"):
        for p in run.path.glob("optimizer-*.safetensors"):
            p.unlink(missing_ok=True)


def recover(run: "RunDir") -> str | None:
    """Resolve an interrupted commit; returns ``"rolled-forward"``, ``"rolled-back"`` or None."""
    jpath = run.path / JOURNAL
    nxt = run.path / NEXT_MODEL
    if not jpath.is_file():
        nxt.unlink(missing_ok=True)
        return None
    journal = json.loads(jpath.read_text())
    store = run.open_ledger() if run.has_ledger() else None
    try:
        head = store.get_meta("head_hash") if store is not None else None
        if journal.get("new_hash") is None:  # died before commit_model began
            committed = False
        elif store is not None:
            committed = head == journal["new_hash"]
        else:  # without a ledger the rename itself is the commit point
            committed = not nxt.is_file()
        if committed:
            if nxt.is_file():
                os.replace(nxt, run.model_path)
            _cleanup(run, store, journal)
            outcome = "rolled-forward"
        else:
            nxt.unlink(missing_ok=True)
            if store is not None and journal.get("base_last_step") is not None:
                store.truncate_after(int(journal["base_last_step"]))
            outcome = "rolled-back"
    finally:
        if store is not None:
            store.close()
    jpath.unlink(missing_ok=True)
    return outcome


def begin_change(run: "RunDir", *, old_hash: str, store: "LedgerStore | None") -> dict[str, Any]:
    """Write the journal that lets :func:`recover` undo a change that dies before its commit point."""
    journal = {"old_hash": old_hash, "new_hash": None,
               "base_last_step": store.last_step() if store is not None else None}
    atomic_write_json(run.path / JOURNAL, journal)
    return journal


def abort_change(run: "RunDir") -> None:
    """Undo a change that failed before its commit point (the same as recovering after a crash)."""
    recover(run)


def commit_model(
    run: "RunDir",
    model: nn.Module,
    *,
    old_hash: str,
    new_hash: str | None = None,
    store: "LedgerStore | None",
    ledger_commit: Callable[[str], Any] | None,
    destroy_steps: Sequence[int] = (),
    destroy_optimizer: bool = True,
    meta: dict[str, Any] | None = None,
    crash_at: str | None = None,
) -> str:
    """Replace the run's model with ``model`` following the protocol above; returns the new hash.

    ``ledger_commit(new_hash)`` performs step 3 (one ledger transaction). ``crash_at`` names a point at
    which to stop abruptly (``"after-next"``, ``"after-ledger"``, ``"after-rename"``), for tests.
    """
    new_hash = new_hash or model_hash(model)
    jpath = run.path / JOURNAL
    journal = json.loads(jpath.read_text()) if jpath.is_file() else {"old_hash": old_hash, "base_last_step": None}
    journal.update({"new_hash": new_hash, "destroy_steps": [int(s) for s in destroy_steps],
                    "destroy_optimizer": bool(destroy_optimizer)})
    atomic_write_json(jpath, journal)
    save_tensors(run.path / NEXT_MODEL, model_state(model), {**(meta or {}), "hash": new_hash})
    if crash_at == "after-next":
        raise _SimulatedCrash(crash_at)
    if ledger_commit is not None:
        ledger_commit(new_hash)
    if crash_at == "after-ledger":
        raise _SimulatedCrash(crash_at)
    os.replace(run.path / NEXT_MODEL, run.model_path)
    if crash_at == "after-rename":
        raise _SimulatedCrash(crash_at)
    _cleanup(run, store, journal)
    (run.path / JOURNAL).unlink(missing_ok=True)
    return new_hash


class _SimulatedCrash(BaseException):
    """Raised by :func:`commit_model` at a chosen point to test recovery (never in normal use)."""
