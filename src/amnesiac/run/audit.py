"""The whole-run audit behind `amnesiac ledger verify`: ledger, model against the head, pending journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import LedgerCorruptError, LedgerError, RunDirError
from ..ledger import LedgerStore, verify_ledger
from ..ledger.store import file_checksum
from ..ledger.sums import sum_updates
from ..utils import state_hash
from .checkpoint import load_tensors
from .layout import JOURNAL, NEXT_MODEL, RunFiles


@dataclass
class RunAudit:
    """What ``amnesiac ledger verify`` found: the ledger's own report plus run-level findings."""

    ledger: Any  # VerifyReport, or None for a run without a ledger
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # what was checked, in words

    @property
    def ok(self) -> bool:
        return not self.problems and (self.ledger is None or self.ledger.ok)


def audit_run(run: RunFiles, *, deep: bool = False, progress: bool | None = None) -> RunAudit:
    """Audit a run: ledger (manifest, index, initial state, blobs), model against the head, pending journal;
    with ``deep`` every blob is read and, when every applied step is stored, initial + sum of the updates
    must equal the model."""
    with run.reading(interrupted_ok=True):  # a change in flight: PendingChangeError ("being changed"), no diagnosis
        return _audit_committed(run, deep=deep, progress=progress)


def _audit_committed(run: RunFiles, *, deep: bool, progress: bool | None) -> RunAudit:
    out = RunAudit(ledger=None)
    if (run.path / JOURNAL).exists():
        out.problems.append(f"an interrupted change is pending ({JOURNAL}); run `amnesiac ledger recover {run.path}`")
    if (run.path / NEXT_MODEL).exists() and not (run.path / JOURNAL).exists():
        out.problems.append(f"{NEXT_MODEL} is left over without a journal")
    for tmp in run.leftover_writes():
        out.problems.append(f"{tmp.name} is left over from a write that a crash interrupted (not a committed file); "
                            f"the next command that takes the run's lock removes it (`amnesiac ledger recover {run.path}`)")
    try:
        _ = run.config  # reading it validates it
        out.checks.append("config.json")
    except RunDirError as err:
        out.problems.append(str(err))
    has = False
    try:
        has = run.has_ledger()
    except LedgerCorruptError as err:
        out.problems.append(str(err))
    store = None
    if has:
        try:
            store = LedgerStore.open(run.ledger_path, check_manifest=False)  # the audit reports a bad manifest itself
        except (LedgerCorruptError, LedgerError) as err:
            out.problems.append(str(err))
    if store is None:
        return out
    with store:
        out.ledger = verify_ledger(store, deep=deep, progress=progress)
        out.checks.append("manifest, index rows and id table, initial weights, "
                          + ("every stored update's checksum" if deep else "presence and size of stored updates"))
        head, head_sum = store.index.get_meta("head_hash"), store.index.get_meta("head_file_sum")
        model_state_: dict[str, torch.Tensor] | None = None
        if head is None:
            out.checks.append("no model committed yet")
            return out
        try:
            meta = run.model_meta()
            if head_sum is not None and file_checksum(run.model_path) != head_sum:
                out.problems.append(f"{run.model_path} does not match the checksum the ledger recorded for its head")
            elif meta.get("hash") != head:
                out.problems.append(f"{run.model_path} (hash {str(meta.get('hash'))[:16]}) is not the model the ledger "
                                    f"describes (head {head[:16]})")
            elif deep:
                model_state_ = load_tensors(run.model_path)[0]
                if state_hash(model_state_) != head:
                    out.problems.append(f"{run.model_path}: its weights do not hash to the ledger's head")
                    model_state_ = None
            fp = store.manifest.get("model_fingerprint")
            if fp is not None and model_state_ is not None:
                mine = sorted([k, list(v.shape), str(v.dtype)] for k, v in model_state_.items())
                if mine != sorted(fp):
                    out.problems.append(f"{run.model_path} does not have the architecture the ledger recorded")
            out.checks.append("model against the ledger's head" + (" (weights hashed)" if deep else " (file checksum)"))
        except RunDirError as err:
            out.problems.append(str(err))
        if deep and model_state_ is not None and out.ledger.ok:
            _check_reconstruction(store, model_state_, out)
    return out


def _check_reconstruction(store: LedgerStore, model: dict[str, torch.Tensor], out: RunAudit) -> None:
    """initial + sum of the applied updates up to the head must be the model (when every one is stored)."""
    head_step = int(store.index.get_meta("head_step") or 0)
    applied = [r for r in store.iter_steps(state="applied") if r.kind != "train" or r.step <= head_step]
    if not applied or any(r.blob is None for r in applied):
        out.checks.append("reconstruction skipped (not every applied step stores its update)")
        return
    try:
        initial = store.load_initial()
    except LedgerError as err:
        out.problems.append(str(err))
        return
    summed = sum_updates(store, [r.step for r in applied], progress=False)
    dtype = store.manifest.get("storage_dtype", "float32")
    tol = 1e-4 if dtype == "float32" else 2e-2
    # a deletion that drove BatchNorm running variances below 0 set them to 0 (its receipt counts them), so
    # those statistics are no longer initial + sum of the updates; every other tensor still is
    clamped = any((e.get("details") or {}).get("clamped_running_var") for e in store.events("forget"))
    if clamped:
        summed = {k: v for k, v in summed.items() if not k.endswith("running_var")}
    bad = []
    for name, delta in summed.items():
        if name not in model or name not in initial:
            bad.append(name)
            continue
        want = model[name].float()
        got = initial[name].float() + delta
        scale = float(delta.abs().max()) + float(want.abs().max()) * 1e-6 + 1e-12
        if float((got - want).abs().max()) > tol * scale:
            bad.append(name)
    if bad:
        out.problems.append(f"initial weights + the stored updates do not add up to the model for {len(bad)} tensor(s) "
                            f"(e.g. {', '.join(bad[:3])}); an update, the initial weights or the model is wrong")
    out.checks.append(f"initial + sum of {len(applied)} updates = model (tolerance {tol:g} of the update's scale)"
                      + ("; running variances clamped by a deletion left out" if clamped else ""))
