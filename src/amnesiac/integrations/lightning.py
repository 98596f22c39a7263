"""Record a ledger while PyTorch Lightning trains, then forget with :func:`amnesiac.forget_records`.

The callback opens a :class:`~amnesiac.ledger.Recorder` on the trainer's optimizer when training starts,
declares each training batch's record ids before Lightning runs the step, flushes the ledger at every
epoch end (so a checkpoint saved there never holds a step the ledger lacks) and, when training ends,
closes the recorder and marks the trained model as the ledger's head. Your ``training_step`` and data are
unchanged, except that each batch must carry its record ids (``ids_of(batch)`` says where; by default the
third element of a ``(x, y, ids)`` batch).

Gradient accumulation works (ids of the accumulated batches go to the one step). With several optimizers,
``optimizer_index`` says which one to record. Single process only: under a distributed strategy each rank
would need its own ledger, which this callback does not set up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import lightning.pytorch as pl

from ..ledger import LedgerStore, Recorder


def _third(batch: Any) -> Any:
    return batch[2]


class AmnesiacCallback(pl.Callback):
    """Record every optimizer step of a Lightning fit into ``ledger`` (a :class:`LedgerStore` or a path to
    create one at, with the model's weights at the start of ``fit`` as its initial state).

    Args:
        ledger: an open store, or the directory to create it in.
        ids_of: how to get the record ids from a training batch.
        recorder_options: passed on to :class:`Recorder` (``policy``, ``watch_ids``, ``dtype``, ...).
        optimizer_index: which of the trainer's optimizers to record.
    """

    def __init__(self, ledger: LedgerStore | str | os.PathLike[str], *, ids_of: Callable[[Any], Any] = _third,
                 recorder_options: dict[str, Any] | None = None, optimizer_index: int = 0) -> None:
        super().__init__()
        self.ledger = ledger
        self.ids_of = ids_of
        self.recorder_options = dict(recorder_options or {})
        self.optimizer_index = optimizer_index
        self.store: LedgerStore | None = ledger if isinstance(ledger, LedgerStore) else None
        self.recorder: Recorder | None = None
        self._block: AbstractContextManager[Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.store is None:
            assert not isinstance(self.ledger, LedgerStore)  # a store given at construction is self.store
            self.store = LedgerStore.create(self.ledger, initial=pl_module.state_dict(),
                                            manifest={"storage_dtype": self.recorder_options.get("dtype", "float32")})
        optimizer = trainer.optimizers[self.optimizer_index]
        optimizer = getattr(optimizer, "optimizer", optimizer)  # Lightning may wrap it
        self.recorder = Recorder(pl_module, optimizer, self.store, **self.recorder_options)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.recorder is not None:
            self.recorder.set_epoch(trainer.current_epoch)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.recorder is not None:
            self._block = self.recorder.batch(self.ids_of(batch))
            self._block.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._leave_block()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.recorder is not None:
            self.recorder.flush()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._leave_block()
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        if self.store is not None:
            self.store.mark_head(pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._leave_block()
        if self.recorder is not None:  # what was recorded stays; the head is not moved to a half-trained model
            self.recorder.close()
            self.recorder = None

    def _leave_block(self) -> None:
        if self._block is not None:
            block, self._block = self._block, None
            block.__exit__(None, None, None)
