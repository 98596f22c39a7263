"""Record a Hugging Face ``Trainer`` run into a ledger, then forget with :func:`amnesiac.forget_records`.

Your model, loss and training arguments stay as they are. Each training example carries its record id in one
more column (``amnesiac_id`` by default); the callback takes that column out of every batch just before the
model's forward (a forward pre-hook on the trained model, removed when training ends), so the model never sees
it, and declares the ids to a :class:`~amnesiac.ledger.Recorder` on the Trainer's optimizer. Gradient
accumulation works (the micro-batches' ids go to their one optimizer step), as do gradient clipping and mixed
precision's skipped steps (the Recorder's rules). With PEFT/LoRA only the adapter trains, so only the adapter's
update is stored per step: a fraction of the model. Such a ledger's head hash covers the adapter alone, and a
sampled fingerprint of the frozen base, taken once, makes a deletion refuse the adapter on another base
(:mod:`amnesiac.ledger.scope`).

    from amnesiac.integrations.transformers import AmnesiacTrainerCallback
    args = TrainingArguments(..., remove_unused_columns=False)   # the id column must reach the batch
    trainer = Trainer(model, args, train_dataset=data, callbacks=[AmnesiacTrainerCallback("ledger/")])
    trainer.train()                       # the ledger holds every step; its head is the trained model
    forget_records(trainer.model, "ledger/", ids)

Before a checkpoint is saved the ledger is flushed, so no saved model holds a step the ledger lacks. Not
supported yet (refused with a message): resuming from a checkpoint into an existing ledger, and several
processes (each rank would need its own ledger).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import TrainerCallback

from ..errors import ConfigError
from ..ledger import LedgerStore, Recorder, head_scope, tracked_state

ID_COLUMN = "amnesiac_id"


class AmnesiacTrainerCallback(TrainerCallback):
    """Record every optimizer step of ``Trainer.train()`` into ``ledger`` (an open store, or a directory to
    create one in with the trainable state at the start of training as its initial state).

    Args:
        ledger: a :class:`LedgerStore` or the directory to create it in (it must not hold a ledger yet).
        id_column: the batch key holding each example's record id (removed before the model's forward).
        recorder_options: passed on to :class:`Recorder` (``policy``, ``dtype``, ``shards``, ...).
    """

    def __init__(self, ledger: LedgerStore | str | os.PathLike[str], *, id_column: str = ID_COLUMN,
                 recorder_options: dict[str, Any] | None = None) -> None:
        self.ledger = ledger
        self.id_column = id_column
        self.recorder_options = dict(recorder_options or {})
        self.store: LedgerStore | None = ledger if isinstance(ledger, LedgerStore) else None
        self.recorder: Recorder | None = None
        self._hook: Any = None
        self._model: torch.nn.Module | None = None

    # ------------------------------------------------------------------ the Trainer's events
    def on_train_begin(self, args: Any, state: Any, control: Any, *, model: torch.nn.Module | None = None,
                       optimizer: Any = None, **kwargs: Any) -> None:
        if model is None or optimizer is None:
            raise ConfigError("the Trainer gave the callback no model or optimizer at on_train_begin")
        if args.remove_unused_columns:
            raise ConfigError(f"set TrainingArguments(remove_unused_columns=False): the {self.id_column!r} column "
                              "must reach the batch, where amnesiac takes it out before the model's forward")
        if getattr(args, "world_size", 1) > 1:
            raise ConfigError("recording a Trainer run on several processes is not supported yet: train on one")
        if state.global_step > 0:
            raise ConfigError("resuming a Trainer run into a ledger is not supported yet; record from the start")
        if self.store is None:
            assert not isinstance(self.ledger, LedgerStore)
            initial = {k: v.detach().clone() for k, v in tracked_state(model).items()}
            self.store = LedgerStore.create(self.ledger, initial=initial, manifest={
                "storage_dtype": self.recorder_options.get("dtype", "float32"), "recorded_by": "transformers.Trainer",
                "include_buffers": bool(self.recorder_options.get("include_buffers", True)),
                **head_scope(model, include_buffers=bool(self.recorder_options.get("include_buffers", True)))})
        self.recorder = Recorder(model, getattr(optimizer, "optimizer", optimizer), self.store, **self.recorder_options)
        self._model = model
        self._hook = model.register_forward_pre_hook(self._take_ids, with_kwargs=True)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None:
            self.recorder.set_epoch(int(state.epoch or 0))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None and control.should_save:
            self.recorder.flush()  # the checkpoint saved next never holds a step the ledger lacks

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None:
            self.recorder.flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = self._model
        self._detach()
        if self.store is not None and model is not None:
            self.store.mark_head(model)

    # ------------------------------------------------------------------ the forward pre-hook
    def _take_ids(self, module: torch.nn.Module, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.id_column not in kwargs:
            if module.training:
                raise ConfigError(f"a training batch has no {self.id_column!r} column: give every example its "
                                  "record id there (the model never sees it)")
            return args, kwargs
        ids = kwargs.pop(self.id_column)
        if module.training and self.recorder is not None:
            with self.recorder.batch(ids):  # declares the ids for the coming optimizer step
                pass
        return args, kwargs

    def _detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            recorder.close()
