"""Receipts: the JSON record of one deletion, as every method and both workflows write it."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..utils.hashing import commit_ids
from .request import DeletionRequest

PROOF_FORMAT = "amnesiac-proof-v1"

if TYPE_CHECKING:
    from .base import MethodOutcome
    from .planner import Plan


@dataclass(frozen=True, eq=False)
class Receipt(Mapping[str, Any]):
    """The typed record of one deletion, the same type from every workflow (the library's ``forget_records``,
    the run directory's ``forget``, every method). Its fields are what users read
    (``receipt.steps_reverted``, ``receipt.model_hash_after``); it also reads as the JSON object the audit log
    keeps (``receipt["steps_reverted"]``, ``dict(receipt)``, :meth:`as_json`), so stored receipts and new
    ones compare and serialize alike. Raw ids never appear: the receipt holds commitments to them under a fresh
    secret per request (``ids_committed``, ``ids_digest``), and the secret stays with the requester
    (:meth:`proof`), never in the ledger. The ledger adds the hash chain's fields when it stores a receipt
    (``chain``, ``ledger_rows``, ``receipt_hash``; see :mod:`amnesiac.ledger.chain`). Built by
    :func:`build_receipt` alone.
    """

    method: str
    options: dict[str, Any]
    request: dict[str, Any]
    ids_digest: str
    ids_committed: list[str]
    new_ids: int
    plan: dict[str, Any] | None
    steps_reverted: list[int]
    recorded_steps: list[int]
    optimizer_steps: int
    model_hash_before: str
    model_hash_after: str
    destroyed: dict[str, Any]
    kept_for_research: bool
    evaluation: dict[str, dict[str, float]]
    history: list[Any]
    details: dict[str, Any]
    timings_s: dict[str, float]
    time: str
    amnesiac_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)  # workflow-specific fields (workflow, source_run, ...)
    secret: str = field(default="", repr=False)  # the requester's: never stored, never in as_json()
    request_ids: tuple[int, ...] = field(default=(), repr=False)  # the ids themselves, for proof() only

    @property
    def n_steps_reverted(self) -> int:
        return len(self.steps_reverted)

    def as_json(self) -> dict[str, Any]:
        """The receipt as the audit log stores it (one flat JSON object, ``receipt_version`` 2); a copy, so
        changing it leaves the receipt as it was. It holds neither the ids nor the secret."""
        return copy.deepcopy(self._flat())

    def proof(self) -> dict[str, Any]:
        """What the requester keeps to show later that their ids are in this receipt: the ids, the secret the
        commitments were made with, and the digest that finds the receipt (``amnesiac receipts prove``). Give
        it to the requester and keep no copy beside the ledger: with it, the receipt names the ids."""
        return {"format": PROOF_FORMAT, "ids_digest": self.ids_digest, "secret": self.secret,
                "ids": list(self.request_ids), "model_hash_after": self.model_hash_after}

    def _flat(self) -> dict[str, Any]:
        return {
            "kind": "forget", "receipt_version": 2, "time": self.time, "amnesiac_version": self.amnesiac_version,
            "method": self.method, "options": self.options, "request": self.request, "ids_digest": self.ids_digest,
            "ids_committed": self.ids_committed, "ids_scheme": "sha256-commitment-v1", "new_ids": self.new_ids,
            "plan": self.plan,
            "steps_reverted": self.steps_reverted, "n_steps_reverted": self.n_steps_reverted,
            "recorded_steps": self.recorded_steps, "optimizer_steps": self.optimizer_steps,
            "model_hash_before": self.model_hash_before, "model_hash_after": self.model_hash_after,
            "destroyed": self.destroyed, "kept_for_research": self.kept_for_research, "evaluation": self.evaluation,
            "history": self.history, "details": self.details, "timings_s": self.timings_s, **self.extra,
        }

    def __getitem__(self, key: str) -> Any:
        return self._flat()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat())

    def __len__(self) -> int:
        return len(self._flat())


def build_receipt(*, method: str, options: Mapping[str, Any], request: DeletionRequest, new_ids: int,
                  plan: Plan | None, outcome: MethodOutcome, old_hash: str, new_hash: str,
                  evaluation: dict[str, dict[str, float]], timings: dict[str, float], destroyed: dict[str, Any],
                  kept_for_research: bool, secret: str | None = None, **extra: Any) -> Receipt:
    """The receipt of one deletion, as every method and both workflows report it (the one place receipts are
    made; raw ids never appear, only commitments under a fresh secret, which :meth:`Receipt.proof` returns;
    ``secret`` gives one drawn beforehand, as the deletion service does to keep it safe across a crash)."""
    ids = [int(i) for i in request.ids.tolist()]
    secret, digest, per_id = commit_ids(ids, secret)
    return Receipt(
        method=method, options=dict(options), request=request.describe(), ids_digest=digest, ids_committed=per_id,
        new_ids=new_ids, plan=plan.as_dict(with_steps=False) if plan is not None else None,
        steps_reverted=list(outcome.steps_reverted),
        recorded_steps=[outcome.recorded_steps[0], outcome.recorded_steps[-1]] if outcome.recorded_steps else [],
        optimizer_steps=outcome.optimizer_steps, model_hash_before=old_hash, model_hash_after=new_hash,
        destroyed=destroyed, kept_for_research=kept_for_research, evaluation=evaluation, history=outcome.history,
        details=outcome.details, timings_s=timings, time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra=extra, secret=secret, request_ids=tuple(sorted(set(ids))))
