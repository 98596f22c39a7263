"""SCRUB: a student pushed away from its teacher on the forget set and kept close to it on the rest.

Kurmanji, Triantafillou, Hayes and Triantafillou, *Towards Unbounded Machine Unlearning*, NeurIPS 2023
(arXiv:2302.09880). The trained model is both the teacher (frozen) and the student's starting point. Each
epoch, for the first ``max_epochs`` epochs, a *max-step* pass over the forget set raises the student's
divergence from the teacher, KL(teacher || student) at temperature T; then a *min-step* pass over the retained
data lowers ``kd_weight`` * KL + ``ce_weight`` * cross-entropy. Defaults are the paper's (its code's
large-scale setting): SGD with momentum 0.9, learning rate 5e-4, weight decay 5e-4, 3 epochs of which 2 with
max-steps, T = 4, KL weight 0.001, cross-entropy weight 0.99, forget batches of 32, retained batches of 128.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import RequestError
from ..training import batches, evaluate_sets
from ._train import initial_point, method_seed, recording, single_shard
from .base import MethodContext, MethodOutcome, register_method


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the tempered softmaxes, per example, times T squared (as in distillation).

    >>> z = torch.tensor([[2.0, 0.0, -1.0]])
    >>> float(distill_kl(z, z, 4.0))
    0.0
    """
    t = temperature
    log_s = F.log_softmax(student_logits / t, dim=1)
    p_t = F.softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_s, p_t, reduction="batchmean") * t * t


def scrub(ctx: MethodContext) -> MethodOutcome:
    """Teacher-student unlearning (options: epochs, max_epochs, lr, weight_decay, temperature, kd_weight,
    ce_weight, forget_batch_size, batch_size, retain_steps (a cap per epoch), seed)."""
    forget_data, retain = ctx.forget_data, ctx.retain_data
    if len(forget_data) == 0:
        raise RequestError("SCRUB needs the deleted records' data to push the model away from, and there is none")
    epochs, max_epochs = int(ctx.option("epochs", 3)), int(ctx.option("max_epochs", 2))
    t, kd_w, ce_w = float(ctx.option("temperature", 4.0)), float(ctx.option("kd_weight", 0.001)), \
        float(ctx.option("ce_weight", 0.99))
    fbs, rbs = int(ctx.option("forget_batch_size", 32)), int(ctx.option("batch_size", 128))
    cap = ctx.option("retain_steps")
    teacher = copy.deepcopy(ctx.model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.SGD(ctx.model.parameters(), lr=float(ctx.option("lr", 5e-4)), momentum=0.9,
                                weight_decay=float(ctx.option("weight_decay", 5e-4)))
    out = MethodOutcome(model=ctx.model, history=initial_point(ctx))
    seed, steps = method_seed(ctx, 809), 0
    with recording(ctx, optimizer, "scrub", out, single_shard(ctx, forget_data, retain)) as recorder:
        for epoch in range(epochs):
            ctx.model.train()
            if epoch < max_epochs:  # max-steps: away from the teacher on the forget set
                for x, _, ids in batches(forget_data, fbs, seed=seed, epoch=epoch):
                    steps += _step(ctx.model, optimizer, recorder, ids, lambda x=x: -distill_kl(ctx.model(x), teacher(x), t))
            for k, (x, y, ids) in enumerate(batches(retain, rbs, seed=seed + 1, epoch=epoch)):
                if cap is not None and k >= int(cap):
                    break

                def keep(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                    logits = ctx.model(x)
                    return ce_w * F.cross_entropy(logits, y) + kd_w * distill_kl(logits, teacher(x), t)

                steps += _step(ctx.model, optimizer, recorder, ids, keep)
            out.history.append({"epoch": epoch + 1, "step": steps,
                                **{f"{k}_acc": v for k, v in evaluate_sets(ctx.model, ctx.eval_sets).items()}})
    out.optimizer_steps = steps
    out.details.update(temperature=t, kd_weight=kd_w, ce_weight=ce_w, max_epochs=max_epochs)
    return out


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, recorder: Any, ids: torch.Tensor, loss_of: Any) -> int:
    """One recorded optimizer step on ``loss_of()``; returns 1."""
    with recorder.batch(ids) if recorder is not None else nullcontext():
        optimizer.zero_grad(set_to_none=True)
        loss_of().backward()
        optimizer.step()
    return 1


register_method(
    "scrub", scrub,
    options={"epochs": "int>=1", "max_epochs": "int>=0", "lr": "float>0", "weight_decay": "float>=0",
             "temperature": "float>0", "kd_weight": "float>=0", "ce_weight": "float>=0",
             "forget_batch_size": "int>=1", "batch_size": "int>=1", "retain_steps": "int>=1", "seed": "int"},
    help="SCRUB (Kurmanji et al., NeurIPS 2023): a student moved away from the trained model on the deleted "
         "records and kept close to it on the rest",
)
