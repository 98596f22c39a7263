"""Fine-tuning on the retained data with its own learning rate (a common modern baseline)."""

from __future__ import annotations

from ._train import initial_point, train_method
from .base import TRAIN_OPTIONS, MethodContext, MethodOutcome, register_method


def finetune(ctx: MethodContext) -> MethodOutcome:
    """Train on D \\ S from the trained model at ``lr`` (default: a tenth of the run's)."""
    out = MethodOutcome(model=ctx.model, history=initial_point(ctx))
    return train_method(ctx, out, ctx.retain_data, kind="finetune", lr=ctx.run.config.lr * 0.1, salt=307)


register_method("finetune", finetune, options=TRAIN_OPTIONS,
                help="fine-tune on the retained data only, with its own learning rate (default: a tenth of the run's)")
