"""Naive retraining (the paper's baseline): keep training the trained model on the data without S."""

from __future__ import annotations

from ._train import initial_point, train_method
from .base import TRAIN_OPTIONS, MethodContext, MethodOutcome, register_method


def naive(ctx: MethodContext) -> MethodOutcome:
    """Continue training on D \\ S with the run's optimizer settings (options: epochs, steps, lr, eval_every)."""
    out = MethodOutcome(model=ctx.model, history=initial_point(ctx))
    return train_method(ctx, out, ctx.retain_data, kind="naive", salt=211)


register_method("naive", naive, options=TRAIN_OPTIONS,
                help="the paper's naive retraining: keep training the trained model on the data without the deleted records")
