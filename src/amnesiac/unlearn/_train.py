"""Shared training step for the methods that train: the run's loop, recorded when the run has a ledger."""

from __future__ import annotations

from typing import Any

import torch

from ..data.base import ArrayDataset
from ..ledger import Recorder
from ..training import evaluate_sets, fit, make_optimizer
from .base import MethodContext, MethodOutcome


def ledger_recorder(ctx: MethodContext, model: torch.nn.Module, optimizer: torch.optim.Optimizer, kind: str) -> Recorder | None:
    """A recorder writing into the run's ledger with the run's policy, or None without a ledger."""
    store = ctx.store
    if store is None:
        return None
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
    recorder = ledger_recorder(ctx, ctx.model, optimizer, kind)
    first = recorder.step + 1 if recorder is not None else 0
    try:
        out.history += fit(ctx.model, optimizer, data, epochs=epochs, batch_size=int(ctx.option("batch_size", cfg.batch_size)),
                           seed=method_seed(ctx, salt), recorder=recorder, eval_sets=ctx.eval_sets,
                           eval_every_steps=ctx.option("eval_every"), max_steps=int(max_steps) if max_steps else None,
                           progress=ctx.progress, desc=kind)
    finally:
        if recorder is not None:
            recorder.close()
    if recorder is not None:
        out.recorded_steps += list(range(first, recorder.step + 1))
        out.optimizer_steps += recorder.step - first + 1
    else:
        out.optimizer_steps += out.history[-1]["step"] if out.history else 0
    return out


def initial_point(ctx: MethodContext) -> list[dict[str, Any]]:
    """The evaluation at epoch 0 (right after the request, before any training), for curves."""
    if not ctx.eval_sets:
        return []
    return [{"epoch": 0.0, "step": 0, **{f"{k}_acc": v for k, v in evaluate_sets(ctx.model, ctx.eval_sets).items()}}]
