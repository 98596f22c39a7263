"""Sums of recorded updates, read from a ledger with every blob verified."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

from ..utils.progress import progress_bar

if TYPE_CHECKING:
    from .store import LedgerStore


def sum_updates(store: LedgerStore, steps: Iterable[int], *, progress: bool | None = None,
                workers: int = 2) -> dict[str, torch.Tensor]:
    """Σ Δ over ``steps`` in float32, every blob verified; raises before returning if any blob is bad.

    Blobs are read and checked by ``workers`` threads (file reads and checksums release the GIL) while
    the main thread adds them up; at most ``workers + 1`` blobs are in memory at once.
    """
    steps = list(steps)
    total: dict[str, torch.Tensor] = {}
    bar = progress_bar(total=len(steps), enabled=progress, desc="load updates")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = []
        it = iter(steps)
        for s in it:
            pending.append(pool.submit(store.load_update, s))
            if len(pending) >= workers:
                break
        while pending:
            update = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(store.load_update, nxt))
            for name, delta in update.items():
                if name in total:
                    total[name].add_(delta)
                else:
                    total[name] = delta.float().clone()
            del update
            bar.update(1)
    bar.close()
    return total


def norm_of(tensors: dict[str, torch.Tensor]) -> float:
    """Euclidean norm over every tensor together."""
    return float(torch.sqrt(torch.stack([(t.float() ** 2).sum() for t in tensors.values()]).sum())) if tensors else 0.0
