"""Shared training step for the methods that train: the run's loop, recorded when the run has a ledger."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ..data.base import ArrayDataset
from ..data.shards import ShardMap
from ..ledger import Recorder
from ..training import evaluate_sets, fit, make_optimizer
from .base import MethodContext, MethodOutcome


def method_shards(ctx: MethodContext, data: ArrayDataset) -> ShardMap | None:
    """With a shard ledger, the shards a method's own training is batched and recorded under (None otherwise).

    A record keeps its shard while that shard's sum stands. The records left in a shard this request
    subtracts (or an earlier one did, or whose sum was destroyed) form a new shard each, numbered after the
    ledger's last, as do records no row holds yet; so the method's updates land in sums that a later
    request touching those records subtracts.
    """
    store = ctx.store
    if store is None or store.kind != "shards":
        return None
    reverting = set(ctx.plan.to_revert) if ctx.plan is not None else set()
    wanted = np.unique(data.ids.numpy())
    rows = list(store.iter_steps())
    nxt = max((r.step for r in rows), default=0) + 1
    if not rows:
        return ShardMap(wanted, np.full(wanted.size, nxt, dtype=np.int64))
    standing = np.array([r.state == "applied" and r.blob is not None and r.step not in reverting for r in rows])
    sizes = np.array([r.ids.size for r in rows])
    ids = np.concatenate([r.ids for r in rows]).astype(np.int64)
    row_of = np.repeat(np.arange(len(rows)), sizes)
    step_of = np.repeat(np.array([r.step for r in rows], dtype=np.int64), sizes)
    sel = np.isin(ids, wanted)
    # a record keeps the first standing shard that holds it
    keep_mask = sel & standing[row_of]
    kept, first = np.unique(ids[keep_mask], return_index=True)
    kept_shard = step_of[keep_mask][first]
    # the rest of each subtracted (or destroyed) shard: a new shard per such row, in row order
    move_mask = sel & ~standing[row_of] & ~np.isin(ids, kept)
    moved, first_m = np.unique(ids[move_mask], return_index=True)
    moved_rows = row_of[move_mask][first_m]
    order = np.unique(moved_rows)
    moved_shard = nxt + np.searchsorted(order, moved_rows)
    nxt += order.size
    unseen = np.setdiff1d(wanted, np.concatenate([kept, moved]))  # no row holds them yet: one more shard
    keys = np.concatenate([kept, moved, unseen])
    return ShardMap(keys, np.concatenate([kept_shard, moved_shard, np.full(unseen.size, nxt, dtype=np.int64)]))


def ledger_recorder(ctx: MethodContext, model: torch.nn.Module, optimizer: torch.optim.Optimizer, kind: str,
                    shards: ShardMap | None = None) -> Recorder | None:
    """A recorder writing into the run's ledger with the run's policy, or None without a ledger (a shard
    ledger needs the ``shards`` of :func:`method_shards`)."""
    store = ctx.store
    if store is None:
        return None
    if store.kind == "shards":
        return Recorder(model, optimizer, store, policy="shards", shards=shards,
                        include_buffers=bool(store.manifest.get("include_buffers", True)), kind=kind)
    cfg = ctx.run.config
    policy = (store.manifest.get("policy") or {}).get("kind", "all")
    watch = None
    if policy == "watch":
        watch = [] if cfg.watch_ids is None else list(cfg.watch_ids)
        if cfg.watch_class is not None:
            watch += ctx.run.training_data().ids_of_class(cfg.watch_class).tolist()
    return Recorder(model, optimizer, store, policy="watch" if policy == "watch" else "all", watch_ids=watch,
                    dtype=store.manifest.get("storage_dtype", "float32"),
                    include_buffers=bool(store.manifest.get("include_buffers", True)),
                    start_step=store.last_step(), kind=kind)


def method_seed(ctx: MethodContext, salt: int) -> int:
    n = len(ctx.store.events("forget")) if ctx.store is not None else 0
    return int(ctx.option("seed", ctx.run.config.seed)) + salt * (1 + n)


def train_method(ctx: MethodContext, out: MethodOutcome, data: ArrayDataset, *, kind: str, lr: float | None = None,
                 default_epochs: int = 1, salt: int = 101) -> MethodOutcome:
    """Train ``ctx.model`` on ``data`` with the run's recipe (a fresh optimizer), evaluating along the way.

    Options read: ``epochs``, ``steps`` (a cap on optimizer steps), ``lr``, ``eval_every`` (evaluate every
    N steps, for the fine-grained curves of the paper's figures).
    """
    cfg = ctx.run.config
    epochs = int(ctx.option("epochs", default_epochs))
    max_steps = ctx.option("steps")
    optimizer = make_optimizer(cfg.optimizer, ctx.model.parameters(), lr=float(ctx.option("lr", lr or cfg.lr)),
                               momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    shards = method_shards(ctx, data)
    recorder = ledger_recorder(ctx, ctx.model, optimizer, kind, shards)
    first = recorder.step + 1 if recorder is not None else 0
    hook = ctx.on_epoch_end
    try:
        out.history += fit(ctx.model, optimizer, data, epochs=epochs, batch_size=int(ctx.option("batch_size", cfg.batch_size)),
                           seed=method_seed(ctx, salt), recorder=recorder, eval_sets=ctx.eval_sets,
                           eval_every_steps=ctx.option("eval_every"), max_steps=int(max_steps) if max_steps else None,
                           progress=ctx.progress, desc=kind, shards=shards, topk=ctx.topk,
                           on_epoch_end=None if hook is None else (lambda e, _rec: hook(e + 1, ctx.model)))
    finally:
        if recorder is not None:
            recorder.close()
    if recorder is not None:
        close_recorder(recorder, out, first)
    else:
        out.optimizer_steps += out.history[-1]["step"] if out.history else 0
    return out


def close_recorder(recorder: Recorder, out: MethodOutcome, first: int) -> None:
    """Close a method's recorder and note in ``out`` what it recorded: the step rows written, or with a shard
    ledger the shards whose sums took the method's updates (adopted at the forget's commit)."""
    recorder.close()
    if recorder.store.kind == "shards":
        out.recorded_steps += recorder.store.shards.pending()
    else:
        out.recorded_steps += list(range(first, recorder.step + 1))
    out.optimizer_steps += recorder.step - first + 1


@contextmanager
def recording(ctx: MethodContext, optimizer: torch.optim.Optimizer, kind: str, out: MethodOutcome,
              shards: ShardMap | None = None) -> Iterator[Recorder | None]:
    """The run's recorder (None without a ledger) for a method's own loop: closed whatever happens, and on
    success what it recorded is noted in ``out`` (:func:`close_recorder`)."""
    recorder = ledger_recorder(ctx, ctx.model, optimizer, kind, shards)
    first = recorder.step + 1 if recorder is not None else 0
    try:
        yield recorder
    except BaseException:
        if recorder is not None:
            recorder.close()
        raise
    if recorder is not None:
        close_recorder(recorder, out, first)


def single_shard(ctx: MethodContext, *data: ArrayDataset) -> ShardMap | None:
    """With a shard ledger, one new shard for a method whose steps mix records of many shards (a forget batch
    beside a retained one): the method's whole update becomes one sum, which a later request touching any
    record it trained on subtracts. None for a step ledger."""
    store = ctx.store
    if store is None or store.kind != "shards":
        return None
    ids = np.unique(np.concatenate([d.ids.numpy() for d in data])) if data else np.empty(0, np.int64)
    last = max((r.step for r in store.iter_steps()), default=0)
    return ShardMap(ids, np.full(ids.size, last + 1, dtype=np.int64))


def initial_point(ctx: MethodContext) -> list[dict[str, Any]]:
    """The evaluation at epoch 0 (right after the request, before any training), for curves."""
    if not ctx.eval_sets:
        return []
    return [{"epoch": 0.0, "step": 0, **{f"{k}_acc": v for k, v in evaluate_sets(ctx.model, ctx.eval_sets).items()}}]
