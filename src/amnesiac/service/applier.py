"""The one writer of a served run: it holds the run's lock, keeps model and ledger open, and applies queued
deletion requests in batches, each batch one subtraction and one journaled commit with a receipt per request.

Usable without HTTP::

    from amnesiac.service import BatchApplier
    with BatchApplier("runs/digits") as applier:
        applier.submit(ids=[17, 42], idempotency_key="ticket-1")
        for batch in applier.apply_pending():
            print(batch.batch_id, batch.request_ids, batch.steps_reverted)

How a batch is formed. Every queued request is planned together (the union of their records' steps or
shards). When the planner would serve the union with amnesiac (or ``force`` is set), it is one batch. When it
would not, the requests are taken in order while the union still passes; the rest wait for the next batch, and a
request that fails alone (its own share too large, or updates that were never stored) is refused with the
planner's reason. A repair runs when the planner calls for one (the share undone since the last repair passed
``Thresholds.amnesiac_max_share``): by default as many optimizer steps as the updates subtracted since the last
repair held (``repair="owed"``; ``repair_fraction`` takes a share of that, for a cheaper and less complete
repair), or a fixed number (``repair=N``; 0 never repairs).

Crash safety. A batch is marked ``applying`` in the queue before its change begins; the ledger transaction that
moves the head also writes the batch's receipts (each naming its ``request_id``), so it is the commit point of
the whole batch. On start, the run's lock completes or rolls back an interrupted change, and
:meth:`DeletionQueue.reconcile` marks each ``applying`` request done if its receipt is in the ledger and
queues it again otherwise: every accepted request is applied exactly once.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Thresholds
from ..errors import AmnesiacError, LedgerError, RequestError
from ..faults import point as fault_point
from ..ledger import LedgerStore
from ..run import RunDir
from ..run.commit import abort_change, begin_change
from ..run.layout import SERVICE_FILE
from ..unlearn.base import METHODS, MethodContext, MethodOutcome
from ..unlearn.forget import commit_deletion
from ..unlearn.planner import AMNESIAC_SERVES, Plan, check_head, make_plan, unrepaired_steps
from ..unlearn.receipts import Receipt, build_receipt
from ..unlearn.request import DeletionRequest, resolve_request
from ..utils import atomic_write_json, model_hash, new_secret
from .queue import DeletionQueue, QueuedRequest

QUEUE_DIR = "service"
MAX_IDS_PER_REQUEST = 10_000


@dataclass(frozen=True)
class BatchResult:
    """One batch applied: its requests, the steps (or shards) it reverted, the repair it ran, and each
    request's receipt (request id → :class:`~amnesiac.unlearn.receipts.Receipt`)."""

    batch_id: str
    request_ids: list[str]
    steps_reverted: list[int]
    repair_steps: int
    model_hash_before: str
    model_hash_after: str
    seconds: float
    receipts: dict[str, Receipt] = field(repr=False)
    refused: dict[str, str] = field(default_factory=dict)


class BatchApplier:
    """Apply a run's queued deletion requests in batches, holding the run as its only writer.

    Args:
        run: the run directory (it must have a ledger and a finished training).
        queue: the request queue (default: ``RUN/service/queue.sqlite``).
        thresholds: the planner's thresholds for each batch. force: serve a batch with amnesiac (and a repair)
            where the planner recommends another method, instead of refusing its requests.
        repair: ``"owed"`` (repair with as many optimizer steps as the undone updates held since the last
            repair) or a number of steps (0: never repair). repair_fraction: with ``"owed"``, repair with this
            share of the owed steps (at least one); 1 repays them all.
        subject_map: data subject → sample ids, for requests that name subjects.
        max_batch: at most this many requests in one batch. max_ids: at most this many ids in one request.
        owner: how the holder describes itself in ``RUN/.service.json`` (the service puts its address).
    """

    def __init__(self, run: RunDir | str | os.PathLike[str], queue: DeletionQueue | None = None, *,
                 thresholds: Thresholds | None = None, force: bool = False, repair: int | str = "owed",
                 repair_fraction: float = 1.0,
                 subject_map: Mapping[str, Sequence[int]] | None = None, max_batch: int = 1000,
                 max_ids: int = MAX_IDS_PER_REQUEST, owner: Mapping[str, Any] | None = None,
                 progress: bool | None = False) -> None:
        if repair != "owed" and (isinstance(repair, bool) or not isinstance(repair, int) or repair < 0):
            raise RequestError(f"repair must be 'owed' or a number of steps >= 0, got {repair!r}")
        if isinstance(repair_fraction, bool) or not isinstance(repair_fraction, (int, float)) \
                or not 0 < repair_fraction <= 1:
            raise RequestError(f"repair_fraction must lie in (0, 1], got {repair_fraction!r}")
        for name, value in (("max_batch", max_batch), ("max_ids", max_ids)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RequestError(f"{name} must be a positive integer, got {value!r}")
        self.run = run if isinstance(run, RunDir) else RunDir.open(run)
        self.thresholds = thresholds or Thresholds()
        self.force, self.repair, self.subject_map = force, repair, subject_map
        self.repair_fraction = float(repair_fraction)
        self.max_batch, self.max_ids, self.progress = max_batch, max_ids, progress
        self._owner = dict(owner or {})
        self._own_queue = queue is None
        self.queue = queue if queue is not None else DeletionQueue(self.run.path / QUEUE_DIR / "queue.sqlite")
        self._stack = contextlib.ExitStack()
        self._store: LedgerStore | None = None
        self.model: torch.nn.Module | None = None
        self.model_hash = ""
        self.owed_steps = 0  # optimizer steps the updates undone since the last repair held
        self.history: list[dict[str, Any]] = []  # the model's hashes, newest last
        self.batches_applied = 0
        self._batch_lock = threading.RLock()  # a batch runs whole before model_info() reads the state
        self._open()

    # ----------------------------------------------------------------- holding the run
    def _open(self) -> None:
        try:
            self._stack.enter_context(self.run.lock(wait=False))  # completes or rolls back a crashed change
            if not self.run.has_ledger():
                raise LedgerError(f"a deletion service needs the run's ledger, but {self.run.no_ledger_reason()}")
            atomic_write_json(self.run.path / SERVICE_FILE, {"pid": os.getpid(), "since": time.time(), **self._owner})
            self._stack.callback(lambda: (self.run.path / SERVICE_FILE).unlink(missing_ok=True))
            self._load()
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # torch imports its compiler at the
            training = self.run.training_data()  # first optimizer made (about 2 s): at start, not in a repair
            self._training = training
            self._known = np.sort(training.ids.numpy())
            self._labels = training.targets.numpy()
            self._num_classes = self.run.bundle().info.num_classes
            self.recovered = self.queue.reconcile(self._committed_receipts())
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        """Open the ledger writable and load the model, checking it is the ledger's head."""
        store = self._store = self.run.open_ledger(writable=True)
        if store.index.get_meta("training_complete") != "1":
            raise LedgerError(f"training of {self.run.path} did not finish; resume it first")
        self.model = self.run.load_model()
        self.model_hash = model_hash(self.model)
        check_head(store, self.model_hash, model_name=str(self.run.model_path),
                   remedy="It was changed outside amnesiac: restore the model or retrain.")
        self.owed_steps = self._owed_since_repair()
        if not self.history or self.history[-1]["hash"] != self.model_hash:
            self.history.append({"hash": self.model_hash, "time": time.time(), "batch_id": None})

    @property
    def store(self) -> LedgerStore:
        if self._store is None:
            raise LedgerError("the batch applier is closed")
        return self._store

    def close(self) -> None:
        """Close the ledger and release the run (and the queue, if this applier opened it)."""
        if self._store is not None:
            self._store.close()
            self._store = None
        self._stack.close()
        if self._own_queue:
            self.queue.close()

    def __enter__(self) -> BatchApplier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _committed_receipts(self) -> dict[str, dict[str, Any]]:
        return {str(r["request_id"]): r for r in self.store.events("forget") if r.get("request_id")}

    # ----------------------------------------------------------------- accepting
    def validate(self, *, ids: Sequence[int] | None = None,
                 subjects: Sequence[str] | None = None) -> DeletionRequest:
        """The request resolved against the run's training records, or :class:`RequestError` saying why not."""
        if ids is not None and not isinstance(ids, (list, tuple, np.ndarray)):
            raise RequestError(f"ids must be a list of integer sample ids, got {type(ids).__name__}")
        if subjects is not None:
            if not isinstance(subjects, (list, tuple)) or not all(isinstance(s, str) for s in subjects):
                raise RequestError(f"subjects must be a list of strings, got {subjects!r:.80}")
            if self.subject_map is None:
                raise RequestError("this service has no subject map, so it cannot resolve data subjects; send ids, "
                                   "or start it with a subject map (amnesiac serve --subjects-file FILE)")
            if len(subjects) > self.max_ids:
                raise RequestError(f"a request may name at most {self.max_ids} subjects, got {len(subjects)}")
        if ids is not None and len(ids) > self.max_ids:
            raise RequestError(f"a request may name at most {self.max_ids} ids, got {len(ids)}; split it")
        request = resolve_request(self._known, self._labels, num_classes=self._num_classes, ids=ids,
                                  subjects=subjects, subject_map=self.subject_map)
        if len(request) > self.max_ids:
            raise RequestError(f"the subjects named hold {len(request)} records, more than max_ids={self.max_ids}")
        return request

    def submit(self, *, ids: Sequence[int] | None = None, subjects: Sequence[str] | None = None,
               idempotency_key: str | None = None) -> QueuedRequest:
        """Validate a request and store it durably in the queue (nothing is stored when it is refused)."""
        request = self.validate(ids=ids, subjects=subjects)
        return self.queue.submit(ids=request.ids.tolist(), subjects=list(subjects) if subjects is not None else None,
                                 idempotency_key=idempotency_key)

    # ----------------------------------------------------------------- applying
    def apply_pending(self, *, stop: Callable[[], bool] | None = None) -> list[BatchResult]:
        """Apply every queued request, in as few batches as the planner allows; returns the batches.
        ``stop()`` is asked between batches (a service stopping finishes the batch it is in)."""
        results = []
        while not (stop is not None and stop()):
            waiting = self.queue.take(limit=self.max_batch)
            if not waiting:
                break
            group, plan, refused = self._form_batch(waiting)
            for rid, reason in refused.items():
                self.queue.mark_refused(rid, reason)
            if len(group) == 1:
                results.append(self._apply(group, plan, refused))
            elif group:
                try:
                    results.append(self._apply(group, plan, refused))
                except AmnesiacError:  # one request's trouble (a damaged update, say): each alone, so it is
                    for req in group:  # refused with the reason and the others go through
                        results.append(self._apply([req], self._plan([req]), {}))
            elif not refused:
                break
        return results

    def _plan(self, requests: Sequence[QueuedRequest]) -> Plan:
        ids = sorted({i for r in requests for i in r.ids})
        return make_plan(self.store, ids, thresholds=self.thresholds)

    def _passes(self, plan: Plan) -> bool:
        return not plan.missing and (self.force or plan.recommendation in AMNESIAC_SERVES)

    def _form_batch(self, waiting: list[QueuedRequest]) -> tuple[list[QueuedRequest], Plan | None, dict[str, str]]:
        """The largest prefix-greedy batch the planner passes; requests that fail alone are refused."""
        plan = self._plan(waiting)
        if self._passes(plan):
            return waiting, plan, {}
        group: list[QueuedRequest] = []
        group_plan: Plan | None = None
        refused: dict[str, str] = {}
        for req in waiting:
            trial = self._plan([*group, req])
            if self._passes(trial):
                group, group_plan = [*group, req], trial
            elif not group:
                alone = trial
                refused[req.request_id] = _refusal(alone)
        return group, group_plan, refused

    def _apply(self, group: list[QueuedRequest], plan: Plan | None, refused: dict[str, str]) -> BatchResult:
        with self._batch_lock:
            result = self._apply_locked(group, plan, refused)
            self.batches_applied += 1
            return result

    def _apply_locked(self, group: list[QueuedRequest], plan: Plan | None, refused: dict[str, str]) -> BatchResult:
        assert plan is not None
        t0 = time.perf_counter()
        batch_id = "batch_" + uuid.uuid4().hex[:16]
        rids = [r.request_id for r in group]
        secrets = {rid: new_secret() for rid in rids}  # each requester's, noted before the commit point
        self.queue.mark_applying(rids, batch_id, secrets)
        fault_point("service:after-applying")
        old_hash = self.model_hash
        held = held_optimizer_steps(self.store, plan.to_revert, epochs=self.run.config.epochs,
                                    batch_size=self.run.config.batch_size)
        repair_steps = self._repair_steps(plan, held)
        begin_change(self.run, old_hash=old_hash, store=self.store)
        try:
            outcome = self._subtract(group, plan, repair_steps)
            fault_point("service:after-method")
            made = commit_deletion(
                self.run, self.store, outcome, old_hash=old_hash, plan=plan, keep_artifacts=False,
                receipts=lambda new_hash, destroyed: self._receipts(group, plan, outcome, batch_id, held, old_hash,
                                                                    new_hash, destroyed, t0, secrets))
        except BaseException as err:
            self._roll_back()
            if isinstance(err, AmnesiacError) and len(group) == 1:
                self.queue.mark_refused(rids[0], f"{type(err).__name__}: {err}")
                return BatchResult(batch_id, [], [], 0, old_hash, old_hash, time.perf_counter() - t0, {},
                                   {**refused, rids[0]: str(err)})
            self.queue.requeue(rids)
            raise
        fault_point("service:after-commit")
        receipts = dict(zip(rids, made))
        self.queue.mark_done({rid: {**r.as_json(), "proof": _secret_part(r)} for rid, r in receipts.items()})
        self.model_hash = made[0].model_hash_after
        self.owed_steps = 0 if repair_steps else self.owed_steps + held
        self.history.append({"hash": self.model_hash, "time": time.time(), "batch_id": batch_id})
        return BatchResult(batch_id, rids, list(plan.to_revert), repair_steps, old_hash, self.model_hash,
                           time.perf_counter() - t0, receipts, refused)

    def _roll_back(self) -> None:
        """A batch that failed before its commit point: the old state stands, in memory too."""
        self.store.close()
        self._store = None
        abort_change(self.run)
        self._load()

    def _repair_steps(self, plan: Plan, held: int) -> int:
        if plan.recommendation in ("amnesiac", "nothing") or self.repair == 0:
            return 0
        if self.repair == "owed":
            return max(1, math.ceil(self.repair_fraction * (self.owed_steps + held)))
        return int(self.repair)

    def _subtract(self, group: list[QueuedRequest], plan: Plan, repair_steps: int) -> MethodOutcome:
        """The batch's updates subtracted (and the repair, if any), with the run's own amnesiac method."""
        union = np.array(sorted({i for r in group for i in r.ids}), dtype=np.int64)
        request = DeletionRequest(union, "ids")
        drop = np.union1d(self.store.forgotten_ids(), union)
        training = self._training
        assert self.model is not None
        ctx = MethodContext(self.run, self.model, request, self.store, plan,
                            lambda: training.without_ids(drop[np.isin(drop, self._known)]),
                            training.only_ids(union), {}, {"repair_steps": repair_steps} if repair_steps else {},
                            self.progress)
        return METHODS.get("amnesiac")(ctx)

    def _receipts(self, group: list[QueuedRequest], plan: Plan, outcome: MethodOutcome, batch_id: str, held: int,
                  old_hash: str, new_hash: str, destroyed: dict[str, Any], t0: float,
                  secrets: Mapping[str, str]) -> list[tuple[Receipt, Sequence[int]]]:
        """One receipt per request: the steps of its own records among the batch's, and the batch it was in."""
        reverted = set(outcome.steps_reverted)
        options = {"repair_steps": outcome.optimizer_steps} if outcome.optimizer_steps else {}
        batch = {"id": batch_id, "requests": len(group), "n_steps_reverted": len(reverted),
                 "held_optimizer_steps": held, "model_hash_before": old_hash, "model_hash_after": new_hash}
        forgotten = set(self.store.forgotten_ids().tolist())
        out: list[tuple[Receipt, Sequence[int]]] = []
        for req in group:
            own = sorted(set(self.store.steps_for_ids(req.ids)) & reverted)
            detail = {"subjects": len(req.subjects)} if req.subjects is not None else {}
            request = DeletionRequest(np.asarray(req.ids, dtype=np.int64), req.kind, detail)
            mine = MethodOutcome(outcome.model, steps_reverted=own, recorded_steps=outcome.recorded_steps,
                                 optimizer_steps=outcome.optimizer_steps, history=outcome.history,
                                 timings=outcome.timings, details=outcome.details)
            receipt = build_receipt(
                method="amnesiac", options=options, request=request,
                new_ids=len(set(req.ids) - forgotten), plan=plan, outcome=mine, old_hash=old_hash, new_hash=new_hash,
                evaluation={}, timings={**outcome.timings, "total": time.perf_counter() - t0}, destroyed=destroyed,
                kept_for_research=False, ledger_kind=self.store.kind, workflow="service", request_id=req.request_id,
                batch=batch, secret=secrets[req.request_id], **({"forced": True} if plan.recommendation not in AMNESIAC_SERVES else {}))
            out.append((receipt, req.ids))
        return out

    # ----------------------------------------------------------------- reading
    def _owed_since_repair(self) -> int:
        """Optimizer steps the updates undone since the last deletion that trained (a repair) held."""
        owed, seen = 0, set[str]()
        cfg = self.run.config
        for receipt in self.store.events("forget"):
            options = receipt.get("options") or {}
            if receipt.get("optimizer_steps") or options.get("repair_steps") or options.get("repair_epochs"):
                owed, seen = 0, set()
            elif receipt.get("method") != "amnesiac":
                owed = 0
            elif isinstance(receipt.get("batch"), dict):
                if receipt["batch"]["id"] not in seen:
                    seen.add(receipt["batch"]["id"])
                    owed += int(receipt["batch"].get("held_optimizer_steps") or 0)
            else:
                owed += held_optimizer_steps(self.store, receipt.get("steps_reverted") or [], epochs=cfg.epochs,
                                             batch_size=cfg.batch_size)
        return owed

    def model_info(self) -> dict[str, Any]:
        """The served model: head hash, steps (or shards) undone, the share undone since the last repair, ledger
        bytes, and the hash history."""
        with self._batch_lock:
            return self._model_info()

    def _model_info(self) -> dict[str, Any]:
        store = self.store
        counts = store.index.counts()
        total = counts["steps"]
        unrepaired = unrepaired_steps(store)
        return {"run": str(self.run.path), "head_hash": self.model_hash, "ledger_kind": store.kind,
                "steps": total, "reverted": counts["reverted_steps"],
                "unrepaired_share": unrepaired / total if total else 0.0,
                "owed_optimizer_steps": self.owed_steps, "ledger_bytes": counts["bytes"],
                "ledger_bytes_on_disk": _dir_bytes(store.path), "history": list(self.history[-50:]),
                "batches": self.batches_applied}


def _secret_part(receipt: Receipt) -> dict[str, Any]:
    """The requester's proof without the ids (the queue drops raw ids once a request is done; the requester
    knows them): with the ids added it is what ``amnesiac receipts prove`` reads."""
    return {k: v for k, v in receipt.proof().items() if k != "ids"}


def _refusal(plan: Plan) -> str:
    if plan.missing:
        return (f"the request touches {len(plan.missing)} step(s) whose update is not stored; amnesiac cannot undo "
                "them: retrain the model without these records")
    return (f"the planner recommends {plan.recommendation}, not amnesiac: {plan.reason}. The service serves "
            "amnesiac requests only (start it with force to subtract anyway)")


def held_optimizer_steps(store: LedgerStore, steps: Sequence[int], *, epochs: int, batch_size: int) -> int:
    """The optimizer steps the given rows' updates hold: one per step row; a shard sum holds every step of its
    shard (epochs x its batches)."""
    if store.kind != "shards":
        return len(steps)
    rows = store.index.steps_info(list(steps))
    return sum(epochs * -(-rows[s].ids.size // batch_size) for s in steps)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
