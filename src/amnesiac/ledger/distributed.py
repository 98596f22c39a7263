"""Recording one ledger from a DistributedDataParallel run: every rank declares its ids, rank 0 writes.

Under DDP every rank runs the same optimizer step on its own slice of the global batch, and the gradients
are all-reduced before the step, so after it the parameters are the same on every rank. The ledger then
needs each step once: the update (identical everywhere, taken on rank 0) and the ids of the whole global
batch, gathered from all ranks as each micro-batch opens (one ``all_gather_object`` per ``batch()`` block,
on every rank, in the same order). Rank 0 holds the :class:`~amnesiac.ledger.Recorder` and the store; the other ranks hold no
file and write nothing. A ledger written this way means what a single-process one means: forget, plan,
verify, receipts and the attacks read it unchanged.

In your own script launched with ``torchrun`` (``examples/ddp_own_loop.py``)::

    store = LedgerStore.create(path, ...) if dist.get_rank() == 0 else None
    recorder = DistributedRecorder(ddp_model.module, optimizer, store)   # on every rank
    for x, y, ids in loader:                                            # each rank: its own slice
        with recorder.batch(ids):
            loss_fn(ddp_model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
    recorder.close()                                                    # flushes on rank 0, then a barrier

Buffers (BatchNorm statistics) are taken from rank 0, whose copies DDP broadcasts to the others at each
forward pass; a step's stored update is rank 0's change of them, attributed to the whole global batch.
Sharded training (FSDP) would extend this: each rank records the update of its own parameter shard into its
own blob of the step (the index written once, by rank 0, with the global ids), and a deletion subtracts each
rank's shard from the same rank's parameters; that is not built.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, RecorderError
from ..utils.ids import as_id_array
from .recorder import Recorder
from .store import LedgerStore


class DistributedRecorder:
    """A :class:`Recorder` for a ``torch.distributed`` run: construct it on every rank with the same arguments
    (``store`` on rank 0, ``None`` elsewhere); ``recorder_options`` (policy, shards, dtype, ...) go to rank 0's
    Recorder.

    Each ``batch(ids)`` block gathers the ids of every rank's block (a collective: every rank opens one block per
    micro-batch, as a DDP loop does), so rank 0's Recorder sees the global batch before the forward pass and
    applies its rules to it unchanged: accumulation, the watch-list, shard visits.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, store: LedgerStore | None, *,
                 group: Any = None, **recorder_options: Any) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise ConfigError("DistributedRecorder needs torch.distributed initialised (init_process_group) first")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        if (self.rank == 0) != (store is not None):
            raise ConfigError(f"rank {self.rank}: give the ledger store on rank 0 and None on the other ranks "
                              "(one process writes the ledger)")
        self.inner = Recorder(model, optimizer, store, **recorder_options) if store is not None else None
        self._closed = False

    @property
    def store(self) -> LedgerStore | None:
        return self.inner.store if self.inner is not None else None

    @property
    def step(self) -> int:
        """The last step written (rank 0); -1 on the other ranks, which write nothing."""
        return self.inner.step if self.inner is not None else -1

    def set_epoch(self, epoch: int) -> None:
        if self.inner is not None:
            self.inner.set_epoch(epoch)

    @contextmanager
    def batch(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> Iterator[DistributedRecorder]:
        """This rank's ids for the coming step (an empty slice is allowed: a short last global batch)."""
        arr = as_id_array(ids, "recorder.batch(ids)", error=RecorderError)
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, arr.tolist(), group=self.group)
        everything = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
        if everything.size == 0:
            raise RecorderError("a batch with no sample ids on any rank; every step must name the samples it used")
        if self.inner is None:
            yield self
            return
        with self.inner.batch(everything):
            yield self

    def flush(self) -> None:
        """Rank 0 makes every step so far durable; every rank waits for it (a barrier)."""
        try:
            if self.inner is not None:
                self.inner.flush()
        finally:
            dist.barrier(group=self.group)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.inner is not None:
                self.inner.close()
        finally:
            dist.barrier(group=self.group)

    def __enter__(self) -> DistributedRecorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
