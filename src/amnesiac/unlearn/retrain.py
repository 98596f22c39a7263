"""Retraining from scratch without the deleted records: the exact reference for every other method.

It produces a new model and a new ledger, so it always writes a new run directory (``out``): the run
recipe and seed are the original's, with every record ever forgotten from the run excluded. The old
run still holds the deleted data's influence; delete it once the new one is in service.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import MethodContext, MethodOutcome, register_method


def retrain(ctx: MethodContext) -> MethodOutcome:
    """Train the run's recipe from scratch on D \\ S into ``options['out']``."""
    from ..run import TrainConfig, train_run

    out_dir = ctx.option("out")
    if out_dir is None:
        raise ConfigError("retrain builds a new model and a new ledger: give it a new run directory (out=NEWRUN)")
    old = ctx.run.config
    exclude = np.union1d(np.asarray(old.exclude_ids, dtype=np.int64), ctx.request.ids)
    if ctx.store is not None:
        exclude = np.union1d(exclude, ctx.store.forgotten_ids())
    cfg = TrainConfig.from_dict({**old.to_dict(), "exclude_ids": exclude.tolist()})
    if "epochs" in ctx.options and ctx.options["epochs"] is not None:
        cfg.epochs = int(ctx.options["epochs"])
    if cfg.record == "auto" and ctx.store is None:
        cfg.record = "none"
    result = train_run(cfg, out_dir, progress=ctx.progress, eval_every_steps=ctx.option("eval_every"))
    out = MethodOutcome(model=result.model, history=result.history)
    out.optimizer_steps = result.history[-1]["step"] if result.history else 0
    out.details["new_run"] = str(result.run.path)
    out.details["excluded_records"] = int(exclude.size)
    return out


retrain.creates_run = True  # type: ignore[attr-defined]
register_method("retrain", retrain, options={"out": "path", "epochs": "int>=1", "eval_every": "int>=1"},
                help="retrain from scratch on the data without the deleted records (the exact reference; writes --out)")
