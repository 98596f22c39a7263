"""Receipts: the JSON record of one deletion, as every method and both workflows write it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..utils.hashing import hash_ids
from .request import DeletionRequest

if TYPE_CHECKING:
    from .base import MethodOutcome
    from .planner import Plan


def build_receipt(*, method: str, options: Mapping[str, Any], request: DeletionRequest, salt: str, new_ids: int,
             plan: Plan | None, outcome: MethodOutcome, old_hash: str, new_hash: str,
             evaluation: dict[str, dict[str, float]], timings: dict[str, float], destroyed: dict[str, Any],
             kept_for_research: bool, **extra: Any) -> dict[str, Any]:
    """The receipt of one deletion, as every method reports it (raw ids never appear, only salted hashes)."""
    digest, per_id = hash_ids(request.ids.tolist(), salt)
    return {
        "kind": "forget",
        "receipt_version": 1,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "amnesiac_version": __version__,
        "method": method,
        "options": dict(options),
        "request": request.describe(),
        "ids_digest": digest,
        "ids_hashed": per_id,
        "new_ids": new_ids,
        "plan": plan.as_dict(with_steps=False) if plan is not None else None,
        "steps_reverted": outcome.steps_reverted,
        "n_steps_reverted": len(outcome.steps_reverted),
        "recorded_steps": [outcome.recorded_steps[0], outcome.recorded_steps[-1]] if outcome.recorded_steps else [],
        "optimizer_steps": outcome.optimizer_steps,
        "model_hash_before": old_hash,
        "model_hash_after": new_hash,
        "destroyed": destroyed,
        "kept_for_research": kept_for_research,
        "evaluation": evaluation,
        "history": outcome.history,
        "details": outcome.details,
        "timings_s": timings,
        **extra,
    }
