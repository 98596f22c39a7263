"""Unlearning by random relabelling (the paper's "Unlearning"; later literature often calls it "amnesiac").

For a whole class, every example of the class gets one random *wrong* label, drawn once and fixed for
the run, and the model trains on the full modified dataset. For individual records, they are removed
and ``copies`` copies of each (default 4) are inserted with random wrong labels, then the model trains.
Inserted copies get negative sample ids (-1, -2, ...), so they are never mistaken for real records.
"""

from __future__ import annotations

import torch

from ..data.base import ArrayDataset
from ..errors import RequestError
from ._train import initial_point, method_seed, train_method
from .base import TRAIN_OPTIONS, MethodContext, MethodOutcome, register_method


def wrong_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label different from each given one.

    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.tensor([0, 1, 2, 0])
    >>> bool((wrong_labels(y, 3, g) != y).all())
    True
    """
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift) % num_classes


def relabelled_dataset(ctx: MethodContext, copies: int) -> ArrayDataset:
    info = ctx.run.bundle().info
    if info.num_classes < 2:
        raise RequestError("relabelling needs at least two classes to draw a wrong label from")
    g = torch.Generator().manual_seed(method_seed(ctx, 401))
    forget_data = ctx.forget_data
    if ctx.request.kind == "class":
        flipped = forget_data.with_labels(wrong_labels(forget_data.targets, info.num_classes, g))
        return ArrayDataset.concat([ctx.retain_data, flipped])
    if copies < 1:
        raise RequestError(f"relabel copies must be at least 1, got {copies}")
    idx = torch.arange(len(forget_data)).repeat(copies)
    fake_ids = -torch.arange(1, len(idx) + 1)
    noisy = ArrayDataset(forget_data.images[idx], wrong_labels(forget_data.targets[idx], info.num_classes, g),
                         fake_ids, max_value=forget_data.max_value, info=forget_data.info)
    return ArrayDataset.concat([ctx.retain_data, noisy])


def relabel(ctx: MethodContext) -> MethodOutcome:
    """Train on the data with the deleted records relabelled at random (options: copies, epochs, lr, eval_every)."""
    data = relabelled_dataset(ctx, int(ctx.option("copies", 4)))
    out = MethodOutcome(model=ctx.model, history=initial_point(ctx))
    out.details["training_records"] = len(data)
    return train_method(ctx, out, data, kind="relabel", salt=503)


register_method("relabel", relabel, options={**TRAIN_OPTIONS, "copies": "int>=1"},
                help="the paper's Unlearning: train with the deleted records given random wrong labels "
                     "(often mislabelled 'amnesiac' elsewhere)")
