"""Planning a deletion before anything changes: which steps, what share, whether amnesiac can serve it.

The recommendation follows the paper: undoing the updates of a small share of batches (about 1%)
costs little accuracy, so amnesiac alone is enough; a larger share needs a repair fine-tune; a very
large share, or steps whose updates were never stored, call for another method. The thresholds are
:class:`Thresholds` fields and can be changed per call (``--max-share``, ``--repair-share`` on the CLI).

>>> recommend(share=0.004, missing=0, thresholds=Thresholds())[0]
'amnesiac'
>>> recommend(share=0.05, missing=0, thresholds=Thresholds())[0]
'amnesiac+repair'
>>> recommend(share=0.3, missing=0, thresholds=Thresholds(), whole_class=True)[0]
'relabel'
>>> recommend(share=0.001, missing=2, thresholds=Thresholds())[0]
'retrain'

Small requests add up: a stream of them, each under 1%, would undo any share of the model without a word.
So the share undone by earlier amnesiac deletions that no repair followed counts too:

>>> recommend(share=0.004, missing=0, thresholds=Thresholds(), unrepaired=0.008)[0]
'amnesiac+repair'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import Thresholds
from ..errors import LedgerError, ModelMismatchError, PlanRefusedError
from ..ledger import LedgerStore
from ..ledger.sums import norm_of, sum_updates  # noqa: F401  (re-exported)


def recommend(*, share: float, missing: int, thresholds: Thresholds, whole_class: bool = False,
              nothing_to_do: bool = False, unit: str = "training steps", unrepaired: float = 0.0) -> tuple[str, str]:
    """The method to use and why, from the share of steps (``unit``: of a shard ledger's shards) touched and
    the count of missing updates."""
    if nothing_to_do:
        return "nothing", "every step holding these records has already been reverted"
    if missing:
        return "retrain", (f"{missing} affected step(s) have no stored update, so amnesiac cannot undo them; use "
                           f"retrain ({ALTERNATIVES['retrain']})")
    pct = f"{100 * share:.2f}% of {unit}"
    if share > thresholds.repair_max_share:
        other = "relabel" if whole_class else "retrain"
        return other, (f"the request touches {pct} (> {100 * thresholds.repair_max_share:g}%): undoing that much "
                       f"would wreck the model; use {other} ({ALTERNATIVES[other]})")
    total = share + unrepaired
    if unrepaired > 0:  # small requests add up: a repair mends what they undid together
        pct += (f", and earlier deletions undid {100 * unrepaired:.2f}% with no repair since: "
                f"{100 * total:.2f}% in all")
    if total <= thresholds.amnesiac_max_share:
        return "amnesiac", (f"the request touches {pct} (<= {100 * thresholds.amnesiac_max_share:g}%): undo them; "
                            "that costs little accuracy")
    return "amnesiac+repair", (f"the request touches {pct} (> {100 * thresholds.amnesiac_max_share:g}%, this request "
                               f"<= {100 * thresholds.repair_max_share:g}%): undo them, then repair with a short "
                               "fine-tune on the retained data")


ALTERNATIVES = {"retrain": "retrain from scratch without the records: exact, at the cost of one training",
                "relabel": "train on with the class relabelled at random: the paper's cheaper way to forget a class"}
AMNESIAC_SERVES = ("amnesiac", "amnesiac+repair", "nothing")


def refuse_unless_forced(plan: Plan, *, force: bool, api: str = "forget") -> None:
    """Amnesiac unlearning only where the planner recommends it: otherwise raise
    :class:`~amnesiac.errors.PlanRefusedError` (nothing changes) unless ``force``.

    The refusal's advice names what the caller can use: ``api="forget"`` (the run-directory workflow, whose
    ``method=`` runs the alternative; the CLI maps it to ``--method`` and ``--force``) or
    ``api="forget_records"`` (your own loop: the library cannot retrain a model it did not train, so the
    advice is ``force=True``, retraining in your loop, or recording so that requests stay small)."""
    if force or plan.recommendation in AMNESIAC_SERVES or plan.missing:
        return  # missing updates: the subtraction itself refuses, naming the steps, and force cannot help
    head = f"the planner recommends {plan.recommendation}, not amnesiac: {plan.reason}. Nothing was changed."
    if api == "forget_records":
        raise PlanRefusedError(
            f"{head} Choices: force=True subtracts the updates anyway (then repair in your loop with a "
            "Recorder(kind='repair') and mark_head); or retrain your model without these records in your own "
            "loop. A request touches about (records x batch size / training records) of the steps, whatever the "
            "epochs: smaller batches and more data keep requests small, and subject-aligned shards "
            "(make_shards(subjects=...) and Recorder(policy='shards')) put each data subject's records in one shard, so a "
            "subject costs one shard. amnesiac.plan_deletion(ledger, ids) shows a plan without changing anything "
            "(README: 'Keeping deletions cheap')")
    raise PlanRefusedError(f"{head} Use method={plan.recommendation!r}, or force=True to subtract the updates anyway")


@dataclass(frozen=True)
class Plan:
    """What a request would do to a run, computed before any change."""

    request_ids: int
    total_steps: int
    affected_steps: list[int]
    to_revert: list[int]
    already_reverted: list[int]
    missing: list[int]
    share: float
    recommendation: str
    reason: str
    thresholds: Thresholds = field(default_factory=Thresholds)
    update_norm: float | None = None
    model_norm: float | None = None
    unrepaired_share: float = 0.0  # undone by earlier amnesiac deletions with no repair since
    ledger_kind: str = "steps"  # "shards": the plan's steps are a shard ledger's shards

    @property
    def relative_norm(self) -> float | None:
        if self.update_norm is None or not self.model_norm:
            return None
        return self.update_norm / self.model_norm

    def as_dict(self, *, with_steps: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["relative_norm"] = self.relative_norm
        if not with_steps:
            for k in ("affected_steps", "to_revert", "already_reverted", "missing"):
                d[f"n_{k}"] = len(d.pop(k))
        return d


def make_plan(store: LedgerStore, ids: Iterable[int], *, thresholds: Thresholds | None = None,
              whole_class: bool = False) -> Plan:
    """Look up the steps a request touches and recommend a method (no blobs are read).

    The id -> steps table is cross-checked against every step's own row (and each row's checksum), so a
    damaged index raises :class:`~amnesiac.errors.LedgerCorruptError` instead of planning the wrong steps.
    """
    thresholds = thresholds or Thresholds()
    ids = list(ids)
    affected = store.steps_for_ids(ids, cross_check=True)
    to_revert, already, missing = [], [], []
    recs = store.index.steps_info(affected)
    for s in affected:
        r = recs[s]
        if r.state == "reverted":
            already.append(s)
        elif not r.recorded or r.blob is None:
            missing.append(s)
        else:
            to_revert.append(s)
    total = store.index.count_steps()
    share = len(affected) / total if total else 0.0
    unrepaired = unrepaired_steps(store) / total if total else 0.0
    rec, why = recommend(share=share, missing=len(missing), thresholds=thresholds, whole_class=whole_class,
                         nothing_to_do=not to_revert and not missing, unrepaired=unrepaired,
                         unit="the ledger's shards" if store.kind == "shards" else "training steps")
    return Plan(len(ids), total, affected, to_revert, already, missing, share, rec, why, thresholds,
                unrepaired_share=unrepaired, ledger_kind=store.kind)


def unrepaired_steps(store: LedgerStore) -> int:
    """Steps (shards) undone by amnesiac deletions since the last deletion that trained the model again (a
    repair, or a method that trains), read from the audit log."""
    debt = 0
    batches: set[str] = set()  # a service's batch writes a receipt per request: its steps count once
    for receipt in store.events("forget"):
        options = receipt.get("options") or {}
        trained = bool(receipt.get("optimizer_steps")) or bool(options.get("repair_epochs") or options.get("repair_steps"))
        batch = receipt.get("batch")
        if receipt.get("method") == "amnesiac" and not trained:
            if isinstance(batch, dict) and batch.get("id") is not None:
                if batch["id"] not in batches:
                    batches.add(batch["id"])
                    debt += int(batch.get("n_steps_reverted") or 0)
            else:
                debt += int(receipt.get("n_steps_reverted") or 0)
        elif trained or receipt.get("method") != "amnesiac":
            debt = 0
    return debt


def check_head(store: LedgerStore, current_hash: str, *, model_name: str, remedy: str) -> None:
    """A deletion applies only to the ledger's head model: ``current_hash`` (of the model called
    ``model_name`` in the message) must be the head the ledger committed, or the stored updates no longer
    apply to it. ``remedy`` says what the caller can do. The one head check of both deletion paths."""
    head = store.index.get_meta("head_hash")
    if head is None:
        raise LedgerError(f"the ledger at {store.path} names no model yet; after training call "
                          "ledger.mark_head(model) so deletions apply to that model only")
    if current_hash != head:
        raise ModelMismatchError(f"{model_name} (hash {current_hash[:16]}) is not the model the ledger describes "
                                 f"(head {head[:16]}); its stored updates no longer apply to it. {remedy}")
