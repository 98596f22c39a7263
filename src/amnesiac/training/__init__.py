"""One seeded training loop, batch iteration with sample ids, and evaluation.

>>> import torch
>>> from amnesiac.data import load_dataset
>>> from amnesiac.models import build_model
>>> from amnesiac.training import fit, evaluate, make_optimizer
>>> bundle = load_dataset("digits")
>>> torch.manual_seed(0) and None
>>> net = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8)
>>> opt = make_optimizer("adam", net.parameters(), lr=1e-3)
>>> history = fit(net, opt, bundle.train, epochs=1, batch_size=64, seed=0, progress=False)
>>> history[-1]["epoch"], history[-1]["step"]
(1, 23)
>>> 0.0 <= evaluate(net, bundle.test)["accuracy"] <= 1.0
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.base import ArrayDataset
from ..data.shards import ShardMap, num_shard_batches, shard_batch_order
from ..errors import ConfigError
from ..utils import progress_bar

__all__ = ["OPTIMIZERS", "batches", "evaluate", "evaluate_all", "evaluate_sets", "fit", "model_device", "resolve_device", "make_optimizer", "num_batches", "predict"]

from ..names import OPTIMIZERS


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], *, lr: float = 1e-3, momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Build ``adam`` (the paper's choice), ``adamw`` or ``sgd`` (with momentum and weight decay)."""
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"learning rate must be a positive number, got {lr!r}")
    if weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    from ..errors import UnknownNameError, did_you_mean

    raise UnknownNameError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}." + did_you_mean(name, OPTIMIZERS))


def num_batches(n: int, batch_size: int) -> int:
    """Optimizer steps per epoch for ``n`` records (the last, smaller batch is kept)."""
    return (n + batch_size - 1) // batch_size


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return g


def batches(
    data: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
    shards: ShardMap | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y, ids)`` batches; the order depends only on ``(seed, epoch)``, so a resumed run sees
    the same batches as an uninterrupted one. With ``shards`` every batch comes from one shard (see
    :mod:`amnesiac.data.shards`); ``data`` must then be an :class:`ArrayDataset`."""
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if shards is not None:
        for positions in shard_batch_order(shards, _ids_of(data), batch_size=batch_size, seed=seed, epoch=epoch):
            yield data[torch.as_tensor(positions)]
        return
    n = len(data)  # type: ignore[arg-type]
    order = torch.randperm(n, generator=_epoch_generator(seed, epoch)) if shuffle else torch.arange(n)
    if isinstance(data, ArrayDataset):
        for start in range(0, n, batch_size):
            yield data[order[start : start + batch_size]]
        return
    loader = DataLoader(data, batch_size=batch_size, sampler=order.tolist(), num_workers=0)
    for item in loader:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ConfigError("training data must yield (x, y, sample_id); wrap your dataset in amnesiac.data.WithIds")
        yield item[0], item[1], item[2]


def _ids_of(data: Dataset) -> Any:
    if not isinstance(data, ArrayDataset):
        raise ConfigError("shard-confined batching needs an ArrayDataset (its ids say which shard each record is in); "
                          "in your own loop use amnesiac.data.ShardBatchSampler with your DataLoader")
    return data.ids.numpy()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def resolve_device(name: str | None) -> torch.device:
    """``None``/``"cpu"`` -> CPU; ``"auto"`` -> CUDA when available; anything else as torch reads it."""
    if name in (None, "cpu"):
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but this torch build sees no CUDA device")
    return dev


@torch.no_grad()
def predict(model: nn.Module, data: Dataset, *, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, labels and ids of every record, in dataset order, with the model in eval mode."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    logits, labels, ids = [], [], []
    try:
        for x, y, i in batches(data, batch_size, shuffle=False):
            logits.append(model(x.to(device)).float().cpu())
            labels.append(torch.as_tensor(y))
            ids.append(torch.as_tensor(i))
    finally:
        model.train(was_training)
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels), torch.cat(ids)


def evaluate(model: nn.Module, data: Dataset, *, batch_size: int = 512, topk: Sequence[int] = (1,)) -> dict[str, float]:
    """Accuracy (top-1, and ``top{k}`` for each other k), mean cross-entropy and count on ``data``."""
    logits, labels, _ = predict(model, data, batch_size=batch_size)
    n = int(labels.numel())
    out: dict[str, float] = {"n": n}
    if n == 0:
        out.update(accuracy=float("nan"), loss=float("nan"))
        return out
    out["loss"] = float(nn.functional.cross_entropy(logits, labels))
    for k in sorted(set(topk) | {1}):
        k_eff = min(k, logits.shape[1])
        hit = (logits.topk(k_eff, dim=1).indices == labels[:, None]).any(dim=1).float().mean().item()
        out["accuracy" if k == 1 else f"top{k}"] = float(hit)
    return out


EvalSets = Mapping[str, Dataset]


def evaluate_sets(model: nn.Module, sets: Mapping[str, Dataset]) -> dict[str, float]:
    """Top-1 accuracy on each named set (NaN for an empty one)."""
    return {name: evaluate(model, ds)["accuracy"] for name, ds in sets.items()}


def evaluate_all(model: nn.Module, eval_sets: EvalSets | None, topk: Sequence[int] = (1,)) -> dict[str, float]:
    """``{name}_acc`` (and ``{name}_top{k}``) for every named evaluation set."""
    out: dict[str, float] = {}
    for name, ds in (eval_sets or {}).items():
        res = evaluate(model, ds, topk=topk)
        out[f"{name}_acc"] = res["accuracy"]
        for k in topk:
            if k != 1:
                out[f"{name}_top{k}"] = res[f"top{k}"]
    return out


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    start_epoch: int = 0,
    recorder: Any = None,
    eval_sets: EvalSets | None = None,
    eval_every_steps: int | None = None,
    topk: Sequence[int] = (1,),
    max_steps: int | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool | None = None,
    desc: str = "train",
    shards: ShardMap | None = None,
    local: Callable[[Any, Any, Any], tuple[Any, Any, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` for epochs ``start_epoch .. epochs-1`` and return one record per evaluation.

    Each record holds ``epoch`` (fractional within an epoch for ``eval_every_steps`` points), ``step`` (the
    global optimizer step count), ``train_loss`` (mean over the epoch so far) and ``{name}_acc`` for every
    entry of ``eval_sets``. With a ``recorder`` (see :mod:`amnesiac.ledger`) every optimizer step is
    recorded with the ids of its batch. ``on_epoch_end(epoch, record)`` runs after each full epoch (the
    run directory saves its checkpoint there). ``max_steps`` stops after that many steps in total.
    ``shards`` confines every batch to one shard (a shard ledger's batching). ``local(x, y, ids)`` takes this
    process's part of each global batch (distributed training: every rank sees the same global batches).
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs must be a non-negative integer, got {epochs!r}")
    if len(data) == 0:  # type: ignore[arg-type]
        raise ConfigError("the training data is empty; nothing to train on")
    per_epoch = (num_shard_batches(shards, _ids_of(data), batch_size) if shards is not None
                 else num_batches(len(data), batch_size))  # type: ignore[arg-type]
    step = start_epoch * per_epoch
    history: list[dict[str, Any]] = []
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(start_epoch, epochs):
        if recorder is not None:
            recorder.set_epoch(epoch)
        bar = progress_bar(total=per_epoch, enabled=progress, desc=f"{desc} epoch {epoch + 1}/{epochs}")
        step, total, count, done = _one_epoch(
            model, optimizer, _sliced(batches(data, batch_size, seed=seed, epoch=epoch, shards=shards), local),
            loss_fn, recorder, bar,
            epoch=epoch, step=step, per_epoch=per_epoch, eval_sets=eval_sets, eval_every_steps=eval_every_steps,
            topk=topk, max_steps=max_steps, history=history)
        bar.close()
        rec = {"epoch": epoch + 1 if count and done == per_epoch else epoch + done / per_epoch,
               "step": step, "train_loss": total / max(count, 1)}
        rec.update(evaluate_all(model, eval_sets, topk))
        history.append(rec)
        if on_epoch_end is not None and done == per_epoch:
            on_epoch_end(epoch, rec)
        model.train()  # evaluating, or a hook that evaluated or attacked the model, left it in eval mode
        if max_steps is not None and step >= max_steps:
            break
    return history


def _sliced(loader: Iterable[Any], local: Callable[[Any, Any, Any], tuple[Any, Any, Any]] | None) -> Iterable[Any]:
    return loader if local is None else (local(x, y, ids) for x, y, ids in loader)


def _one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable[Any], loss_fn: nn.Module,
               recorder: Any, bar: Any, *, epoch: int, step: int, per_epoch: int, eval_sets: EvalSets | None,
               eval_every_steps: int | None, topk: Sequence[int], max_steps: int | None,
               history: list[dict[str, Any]]) -> tuple[int, float, int, int]:
    """One pass over ``loader``: the global step after it, the summed loss, the records seen, the batches done."""
    device = model_device(model)
    total, count, done = 0.0, 0, 0
    for x, y, ids in loader:
        if device.type != "cpu":
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with recorder.batch(ids) if recorder is not None else nullcontext():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
        step, done = step + 1, done + 1
        total += float(loss.detach()) * len(y)  # a sync per step on GPU; cheap beside the step
        count += len(y)
        bar.update(1)
        bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        if eval_every_steps and done != per_epoch and done % eval_every_steps == 0:
            rec = {"epoch": epoch + done / per_epoch, "step": step, "train_loss": total / count}
            rec.update(evaluate_all(model, eval_sets, topk))
            model.train()
            history.append(rec)
        if max_steps is not None and step >= max_steps:
            break
    return step, total, count, done
