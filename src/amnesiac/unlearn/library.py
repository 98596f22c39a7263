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

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..config import Thresholds
from ..errors import AmnesiacError, ConfigError, LedgerCorruptError
from ..faults import point as fault_point
from ..ledger import LedgerStore, check_base, head_hash
from ..ledger.format import LEDGER_LOCK, PENDING_DELETION, file_checksum
from ..ledger.store import read_manifest
from ..run.checkpoint import save_tensors
from ..utils import as_id_array, exclusive_lock, fsync_dir, model_state
from .amnesiac import subtract_plan
from .base import MethodOutcome
from .planner import AMNESIAC_SERVES, Plan, check_head, make_plan, refuse_unless_forced
from .receipts import Receipt, build_receipt
from .request import DeletionRequest, resolve_request


@dataclass(frozen=True)
class Deletion:
    """What :func:`forget_records` did: the model (changed in place), the plan and the receipt."""

    model: nn.Module
    plan: Plan
    receipt: Receipt


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
    audit log, ids marked forgotten) in one durable transaction; then the new model file is renamed into
    place and the reverted updates, which still encode the deleted records, are destroyed
    (``keep_artifacts`` keeps them, and the receipt says so). ``ids``: a list, NumPy integer array or
    integer tensor, as :meth:`Recorder.batch` takes them.

    ``save_to``: a path to save the new model to, crash-safely: the file is written aside first
    (``save_to.next``), the ledger commits, then the file is renamed into place. A process that dies after
    the commit leaves the rest to the next ``forget_records`` on this ledger (or ``amnesiac ledger recover
    LEDGER``), which renames the file and destroys the updates first; so ``save_to`` and the ledger always
    end up agreeing. Without it, save the returned model yourself and call ``ledger.mark_head(model,
    model_file=...)`` if you want its file checked. Repair, if you want one, is your own loop with a
    ``Recorder(kind="repair")`` attached, then ``mark_head`` again. One process writes a ledger at a time.

    Where the planner recommends another method (the request touches more than
    ``thresholds.repair_max_share`` of the steps), it raises :class:`~amnesiac.errors.PlanRefusedError`
    and changes nothing, unless ``force=True``. :func:`plan_deletion` gives the same plan without changing
    anything.
    """
    t_start = time.perf_counter()
    _check_model(model)
    wanted = as_id_array(ids, "ids")
    _check_thresholds(thresholds)
    target = _check_save_to(save_to)
    with writing_ledger(ledger) as store:
        recovered = finish_interrupted_deletion(store)
        current = _check_head(store, model, recovered)
        request = resolve_request(store.index.all_ids(), np.zeros(0), num_classes=0, ids=wanted)
        plan = make_plan(store, request.ids.tolist(), thresholds=thresholds)
        refuse_unless_forced(plan, force=force, api="forget_records")
        receipt = _subtract_and_commit(model, store, request, plan, current, target=target,
                                       keep_artifacts=keep_artifacts, progress=progress, t_start=t_start)
        return Deletion(model, plan, receipt)


@contextlib.contextmanager
def writing_ledger(ledger: LedgerStore | str | os.PathLike[str]) -> Iterator[LedgerStore]:
    """The ledger held by this process as its one writer for the block: its lock taken (saying so if another
    process holds it), then opened writable. The lock comes first because opening writable removes a crash's
    leftovers, which only the one writer may do; a path with no ledger gets the ledger's own error before
    any lock file is made."""
    folder = ledger.path if isinstance(ledger, LedgerStore) else Path(ledger)
    if not isinstance(ledger, LedgerStore):
        read_manifest(folder)
    with exclusive_lock(folder / LEDGER_LOCK, f"the ledger {folder} (another process is changing it)"), \
            _opened(ledger, writable=True) as store:
        yield store


@contextlib.contextmanager
def _opened(ledger: LedgerStore | str | os.PathLike[str], *, writable: bool = False) -> Iterator[LedgerStore]:
    """The store itself, or the ledger at a path opened for the block (and closed after it)."""
    if isinstance(ledger, LedgerStore):
        yield ledger
        return
    store = LedgerStore.open(ledger, writable=writable)
    try:
        yield store
    finally:
        store.close()


def _subtract_and_commit(model: nn.Module, store: LedgerStore, request: DeletionRequest, plan: Plan, current: str, *,
                         target: Path | None, keep_artifacts: bool, progress: bool | None,
                         t_start: float) -> Receipt:
    """Subtract the planned updates, write the new model aside, commit (the head, the receipt and what is left
    to do in one transaction), then rename and destroy. Returns the receipt."""
    outcome = subtract_plan(model, store, plan, progress=progress)
    done = outcome.timings
    new_hash = head_hash(store.manifest, model)
    destroy = [] if keep_artifacts else sorted(set(plan.to_revert))
    receipt = _library_receipt(store, request, plan, outcome, current, new_hash, destroyed={
        "update_blobs": len(destroy), "optimizer_state": False, "previous_model": target is not None},
        timings={**done, "total": time.perf_counter() - t_start}, kept=bool(keep_artifacts))
    extra: dict[str, Any] = {"head_step": store.index.get_meta("head_step")}
    pending: dict[str, Any] = {"destroy": destroy}
    if target is not None:
        pending.update(next=str(_save_aside(model, target, new_hash, extra)), target=str(target))
        fault_point("library:after-next")
    store.commits.revert(plan.to_revert, new_hash=new_hash, event=receipt, forgotten_ids=request.ids.tolist(),
                         extra_meta={**extra, PENDING_DELETION: json.dumps(pending)}, destroying=destroy)
    fault_point("library:after-ledger")
    _finish(store, pending)
    return receipt


def plan_deletion(
    ledger: LedgerStore | str | os.PathLike[str],
    ids: Sequence[int] | np.ndarray,
    *,
    thresholds: Thresholds | None = None,
) -> Plan:
    """The plan :func:`forget_records` would follow for ``ids``, changing nothing (the ledger is opened
    read-only when given as a path): the steps touched, their share of training, what earlier deletions
    left unrepaired, and the recommendation with its reason.

    >>> import tempfile, torch
    >>> from amnesiac import LedgerStore, plan_deletion
    >>> store = LedgerStore.create(tempfile.mkdtemp() + "/ledger", manifest={})
    >>> for step in range(1, 101):
    ...     store.put_step(step, epoch=0, ids=[step], update={"w": torch.ones(1)})
    >>> plan = plan_deletion(store, [7])
    >>> plan.to_revert, plan.share, plan.recommendation
    ([7], 0.01, 'amnesiac')
    """
    wanted = as_id_array(ids, "ids")
    _check_thresholds(thresholds)
    with _opened(ledger) as store:
        request = resolve_request(store.index.all_ids(), np.zeros(0), num_classes=0, ids=wanted)
        return make_plan(store, request.ids.tolist(), thresholds=thresholds)


def finish_interrupted_deletion(ledger: LedgerStore) -> dict[str, Any] | None:
    """Complete a :func:`forget_records` that died after its commit point: rename the new model file into
    place and destroy the reverted updates. Returns what was completed (None when nothing was pending).
    Call it with the ledger open writable, from the only process writing it (``forget_records`` does).

    The new model file is renamed only when its checksum is the one the ledger committed; otherwise
    :class:`~amnesiac.errors.LedgerCorruptError` names it and nothing is changed.
    """
    raw = ledger.index.get_meta(PENDING_DELETION)
    if not raw:
        return None
    try:
        pending = json.loads(raw)
        if not isinstance(pending, dict) or not isinstance(pending.get("destroy"), list):
            raise ValueError("not an object with a list of steps to destroy")
    except ValueError as err:
        raise LedgerCorruptError(f"the pending deletion recorded in {ledger.path} is damaged ({err}); nothing was "
                                 "changed") from None
    nxt = Path(pending["next"]) if pending.get("next") else None
    if nxt is not None:
        target, want = Path(pending["target"]), ledger.index.get_meta("head_file_sum")
        if nxt.is_file() and file_checksum(nxt) != want:
            raise LedgerCorruptError(f"{nxt} should hold the model an interrupted deletion committed, but its checksum "
                                     "is not the one the ledger recorded; nothing was changed")
        if not nxt.is_file() and not (target.is_file() and file_checksum(target) == want):
            raise LedgerCorruptError(f"an interrupted deletion committed the model it wrote to {nxt}, but neither "
                                     f"{nxt} nor {target} holds it now; restore it from a backup")
    _finish(ledger, pending)
    ledger.index.add_event("recover", {"journal": "forget_records", "outcome": "rolled-forward",
                                 "model_file": pending.get("target")})
    return pending


def _finish(store: LedgerStore, pending: dict[str, Any]) -> None:
    """After the commit point: the new model file into place, the reverted updates destroyed, then the record
    of what was pending cleared (each step is safe to repeat)."""
    if pending.get("next"):
        nxt, target = Path(pending["next"]), Path(pending["target"])
        if nxt.is_file():
            os.replace(nxt, target)
            fsync_dir(target.parent)
        fault_point("library:after-rename")
    if pending["destroy"]:
        store.commits.destroy(pending["destroy"])
        fault_point("library:after-destroy")
    store.index.set_meta(durable=True, **{PENDING_DELETION: ""})


def _lacking_tensors(store: LedgerStore, model: nn.Module) -> str | None:
    """For a model that is not the head: the recorded tensors it lacks, and what a merged adapter means."""
    try:
        recorded = set(store.load_initial())
    except AmnesiacError:
        return None
    lacking = sorted(recorded - set(model.state_dict()))
    if not lacking:
        return None
    return (f"It lacks {len(lacking)} of the {len(recorded)} tensors the ledger recorded (e.g. {lacking[0]}). If an "
            "adapter (LoRA) was merged into its base, the merged weights can no longer be told apart from the base's, "
            "so no stored update applies: forget on the unmerged adapter model, then merge again.")


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected the torch.nn.Module the ledger describes, got {type(model).__name__}")


def _check_thresholds(thresholds: Any) -> None:
    if thresholds is not None and not isinstance(thresholds, Thresholds):
        raise ConfigError(f"thresholds: expected amnesiac.config.Thresholds (or None for the defaults), got "
                          f"{type(thresholds).__name__} {str(thresholds)[:40]!r}")


def _check_save_to(save_to: Any) -> Path | None:
    """``save_to`` checked before anything changes: a file path whose folder exists (or None)."""
    if save_to is None:
        return None
    if not isinstance(save_to, (str, os.PathLike)):
        raise ConfigError(f"save_to: expected a file path, got {type(save_to).__name__} {str(save_to)[:40]!r}")
    target = Path(save_to)
    if not target.parent.is_dir():
        raise ConfigError(f"save_to: the folder {target.parent} does not exist; create it first")
    for p in (target, target.with_name(target.name + ".next")):
        if p.exists() and not p.is_file():
            raise ConfigError(f"save_to: {p} exists and is not a file (a directory?); give a file path")
    return target


def _library_receipt(store: LedgerStore, request: DeletionRequest, plan: Plan, outcome: MethodOutcome, old: str,
                     new: str, *, destroyed: dict[str, Any], timings: dict[str, float], kept: bool) -> Receipt:
    """The receipt of a deletion served from your own loop (the same fields as the run-directory workflow's)."""
    return build_receipt(
        method="amnesiac", options={}, request=request,
        new_ids=int(np.setdiff1d(request.ids, store.forgotten_ids()).size), plan=plan, outcome=outcome,
        old_hash=old, new_hash=new, evaluation={}, destroyed=destroyed, timings=timings, kept_for_research=kept,
        workflow="library", ledger_kind=store.kind, **_forced(plan))


def _forced(plan: Plan) -> dict[str, Any]:
    return {"forced": True} if plan.recommendation not in AMNESIAC_SERVES else {}


def _check_head(store: LedgerStore, model: nn.Module, recovered: dict[str, Any] | None = None) -> str:
    """The model's hash, which must be the ledger's head (``recovered``: an interrupted deletion just completed,
    whose model the caller may not have loaded yet)."""
    current = head_hash(store.manifest, model)
    remedy = "Pass the model the ledger's last mark_head or deletion left."
    if current != store.index.get_meta("head_hash"):
        remedy = _lacking_tensors(store, model) or remedy
    if recovered is not None:
        where = recovered.get("target")
        remedy = ("An earlier forget_records on this ledger had committed and then died; it was completed now"
                  + (f": {where} holds the ledger's head model, load it from there" if where else
                     " (it was not saved to a file: the head is the model that call returned)"))
    check_head(store, current, model_name="the model given", remedy=remedy)
    check_base(store.manifest, model, ledger=str(store.path))  # a ledger of an adapter: the same frozen base
    return current


def _save_aside(model: nn.Module, save_to: str | os.PathLike[str], new_hash: str, extra: dict[str, Any]) -> Path:
    """Write the new model next to ``save_to`` (renamed into place once the ledger commits); its checksum
    goes into the ledger's commit."""
    target = Path(save_to)
    nxt = target.with_name(target.name + ".next")
    save_tensors(nxt, model_state(model), {"hash": new_hash})
    extra["head_file_sum"] = file_checksum(nxt)
    return nxt
