"""Amnesiac unlearning: subtract the stored updates of every step that saw a deleted record.

θ' = θ − Σ_{s ∈ affected} Δθ_s, over parameters and recorded buffers, summed in float32. Steps already
reverted by an earlier request are skipped, so overlapping requests never subtract a step twice.
An optional repair fine-tunes on the retained data; its steps are recorded into the same ledger, so a
later request can undo them too.
"""

from __future__ import annotations

import time

import torch

from ..errors import LedgerError, MissingUpdatesError
from ..training import evaluate_sets, fit, make_optimizer
from ._train import close_recorder, ledger_recorder, method_seed, method_shards
from .base import MethodContext, MethodOutcome, register_method
from .planner import norm_of, sum_updates


def _steps_text(steps: list[int]) -> str:
    return ", ".join(map(str, steps[:20])) + (f" ... ({len(steps)} in all)" if len(steps) > 20 else "")


def revert_updates(model: torch.nn.Module, summed: dict[str, torch.Tensor]) -> int:
    """Subtract ``summed`` (float32) from the model's state in place, casting back to each tensor's dtype.

    A running variance (BatchNorm's ``running_var``) is a statistic that must stay >= 0; undoing a large
    share of steps can drive it below 0, which makes every output NaN. Such entries are set to 0 (the layer
    then divides by sqrt(eps), as for a channel that never varied). Returns how many entries were clamped;
    with a small share of steps undone it is 0 and the subtraction is exact.
    """
    state = model.state_dict()
    unknown = sorted(set(summed) - set(state))
    if unknown:
        raise LedgerError(f"the ledger holds updates for tensors this model does not have: {', '.join(unknown[:5])}")
    clamped = 0
    with torch.no_grad():
        for name, delta in summed.items():
            t = state[name]
            t.copy_((t.float() - delta.to(t.device)).to(t.dtype))
            if name.endswith("running_var"):
                negative = t < 0
                clamped += int(negative.sum())
                t.masked_fill_(negative, 0.0)
    return clamped


def missing_updates_error(store, plan) -> MissingUpdatesError:  # noqa: ANN001
    """The refusal for a plan that touches steps whose update is not stored, naming them by number."""
    infos = store.index.steps_info(plan.missing)
    never = [s for s in plan.missing if not infos[s].recorded]
    gone = [s for s in plan.missing if infos[s].recorded]
    parts = []
    if never:
        parts.append(f"{len(never)} step(s) whose update was never stored (recording policy "
                     f"{(store.manifest.get('policy') or {}).get('kind')!r}): steps {_steps_text(never)}")
    if gone:
        parts.append(f"{len(gone)} step(s) whose stored update was destroyed by an earlier deletion that did "
                     f"not revert them: steps {_steps_text(gone)}")
    return MissingUpdatesError(
        "the request touches " + "; and ".join(parts) + ". Amnesiac unlearning cannot undo them; "
        "use method='retrain' or method='relabel'.",
        plan.missing,
    )


def undo_steps(model: torch.nn.Module, store, plan, *, progress: bool | None = None) -> dict[str, float]:  # noqa: ANN001
    """θ − Σ Δ over the plan's steps, in place: every blob verified first, summed in float32, subtracted.

    The one core of amnesiac unlearning, used by the run-directory workflow (:func:`amnesiac.unlearn.forget`)
    and by the library path for your own loop (:func:`amnesiac.forget_records`). Returns timings and the
    norm of the update removed.
    """
    if plan.missing:
        raise missing_updates_error(store, plan)
    t0 = time.perf_counter()
    summed = sum_updates(store, plan.to_revert, progress=progress)  # every blob verified first
    t1 = time.perf_counter()
    clamped = revert_updates(model, summed)
    return {"load_updates_s": t1 - t0, "revert_s": time.perf_counter() - t1, "update_norm": norm_of(summed),
            "clamped_running_var": clamped}


def subtract_plan(model: torch.nn.Module, store, plan, *, progress: bool | None = None) -> MethodOutcome:  # noqa: ANN001
    """:func:`undo_steps` as a method's outcome: the steps reverted, the update's norm and the clamped
    running variances in ``details``, the load and subtraction times in ``timings``. Both deletion paths
    build their receipts from it."""
    done = undo_steps(model, store, plan, progress=progress)
    details = {"update_norm": done.pop("update_norm"), "clamped_running_var": done.pop("clamped_running_var")}
    return MethodOutcome(model=model, steps_reverted=list(plan.to_revert), details=details, timings=done)


def amnesiac(ctx: MethodContext) -> MethodOutcome:
    """Undo the affected steps, then optionally repair (options ``repair_epochs``, ``repair_steps``)."""
    plan = ctx.plan
    store = ctx.store
    if plan is None or store is None:
        raise LedgerError("amnesiac unlearning needs the run's ledger; this run was trained with record='none'")
    out = subtract_plan(ctx.model, store, plan, progress=ctx.progress)
    repair_epochs = int(ctx.option("repair_epochs", 0))
    repair_steps = ctx.option("repair_steps")
    if repair_epochs or repair_steps:
        out.evaluation["after_revert"] = evaluate_sets(ctx.model, ctx.eval_sets)
        t2 = time.perf_counter()
        _repair(ctx, out, epochs=repair_epochs or 1, max_steps=int(repair_steps) if repair_steps else None)
        out.timings["repair_s"] = time.perf_counter() - t2
    return out


def _repair(ctx: MethodContext, out: MethodOutcome, *, epochs: int, max_steps: int | None) -> None:
    """Fine-tune on retained data with a fresh optimizer of the run's recipe, recording into the ledger."""
    cfg = ctx.run.config
    optimizer = make_optimizer(cfg.optimizer, ctx.model.parameters(), lr=float(ctx.option("repair_lr", cfg.lr)),
                               momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    shards = method_shards(ctx, ctx.retain_data)  # a shard ledger: repair batches within shards too
    recorder = ledger_recorder(ctx, ctx.model, optimizer, "repair", shards)
    assert recorder is not None  # amnesiac always has a ledger
    first = recorder.step + 1
    try:
        out.history = fit(ctx.model, optimizer, ctx.retain_data, epochs=epochs, batch_size=cfg.batch_size,
                          seed=method_seed(ctx, 7919), recorder=recorder, max_steps=max_steps,
                          eval_sets=ctx.eval_sets, progress=ctx.progress, desc="repair", shards=shards)
    finally:
        recorder.close()
    close_recorder(recorder, out, first)


register_method(
    "amnesiac",
    amnesiac,
    help="the paper's method: subtract the stored updates of every step that saw a deleted record; optional repair",
    needs_ledger=True,
    options={"repair_epochs": "int>=0", "repair_steps": "int>=0", "repair_lr": "float>0", "seed": "int"},
)
