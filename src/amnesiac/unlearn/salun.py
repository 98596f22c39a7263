"""SalUn: random-label fine-tuning confined to the weights salient for the forget set.

Fan, Liu, Zhang, Wei, Wong and Liu, *SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency
in Both Image Classification and Generation*, ICLR 2024 (arXiv:2310.12508). First a weight-saliency mask:
the magnitude of the gradient of the forget set's loss, summed over the forget set with the model in eval
mode, and the ``saliency`` share of all weights with the largest magnitude (taken over the whole model at
once). Then, each epoch, a pass over the forget set with uniformly random labels and a pass over the retained
data with their own, updating only the salient weights (the others never move: weight decay joins the
gradient before the mask). Defaults are the paper's for random-data forgetting with ResNet-18: SGD with momentum 0.9
and weight decay 5e-4, learning rate 0.013, 10 epochs, a mask of half the weights. Buffers (BatchNorm
statistics) move as in any training.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from torch.nn import functional as F

from ..data.base import ArrayDataset
from ..errors import RequestError
from ..training import batches, evaluate_sets
from ._train import initial_point, method_seed, recording, single_shard
from .base import MethodContext, MethodOutcome, register_method


def saliency_mask(model: nn.Module, forget: ArrayDataset, share: float, *, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Per trainable parameter, a boolean mask of the ``share`` of all weights whose forget-loss gradient,
    summed over ``forget``, is largest in magnitude (exactly ``round(share * total)`` weights).

    >>> from amnesiac.data import load_dataset
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    >>> mask = saliency_mask(net, load_dataset("digits").train.subset(range(20)), 0.25)
    >>> sum(int(m.sum()) for m in mask.values()), sum(m.numel() for m in mask.values())
    (162, 650)
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for x, y, _ in batches(forget, batch_size, shuffle=False):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, reduction="sum").backward()
            for n, p in params.items():
                if p.grad is not None:
                    grads[n] += p.grad
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.topk(flat, int(round(share * flat.numel())), sorted=False).indices] = True
    out, pos = {}, 0
    for n, g in grads.items():
        out[n] = keep[pos : pos + g.numel()].view(g.shape).to(g.device)
        pos += g.numel()
    return out


def salun(ctx: MethodContext) -> MethodOutcome:
    """Saliency-masked random labelling (options: epochs, lr, weight_decay, saliency, batch_size, retain_steps
    (a cap per epoch), seed)."""
    forget_data, retain = ctx.forget_data, ctx.retain_data
    if len(forget_data) == 0:
        raise RequestError("SalUn needs the deleted records' data (its saliency comes from them), and there is none")
    info = ctx.run.bundle().info
    epochs, share = int(ctx.option("epochs", 10)), float(ctx.option("saliency", 0.5))
    if not 0 < share <= 1:
        raise RequestError(f"saliency is the share of weights SalUn may change, from 0 (excluded) to 1; got {share}")
    bs, cap = int(ctx.option("batch_size", ctx.run.config.batch_size)), ctx.option("retain_steps")
    mask = saliency_mask(ctx.model, forget_data, share)
    params = dict(ctx.model.named_parameters())
    decay = float(ctx.option("weight_decay", 5e-4))
    # weight decay is added to the gradient before the mask, so weights outside it never move (their momentum
    # stays zero): the step itself leaves them where they started
    optimizer = torch.optim.SGD(ctx.model.parameters(), lr=float(ctx.option("lr", 0.013)), momentum=0.9)
    out = MethodOutcome(model=ctx.model, history=initial_point(ctx))
    seed, steps = method_seed(ctx, 911), 0
    g = torch.Generator().manual_seed(seed)
    with recording(ctx, optimizer, "salun", out, single_shard(ctx, forget_data, retain)) as recorder:
        for epoch in range(epochs):
            ctx.model.train()
            for x, _, ids in batches(forget_data, bs, seed=seed, epoch=epoch):
                y = torch.randint(0, info.num_classes, (len(ids),), generator=g)
                steps += _masked_step(ctx.model, optimizer, recorder, ids, x, y, mask, decay, params)
            for k, (x, y, ids) in enumerate(batches(retain, bs, seed=seed + 1, epoch=epoch)):
                if cap is not None and k >= int(cap):
                    break
                steps += _masked_step(ctx.model, optimizer, recorder, ids, x, y, mask, decay, params)
            out.history.append({"epoch": epoch + 1, "step": steps,
                                **{f"{k}_acc": v for k, v in evaluate_sets(ctx.model, ctx.eval_sets).items()}})
    out.optimizer_steps = steps
    out.details.update(saliency=share, salient_weights=int(sum(int(m.sum()) for m in mask.values())))
    return out


def _masked_step(model: nn.Module, optimizer: torch.optim.Optimizer, recorder: object, ids: torch.Tensor,
                 x: torch.Tensor, y: torch.Tensor, mask: dict[str, torch.Tensor], decay: float,
                 params: dict[str, nn.Parameter]) -> int:
    """One recorded step that changes only the salient weights; returns 1."""
    with recorder.batch(ids) if recorder is not None else nullcontext():  # type: ignore[attr-defined]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y.to(x.device)).backward()
        with torch.no_grad():
            for n, m in mask.items():
                grad = params[n].grad
                if grad is not None:
                    grad.add_(params[n], alpha=decay).mul_(m)
        optimizer.step()
    return 1


register_method(
    "salun", salun,
    options={"epochs": "int>=1", "lr": "float>0", "weight_decay": "float>=0", "saliency": "float>0",
             "batch_size": "int>=1", "retain_steps": "int>=1", "seed": "int"},
    help="SalUn (Fan et al., ICLR 2024): random-label fine-tuning of only the weights most salient for the "
         "deleted records",
)
