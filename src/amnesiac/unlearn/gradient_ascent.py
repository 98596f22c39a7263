"""Gradient ascent on the forget set (NegGrad), optionally interleaved with descent on retained data (NegGrad+)."""

from __future__ import annotations

import itertools
from contextlib import nullcontext

import torch

from ..errors import RequestError
from ..training import batches, evaluate_sets, make_optimizer
from ._train import initial_point, method_seed, recording, single_shard
from .base import MethodContext, MethodOutcome, register_method


def gradient_ascent(ctx: MethodContext) -> MethodOutcome:
    """Ascend the loss on the deleted records for ``steps`` steps (default: one pass over them).

    Options: ``steps``, ``lr`` (default the run's), ``retain_weight`` (> 0 adds descent on a
    retained batch at every step: NegGrad+), ``eval_every``.
    """
    cfg = ctx.run.config
    forget_data = ctx.forget_data
    if len(forget_data) == 0:
        raise RequestError("gradient ascent needs the deleted records' data, and there is none")
    bs = int(ctx.option("batch_size", cfg.batch_size))
    steps = int(ctx.option("steps", (len(forget_data) + bs - 1) // bs))
    alpha = float(ctx.option("retain_weight", 0.0))
    optimizer = make_optimizer(cfg.optimizer, ctx.model.parameters(), lr=float(ctx.option("lr", cfg.lr)),
                               momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    seed = method_seed(ctx, 601)

    def cycle(data, salt):
        for epoch in itertools.count():
            yield from batches(data, bs, seed=seed + salt, epoch=epoch)

    fgen = cycle(forget_data, 0)
    rgen = cycle(ctx.retain_data, 1) if alpha > 0 else None
    out = MethodOutcome(model=ctx.model, history=initial_point(ctx))
    loss_fn = torch.nn.CrossEntropyLoss()
    every = ctx.option("eval_every")
    ctx.model.train()
    shards = single_shard(ctx, forget_data, *([ctx.retain_data] if alpha > 0 else []))
    with recording(ctx, optimizer, "gradient-ascent", out, shards) as recorder:
        for step in range(1, steps + 1):
            x, y, ids = next(fgen)
            all_ids = ids
            if rgen is not None:
                rx, ry, rids = next(rgen)
                all_ids = torch.cat([ids, rids])
            with recorder.batch(all_ids) if recorder is not None else nullcontext():
                optimizer.zero_grad(set_to_none=True)
                loss = -loss_fn(ctx.model(x), y)
                if rgen is not None:
                    loss = loss + alpha * loss_fn(ctx.model(rx), ry)
                loss.backward()
                optimizer.step()
            if (every and step % int(every) == 0) or step == steps:
                rec = {"epoch": step * bs / max(len(forget_data), 1), "step": step, "train_loss": float(loss.detach())}
                rec.update({f"{k}_acc": v for k, v in evaluate_sets(ctx.model, ctx.eval_sets).items()})
                ctx.model.train()
                out.history.append(rec)
    out.optimizer_steps = steps
    out.details["retain_weight"] = alpha
    return out


register_method("gradient-ascent", gradient_ascent,
                options={"steps": "int>=1", "batch_size": "int>=1", "lr": "float>0", "eval_every": "int>=1",
                         "seed": "int", "retain_weight": "float>=0"},
                help="NegGrad: ascend the loss on the deleted records; with retain_weight > 0, NegGrad+ "
                     "(interleaved descent on retained data)")
