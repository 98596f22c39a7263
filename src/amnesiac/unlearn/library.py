"""Forgetting from your own training loop: the model, the ledger and the ids are all it needs.

The run-directory workflow (:func:`amnesiac.unlearn.forget`, ``amnesiac forget``) adds datasets, evaluation
and the journal around the same core (:func:`amnesiac.unlearn.amnesiac.undo_steps`); this path is for a
model you train, save and serve yourself:

>>> import tempfile, torch
>>> from amnesiac import LedgerStore, Recorder, forget_records
>>> model = torch.nn.Linear(4, 2)
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> ledger = LedgerStore.create(tempfile.mkdtemp() + "/ledger", manifest={"storage_dtype": "float32"},
...                             initial=model.state_dict())
>>> x, y = torch.randn(24, 4), torch.randint(0, 2, (24,))
>>> with Recorder(model, opt, ledger) as rec:
...     for step in range(12):
...         ids = [2 * step, 2 * step + 1]
...         with rec.batch(ids):
...             torch.nn.functional.cross_entropy(model(x[ids]), y[ids]).backward()
...             opt.step()
...             opt.zero_grad()
>>> _ = ledger.mark_head(model)                      # the model this ledger describes
>>> done = forget_records(model, ledger, ids=[3])    # subtracts the update of the step that saw record 3
>>> done.receipt["steps_reverted"], done.plan.recommendation
([2], 'amnesiac+repair')
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import LedgerError, ModelMismatchError
from ..ledger import LedgerStore
from ..ledger.format import file_checksum
from ..run.checkpoint import save_tensors
from ..utils import fsync_dir, model_hash, model_state
from .amnesiac import undo_steps
from .base import MethodOutcome
from .planner import AMNESIAC_SERVES, Plan, Thresholds, make_plan, refuse_unless_forced
from .receipts import build_receipt
from .request import DeletionRequest, resolve_request


@dataclass
class Deletion:
    """What :func:`forget_records` did: the model (changed in place), the plan and the receipt."""

    model: nn.Module
    plan: Plan
    receipt: dict[str, Any]


def forget_records(
    model: nn.Module,
    ledger: LedgerStore | str | os.PathLike[str],
    ids: Sequence[int] | np.ndarray,
    *,
    save_to: str | os.PathLike[str] | None = None,
    thresholds: Thresholds | None = None,
    keep_artifacts: bool = False,
    progress: bool | None = None,
    force: bool = False,
) -> Deletion:
    """Amnesiac unlearning of ``ids`` from ``model`` with its ledger; the model is changed in place.

    In order: ``model`` must be the ledger's head (:meth:`LedgerStore.mark_head`); the plan finds every step
    that saw a requested record (the index cross-checked, so a damaged one refuses); every stored update is
    verified, summed in float32 and subtracted; the ledger commits (steps reverted, new head, receipt in the
    audit log, ids marked forgotten) in one durable transaction; then the reverted updates, which still
    encode the deleted records, are destroyed (``keep_artifacts`` keeps them, and the receipt says so).

    ``save_to``: a path to save the new model to, crash-safely: the file is written aside first and renamed
    into place once the ledger has committed, so the ledger never names a model that is not on disk. Without
    it, save the returned model yourself and call ``ledger.mark_head(model, model_file=...)`` if you want its
    file checked. Repair, if you want one, is your own loop with a ``Recorder(kind="repair")`` attached,
    then ``mark_head`` again. One process writes a ledger at a time. Where the planner recommends another
    method (the request touches more than ``thresholds.repair_max_share`` of the steps), it raises
    :class:`~amnesiac.errors.PlanRefusedError` and changes nothing, unless ``force``.
    """
    t_start = time.perf_counter()
    opened = not isinstance(ledger, LedgerStore)
    store = LedgerStore.open(ledger, writable=True) if opened else ledger
    try:
        current = _check_head(store, model)
        request: DeletionRequest = resolve_request(store.all_ids(), np.zeros(0), num_classes=0,
                                                   ids=np.asarray(ids, dtype=np.int64) if isinstance(ids, np.ndarray) else ids)
        plan = make_plan(store, request.ids.tolist(), thresholds=thresholds)
        refuse_unless_forced(plan, force=force)  # a share that would wreck the model needs force=True
        done = undo_steps(model, store, plan, progress=progress)
        outcome = MethodOutcome(model=model, steps_reverted=list(plan.to_revert),
                                details={"update_norm": done.pop("update_norm"),
                                         "clamped_running_var": done.pop("clamped_running_var")}, timings=done)
        new_hash = model_hash(model)
        destroy = [] if keep_artifacts else sorted(set(plan.to_revert))
        receipt = _library_receipt(store, request, plan, outcome, current, new_hash, destroyed={
            "update_blobs": len(destroy), "optimizer_state": False, "previous_model": save_to is not None},
            timings={**done, "total": time.perf_counter() - t_start}, kept=bool(keep_artifacts))
        extra: dict[str, Any] = {"head_step": store.get_meta("head_step")}
        nxt = _save_aside(model, save_to, new_hash, extra) if save_to is not None else None
        store.commit_revert(plan.to_revert, new_hash=new_hash, event=receipt, forgotten_ids=request.ids.tolist(),
                            extra_meta=extra)
        if nxt is not None:
            os.replace(nxt, save_to)
            fsync_dir(Path(save_to).parent)
        if destroy:
            store.delete_blobs(destroy)
        return Deletion(model, plan, receipt)
    finally:
        if opened:
            store.close()


def _library_receipt(store: LedgerStore, request: DeletionRequest, plan: Plan, outcome: MethodOutcome, old: str,
                     new: str, *, destroyed: dict[str, Any], timings: dict[str, float], kept: bool) -> dict[str, Any]:
    """The receipt of a deletion served from your own loop (the same fields as the run-directory workflow's)."""
    return build_receipt(
        method="amnesiac", options={}, request=request, salt=store.id_salt(),
        new_ids=int(np.setdiff1d(request.ids, store.forgotten_ids()).size), plan=plan, outcome=outcome,
        old_hash=old, new_hash=new, evaluation={}, destroyed=destroyed, timings=timings, kept_for_research=kept,
        workflow="library", ledger_kind=store.kind,
        **({"forced": True} if plan.recommendation not in AMNESIAC_SERVES else {}))


def _check_head(store: LedgerStore, model: nn.Module) -> str:
    """The model's hash, which must be the ledger's head."""
    head = store.get_meta("head_hash")
    if head is None:
        raise LedgerError(f"the ledger at {store.path} names no model yet; after training call "
                          "ledger.mark_head(model) so deletions apply to that model only")
    current = model_hash(model)
    if current != head:
        raise ModelMismatchError(f"the model given (hash {current[:16]}) is not the model the ledger describes "
                                 f"(head {head[:16]}); its stored updates no longer apply to it")
    return current


def _save_aside(model: nn.Module, save_to: str | os.PathLike[str], new_hash: str, extra: dict[str, Any]) -> Path:
    """Write the new model next to ``save_to`` (renamed into place once the ledger commits); its checksum
    goes into the ledger's commit."""
    target = Path(save_to)
    nxt = target.with_name(target.name + ".next")
    save_tensors(nxt, model_state(model), {"hash": new_hash})
    extra["head_file_sum"] = file_checksum(nxt)
    return nxt
