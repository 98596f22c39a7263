"""Receipts: the JSON record of one deletion, as every method and both workflows write it."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..utils.hashing import hash_ids
from .request import DeletionRequest

if TYPE_CHECKING:
    from .base import MethodOutcome
    from .planner import Plan


@dataclass(frozen=True, eq=False)
class Receipt(Mapping[str, Any]):
    """The typed record of one deletion, the same type from every workflow (the library's ``forget_records``,
    the run directory's ``forget``, every method). Its fields are what users read
    (``receipt.steps_reverted``, ``receipt.model_hash_after``); it also reads as the JSON object the audit log
    keeps (``receipt["steps_reverted"]``, ``dict(receipt)``, :meth:`as_json`), unchanged from earlier
    versions, so stored receipts and new ones compare and serialize alike. Raw ids never appear, only salted
    hashes. Built by :func:`build_receipt` alone.
    """

    method: str
    options: dict[str, Any]
    request: dict[str, Any]
    ids_digest: str
    ids_hashed: list[str]
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

    @property
    def n_steps_reverted(self) -> int:
        return len(self.steps_reverted)

    def as_json(self) -> dict[str, Any]:
        """The receipt as the audit log stores it (one flat JSON object, ``receipt_version`` 1); a copy, so
        changing it leaves the receipt as it was."""
        return copy.deepcopy(self._flat())

    def _flat(self) -> dict[str, Any]:
        return {
            "kind": "forget", "receipt_version": 1, "time": self.time, "amnesiac_version": self.amnesiac_version,
            "method": self.method, "options": self.options, "request": self.request, "ids_digest": self.ids_digest,
            "ids_hashed": self.ids_hashed, "new_ids": self.new_ids, "plan": self.plan,
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


def build_receipt(*, method: str, options: Mapping[str, Any], request: DeletionRequest, salt: str, new_ids: int,
                  plan: Plan | None, outcome: MethodOutcome, old_hash: str, new_hash: str,
                  evaluation: dict[str, dict[str, float]], timings: dict[str, float], destroyed: dict[str, Any],
                  kept_for_research: bool, **extra: Any) -> Receipt:
    """The receipt of one deletion, as every method and both workflows report it (the one place receipts are
    made; raw ids never appear, only salted hashes)."""
    digest, per_id = hash_ids(request.ids.tolist(), salt)
    return Receipt(
        method=method, options=dict(options), request=request.describe(), ids_digest=digest, ids_hashed=per_id,
        new_ids=new_ids, plan=plan.as_dict(with_steps=False) if plan is not None else None,
        steps_reverted=list(outcome.steps_reverted),
        recorded_steps=[outcome.recorded_steps[0], outcome.recorded_steps[-1]] if outcome.recorded_steps else [],
        optimizer_steps=outcome.optimizer_steps, model_hash_before=old_hash, model_hash_after=new_hash,
        destroyed=destroyed, kept_for_research=kept_for_research, evaluation=evaluation, history=outcome.history,
        details=outcome.details, timings_s=timings, time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra=extra)
