"""The deletion workflow around any unlearning method: check, plan, run, evaluate, commit, receipt.

>>> import tempfile
>>> from amnesiac.run import TrainConfig, train_run
>>> from amnesiac.unlearn import forget
>>> run = train_run(TrainConfig(epochs=1), tempfile.mkdtemp() + "/run", progress=False).run
>>> result = forget(run, ids=[17, 42], progress=False)
>>> result.receipt["method"], result.receipt["request"]["count"], result.receipt["n_steps_reverted"]
('amnesiac', 2, 2)
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.base import ArrayDataset
from ..errors import LedgerError, ModelMismatchError, RunDirError
from ..faults import point as fault_point
from ..ledger import LedgerStore, is_bare_ledger, reading_ledger
from ..run import RunDir
from ..run.commit import abort_change, begin_change, commit_model
from ..training import evaluate_sets
from ..utils import model_hash
from .base import METHODS, MethodContext, MethodOutcome, check_options
from .planner import (
    AMNESIAC_SERVES,
    Plan,
    Thresholds,
    check_head,
    make_plan,
    norm_of,
    refuse_unless_forced,
    sum_updates,
)
from .receipts import Receipt
from .receipts import build_receipt as _receipt
from .request import DeletionRequest, resolve_request

RETAIN_EVAL_SIZE = 2000


@dataclass(frozen=True)
class ForgetResult:
    """What :func:`forget` did: the plan, the receipt (None for a dry run or a no-op), the model, and the
    run directory that now holds the result (a new one with ``out``)."""

    plan: Plan | None
    receipt: Receipt | None
    model: nn.Module | None
    dry_run: bool = False
    message: str = ""
    outcome: MethodOutcome | None = field(default=None, repr=False)
    run: RunDir | None = None


def forget_eval_sets(run: RunDir, request: DeletionRequest, retain: ArrayDataset, forget_data: ArrayDataset,
                     *, seed: int = 0) -> dict[str, ArrayDataset]:
    """forget (the requested records), retain (a fixed sample of what is kept), test, and per class."""
    g = torch.Generator().manual_seed(seed)
    n = min(RETAIN_EVAL_SIZE, len(retain))
    sample = retain.subset(torch.sort(torch.randperm(len(retain), generator=g)[:n]).values) if len(retain) else retain
    test = run.bundle().test
    sets = {"forget": forget_data, "retain": sample, "test": test}
    if request.kind == "class":
        c = request.detail["class"]
        mask = test.targets == c
        sets[f"test_class{c}"] = test.subset(torch.nonzero(mask).flatten())
        sets["test_other"] = test.subset(torch.nonzero(~mask).flatten())
    return sets


@dataclass
class _Job:
    """One deletion in progress: what the stages of :func:`forget` hand each other."""

    run: RunDir
    store: LedgerStore | None
    method: str
    impl: Any
    options: dict[str, Any]
    current: nn.Module
    current_hash: str
    working: nn.Module
    progress: bool | None
    t_start: float
    # set by _plan, before any stage reads them
    request: DeletionRequest = field(init=False)
    plan: Plan | None = None  # None for a run without a ledger
    new_ids: np.ndarray = field(init=False)
    forget_data: ArrayDataset = field(init=False)
    retain: ArrayDataset | Callable[[], ArrayDataset] = field(init=False)  # built on first use (MethodContext)
    sets: dict[str, ArrayDataset] = field(default_factory=dict)
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_s: float = 0.0
    options_note: dict[str, Any] = field(default_factory=dict)  # e.g. forced past the planner's advice


def forget(
    run: RunDir | str,
    *,
    ids: Sequence[int] | np.ndarray | None = None,
    class_: int | None = None,
    subjects: Sequence[str] | None = None,
    subject_map: Mapping[str, Sequence[int]] | None = None,
    method: str = "amnesiac",
    options: Mapping[str, Any] | None = None,
    thresholds: Thresholds | None = None,
    dry_run: bool = False,
    keep_artifacts: bool = False,
    evaluate_after: bool = True,
    model: nn.Module | None = None,
    out: str | None = None,
    progress: bool | None = None,
    force: bool = False,
) -> ForgetResult:
    """Honour a deletion request on a run, in place, with a receipt in the ledger's audit log.

    The stages: check that model and ledger agree, resolve the request and plan it, build the evaluation
    sets, run the method, then commit model and ledger together through the run's journal.

    Args:
        run: the run directory (or its path).
        ids / class_ / subjects: what to forget (exactly one; ``subjects`` needs ``subject_map``).
        method / options: a registered unlearning method (``amnesiac methods``) and its options.
        thresholds: the planner's recommendation thresholds. dry_run: plan only; nothing changes.
        keep_artifacts: keep the reverted steps' updates and the optimizer state, which still encode the
            deleted data. For research only: the deletion is then not complete, and the receipt says so.
        model: if given, it must be the run's current model (checked by hash), and it is updated in place.
        out: write the result to this new run directory and leave ``run`` untouched (``retrain`` needs it).
        force: run amnesiac where the planner recommends another method (a share of steps that would wreck
            the model); without it such a request raises :class:`~amnesiac.errors.PlanRefusedError`.
    """
    run = run if isinstance(run, RunDir) else RunDir.open(run)
    impl, options = METHODS.get(method), check_options(method, dict(options or {}))
    creates_run = bool(getattr(impl, "creates_run", False))
    what = {"ids": ids, "class_": class_, "subjects": subjects, "subject_map": subject_map}
    copy = None
    if out is not None and not creates_run and not dry_run:
        run, out = _planned_copy(run, out, method, thresholds, what, force), None
        copy = run.path
    with _copy_kept_only_if_changed(copy) as keep, run.lock(wait=True):
        store = run.open_ledger(writable=True) if run.has_ledger() else None
        try:
            job = _start(run, store, method, impl, options, model, progress, time.perf_counter())
            _plan(job, thresholds or Thresholds(), **what)
            result = _dry_run(job) if dry_run else _serve(job, force, evaluate_after, creates_run, out, keep_artifacts)
            if copy is not None and result.receipt is None:
                keep[0] = False
                result = dataclasses.replace(result, message=f"{result.message} (no copy written to {copy})")
            return result
        finally:
            if store is not None:
                store.close()  # closing twice is harmless (_apply closes it before a rollback)


def _serve(job: _Job, force: bool, evaluate_after: bool, creates_run: bool, out: str | None,
           keep_artifacts: bool) -> ForgetResult:
    """The planned request carried out: refused past the planner's advice unless forced, nothing done when
    every record was already forgotten, otherwise the method run and committed."""
    _guard(job, force)
    if job.new_ids.size == 0 and (job.plan is None or not job.plan.to_revert):
        return ForgetResult(job.plan, None, job.current,
                            message="every requested record was already forgotten; nothing changed")
    _prepare_data(job, evaluate_after)
    if creates_run:
        return _run_creating_method(job, out)
    return _apply(job, keep_artifacts)


@contextlib.contextmanager
def _copy_kept_only_if_changed(copy: Path | None) -> Iterator[list[bool]]:
    """The ``out`` copy a deletion works on stays only if the deletion changed it: a failed or refused request,
    or one with nothing to do, leaves no folder behind (the block sets ``keep[0] = False`` for the latter)."""
    keep = [True]
    try:
        yield keep
    except BaseException:
        keep[0] = False
        raise
    finally:
        if copy is not None and not keep[0]:
            shutil.rmtree(copy, ignore_errors=True)


def _guard(job: _Job, force: bool) -> None:
    """Amnesiac where the planner recommends another method only with ``force`` (noted in the receipt)."""
    if job.method == "amnesiac" and job.plan is not None:
        refuse_unless_forced(job.plan, force=force)
        job.options_note = {"forced": True} if job.plan.recommendation not in AMNESIAC_SERVES else {}


def _planned_copy(run: RunDir, out: str, method: str, thresholds: Thresholds | None, what: dict[str, Any],
                  force: bool) -> RunDir:
    """The copy of ``run`` a method works on with ``out``; an amnesiac request the planner refuses is refused
    first (planned on ``run``, nothing changed), so it leaves no copy behind."""
    if method != "amnesiac" or force or not run.has_ledger():
        return _copy_run(run, out)
    with run.lock(wait=True):
        with run.open_ledger(writable=True) as store:
            job = _start(run, store, "amnesiac", METHODS.get("amnesiac"), {}, None, False, time.perf_counter())
            _plan(job, thresholds or Thresholds(), **what)
            if job.plan is not None:
                refuse_unless_forced(job.plan, force=False)
    return _copy_run(run, out)


def _start(run: RunDir, store: LedgerStore | None, method: str, impl: Any, options: dict[str, Any],
           model: nn.Module | None, progress: bool | None, t_start: float) -> _Job:
    """Check that the run's model is the one its ledger describes (and ``model``, if given, is that model)."""
    if getattr(impl, "needs_ledger", False) and store is None:
        raise LedgerError(
            f"method {method!r} needs the run's ledger, but {run.no_ledger_reason()}; "
            "use method='retrain', method='relabel', method='naive', method='finetune' or method='gradient-ascent'"
        )
    current = run.load_model()
    current_hash = model_hash(current)
    if store is not None:
        if store.index.get_meta("training_complete") != "1":
            raise LedgerError(f"training of {run.path} did not finish; resume it (resume=True) first")
        check_head(store, current_hash, model_name=str(run.model_path),
                   remedy="It was changed outside amnesiac: restore the model or retrain.")
    if model is not None:
        given = model_hash(model)
        if given != current_hash:
            raise ModelMismatchError(
                f"the model given (hash {given[:16]}) is not the run's current model (hash {current_hash[:16]}); "
                "load it with RunDir.load_model() or pass the run's own model"
            )
    return _Job(run, store, method, impl, options, current, current_hash, model if model is not None else current,
                progress, t_start)


def _plan(job: _Job, thresholds: Thresholds, **what: Any) -> None:
    """Resolve the request against the run's training data and plan it on the ledger."""
    training = job.run.training_data()
    info = job.run.bundle().info
    job.request = resolve_request(training.ids.numpy(), training.targets.numpy(), num_classes=info.num_classes, **what)
    store = job.store
    already = store.forgotten_ids() if store is not None else np.empty(0, np.int64)
    job.plan = make_plan(store, job.request.ids.tolist(), thresholds=thresholds,
                         whole_class=job.request.kind == "class") if store is not None else None
    job.new_ids = job.request.ids[~np.isin(job.request.ids, already)]
    drop = np.union1d(already, job.request.ids)
    job.forget_data = training.only_ids(job.request.ids)
    job.retain = lambda: training.without_ids(drop[np.isin(drop, training.ids.numpy())])


def _dry_run(job: _Job) -> ForgetResult:
    """The plan, with the size of the update a deletion would subtract against the model's."""
    plan = job.plan
    if job.store is not None and plan is not None and plan.to_revert and not plan.missing:
        plan = dataclasses.replace(
            plan, update_norm=norm_of(sum_updates(job.store, plan.to_revert, progress=job.progress)),
            model_norm=norm_of({k: v for k, v in job.current.state_dict().items() if v.is_floating_point()}))
    return ForgetResult(plan, None, None, dry_run=True, message="dry run: nothing changed")


def _prepare_data(job: _Job, evaluate_after: bool) -> None:
    """The retained data (built on first use unless evaluating) and the before-evaluation."""
    if not evaluate_after:
        return
    retain = job.retain() if callable(job.retain) else job.retain
    job.retain = retain
    job.sets = forget_eval_sets(job.run, job.request, retain, job.forget_data)
    t_eval = time.perf_counter()
    job.evaluation["before"] = evaluate_sets(job.current, job.sets)
    job.eval_s = time.perf_counter() - t_eval


def _run_method(job: _Job, options: dict[str, Any]) -> tuple[MethodOutcome, float]:
    ctx = MethodContext(job.run, job.working, job.request, job.store, job.plan, job.retain, job.forget_data, job.sets,
                        options, job.progress)
    t_method = time.perf_counter()
    outcome = job.impl(ctx)
    return outcome, time.perf_counter() - t_method


def _apply(job: _Job, keep_artifacts: bool) -> ForgetResult:
    """Run the method and commit the new model with the ledger, or leave the old state if anything fails."""
    run, store, request, plan = job.run, job.store, job.request, job.plan
    begin_change(run, old_hash=job.current_hash, store=store)
    try:
        outcome, method_s = _run_method(job, dict(job.options))
        fault_point("forget:after-method")
        t_eval = time.perf_counter()
        job.evaluation.update(outcome.evaluation)
        if job.sets:
            job.evaluation["after"] = evaluate_sets(outcome.model, job.sets)
        job.eval_s += time.perf_counter() - t_eval
        total_s = time.perf_counter() - job.t_start

        def receipts(new_hash: str, destroyed: dict[str, Any]) -> list[tuple[Receipt, Sequence[int]]]:
            return [(_receipt(
                method=job.method, options=job.options, request=request,
                new_ids=int(job.new_ids.size),
                plan=plan, outcome=outcome, old_hash=job.current_hash, new_hash=new_hash, evaluation=job.evaluation,
                timings={**outcome.timings, "method": method_s, "evaluate": job.eval_s, "total": total_s},
                destroyed=destroyed, kept_for_research=bool(keep_artifacts),
                ledger_kind=store.kind if store is not None else None, workflow="run", **job.options_note,
            ), request.ids.tolist())]

        receipt = commit_deletion(run, store, outcome, old_hash=job.current_hash, plan=plan,
                                  keep_artifacts=keep_artifacts, receipts=receipts)[0]
    except BaseException:
        if store is not None:
            store.close()
        abort_change(run)
        raise
    if store is None:
        _append_plain_receipt(run, receipt)
    return ForgetResult(plan, receipt, outcome.model, outcome=outcome, run=run,
                        message=f"forgot {len(request)} record(s) with {job.method}")


def commit_deletion(run: RunDir, store: LedgerStore | None, outcome: MethodOutcome, *, old_hash: str,
                    plan: Plan | None, keep_artifacts: bool,
                    receipts: Callable[[str, dict[str, Any]], list[tuple[Receipt, Sequence[int]]]]) -> list[Receipt]:
    """Commit ``outcome.model`` in place of the run's model through the run's journal (call it after
    :func:`~amnesiac.run.commit.begin_change`), with one receipt per request in the same ledger transaction.

    ``receipts(new_hash, destroyed)`` builds the receipts and the ids each one forgets. The stored updates of
    every step that saw the deleted records encode them: reverted or not, they are destroyed (unless
    ``keep_artifacts``), with the optimizer state; a later amnesiac request touching an unreverted one is then
    refused by step number. The one commit of the run-directory ``forget`` and of the deletion service.
    """
    new_hash = model_hash(outcome.model)
    touched = sorted(set(outcome.steps_reverted) | set(plan.to_revert if plan is not None else []))
    destroy = [] if keep_artifacts else touched
    made = receipts(new_hash, {"update_blobs": len(destroy), "optimizer_state": not keep_artifacts,
                               "previous_model": True})
    ledger_commit = None
    if store is not None:
        ledger_commit = lambda h, fsum: store.commits.revert_batch(  # noqa: E731
            outcome.steps_reverted, new_hash=h, events=made, extra_meta={"head_file_sum": fsum}, destroying=destroy)
    saved = run.model_meta()
    commit_model(run, outcome.model, old_hash=old_hash, new_hash=new_hash, store=store, ledger_commit=ledger_commit,
                 destroy_steps=destroy, destroy_optimizer=not keep_artifacts,
                 meta={"epoch": saved.get("epoch"), "step": saved.get("step"), "after": "forget"})
    return [r for r, _ in made]


def _copy_run(run: RunDir, out: str) -> RunDir:
    """Copy a run directory (model, ledger and all) so a method can work on the copy."""
    dest = Path(out)
    check_out_dir(dest, source=run.path)
    with run.lock(wait=True):
        shutil.copytree(run.path, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))
    return RunDir.open(dest)


def check_out_dir(dest: Path, *, source: Path) -> None:
    """An ``--out`` for a new run: not a file, not a non-empty folder, not inside (or around) the source run."""
    dest_r, src_r = dest.resolve(), source.resolve()
    if dest_r == src_r or src_r in dest_r.parents or dest_r in src_r.parents:
        raise RunDirError(f"out={str(dest)!r} lies inside the run {source} (or contains it); choose a directory outside it")
    if dest.exists() and not dest.is_dir():
        raise RunDirError(f"out={str(dest)!r} is a file; choose a new directory")
    if dest.exists() and any(dest.iterdir()):
        raise RunDirError(f"{dest} already exists and is not empty; choose a new directory as out=DIR")


def _run_creating_method(job: _Job, out: str | None) -> ForgetResult:
    """Methods that build a new run (retrain): the original run is only read."""
    run, request, plan = job.run, job.request, job.plan
    outcome, method_s = _run_method(job, {**job.options, "out": out})
    if job.sets:
        job.evaluation["after"] = evaluate_sets(outcome.model, job.sets)
    new_run = RunDir.open(outcome.details["new_run"])
    with new_run.lock(wait=True):
        new_store = new_run.open_ledger(writable=True) if new_run.has_ledger() else None
        receipt = _receipt(
            method=job.method, options=job.options, request=request,
            new_ids=len(request), plan=plan,
            outcome=outcome, old_hash=job.current_hash, new_hash=model_hash(outcome.model), evaluation=job.evaluation,
            timings={**outcome.timings, "method": method_s, "total": time.perf_counter() - job.t_start},
            destroyed={"update_blobs": 0, "optimizer_state": False, "previous_model": False},
            kept_for_research=False, source_run=str(run.path),
            note=f"the source run {run.path} still holds the deleted records' influence; delete it once "
                 f"{new_run.path} is in service",
        )
        if new_store is not None:
            new_store.index.add_event("forget", receipt)
            new_store.close()
        else:
            _append_plain_receipt(new_run, receipt)
    return ForgetResult(plan, receipt, outcome.model, outcome=outcome, run=new_run,
                        message=f"retrained without {len(request)} record(s) into {new_run.path}")


def _append_plain_receipt(run: RunDir, receipt: Mapping[str, Any]) -> None:
    """Runs without a ledger keep their receipts in ``RUN/receipts.json``."""
    import json

    from ..utils import atomic_write_json

    path = run.path / "receipts.json"
    existing = json.loads(path.read_text()) if path.is_file() else []
    existing.append({"id": len(existing) + 1, **receipt})
    atomic_write_json(path, existing)


def list_receipts(run: RunDir | str | Path) -> list[dict[str, Any]]:
    """Every deletion receipt of a run (or of a ledger directory recorded from your own loop), oldest first,
    each with its ``number`` (1, 2, ...) beside its audit-log entry ``id``."""
    if not isinstance(run, RunDir) and is_bare_ledger(run):
        with reading_ledger(run) as store:
            return [{**r, "number": k} for k, r in enumerate(store.events("forget"), 1)]
    run = run if isinstance(run, RunDir) else RunDir.open(run)
    return [{**r, "number": k} for k, r in enumerate(_run_receipts(run), 1)]


def _run_receipts(run: RunDir) -> list[dict[str, Any]]:
    import json

    out: list[dict[str, Any]] = []
    with run.reading():
        if run.has_ledger():
            with run.open_ledger() as store:
                out += store.events("forget")
        path = run.path / "receipts.json"
        if path.is_file():
            try:
                out += json.loads(path.read_bytes().decode("utf-8"))
            except ValueError as err:
                raise RunDirError(f"{path} is damaged ({err})") from None
    return out
