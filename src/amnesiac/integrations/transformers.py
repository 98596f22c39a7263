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

Shard ledgers (one summed update per shard; a deletion subtracts whole shards): build a
:class:`~amnesiac.data.ShardMap` (``make_shards(..., subjects=...)`` keeps each data subject's records in one
shard), pass it as ``shards=``, and call :func:`confine_to_shards` on the Trainer so every optimizer step, its
accumulated micro-batches included, draws from one shard.

Checkpoints and resume: before the Trainer saves a checkpoint the ledger is flushed and its head committed
with the model being saved, and the checkpoint's step is noted in the ledger's log. ``trainer.train(
resume_from_checkpoint=...)`` with the same ledger directory then cuts the ledger back to that checkpoint
(a step ledger drops the steps recorded after it; a shard ledger, whose sums cannot be cut back, resumes only
from the checkpoint its head was last committed at, and refuses an older one). Several processes are refused
(each rank would need its own ledger).

A saved adapter on its own (``model.save_pretrained(dir)``: ``adapter_model.safetensors``) can be forgotten from
without loading the base: :func:`forget_saved_adapter`. Merging the adapter into its base
(``merge_and_unload``) is refused by a deletion with the reason: after a merge the adapter's updates can no longer
be told apart from the base.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from ..data.shards import ShardBatchSampler, ShardMap
from ..errors import ConfigError, LedgerError
from ..faults import point as fault_point
from ..ledger import LedgerStore, Recorder, head_scope, tracked_state
from ..ledger.scope import check_base, head_hash

ID_COLUMN = "amnesiac_id"


class AmnesiacTrainerCallback(TrainerCallback):
    """Record every optimizer step of ``Trainer.train()`` into ``ledger`` (an open store, or a directory to
    create one in with the trainable state at the start of training as its initial state).

    Args:
        ledger: a :class:`LedgerStore` or the directory to create it in (it must not hold a ledger yet).
        id_column: the batch key holding each example's record id (removed before the model's forward).
        shards: a :class:`ShardMap` of the training records: record a shard ledger (one summed update per
            shard). Confine the Trainer's batches with :func:`confine_to_shards`.
        recorder_options: passed on to :class:`Recorder` (``dtype``, ``include_buffers``, ...).
    """

    def __init__(self, ledger: LedgerStore | str | os.PathLike[str], *, id_column: str = ID_COLUMN,
                 shards: ShardMap | None = None, recorder_options: dict[str, Any] | None = None) -> None:
        options = dict(recorder_options or {})
        for key in ("policy", "shards", "start_step"):
            if key in options:
                raise ConfigError(f"recorder_options may not set {key!r}: the callback sets it (give shards= for a "
                                  "shard ledger)")
        if shards is not None and not isinstance(shards, ShardMap):
            raise ConfigError(f"shards must be a ShardMap (amnesiac.data.make_shards), got {type(shards).__name__}")
        self.ledger = ledger
        self.id_column = id_column
        self.shards = shards
        self.recorder_options = options
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
        self.store = self._open_or_create(model, int(state.global_step))
        start = self._resume_point(model, int(state.global_step)) if state.global_step > 0 else 0
        self.recorder = Recorder(model, getattr(optimizer, "optimizer", optimizer), self.store,
                                 policy="shards" if self.shards is not None else "all", shards=self.shards,
                                 start_step=start, **self.recorder_options)
        self._model = model
        self._hook = model.register_forward_pre_hook(self._take_ids, with_kwargs=True)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None:
            self.recorder.set_epoch(int(state.epoch or 0))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None and control.should_save:
            # the checkpoint saved next never holds a step the ledger lacks, and its step is noted so that a
            # resume from it knows where to cut the ledger back to
            self.recorder.flush()
            assert self.store is not None and self._model is not None
            self.store.mark_head(self._model)
            self.store.index.add_event("trainer_checkpoint", {"global_step": int(state.global_step),
                                                              "ledger_step": int(self.recorder.step)})

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None:
            self.recorder.flush()
            if self.shards is not None and self.store is not None and self._model is not None:
                self.store.mark_head(self._model)  # a shard ledger's sums are committed with its head

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = self._model
        self._detach()
        if self.store is not None and model is not None:
            self.store.mark_head(model)
        if self.store is not None and not isinstance(self.ledger, LedgerStore):
            # a ledger this callback opened is closed when training ends: an SQLite file left open in a process
            # loses its locks when anything else in that process closes the same file (a copy of the folder,
            # say), and another process's commit could then be lost
            self.store.close()
            self.store = None

    # ------------------------------------------------------------------ the ledger
    def _open_or_create(self, model: torch.nn.Module, global_step: int) -> LedgerStore:
        if self.store is not None:
            return self.store
        assert not isinstance(self.ledger, LedgerStore)
        path = os.fspath(self.ledger)
        if os.path.exists(os.path.join(path, "manifest.json")):
            if global_step == 0:
                raise LedgerError(f"{path} already holds a ledger and this Trainer run starts from step 0: choose an "
                                  "empty directory, or resume from a checkpoint of the run it recorded")
            return LedgerStore.open(path, writable=True)
        if global_step > 0:
            raise LedgerError(f"this Trainer run resumes at step {global_step} but {path} holds no ledger: a ledger "
                              "must record a run from its first step")
        include_buffers = bool(self.recorder_options.get("include_buffers", True))
        initial = {k: v.detach().clone() for k, v in tracked_state(model, include_buffers=include_buffers).items()}
        kind = ({"ledger_kind": "shards", "shards": {"count": self.shards.num_shards, "records": len(self.shards)}}
                if self.shards is not None else {})
        return LedgerStore.create(path, initial=initial, manifest={
            "storage_dtype": self.recorder_options.get("dtype", "float32"), "recorded_by": "transformers.Trainer",
            "include_buffers": include_buffers, **kind, **head_scope(model, include_buffers=include_buffers)})

    def _resume_point(self, model: torch.nn.Module, global_step: int) -> int:
        """Cut the ledger back to the checkpoint the Trainer resumes from; returns its last ledger step."""
        store = self.store
        assert store is not None
        check_base(store.manifest, model, ledger=str(store.path))
        if (store.kind == "shards") != (self.shards is not None):
            raise ConfigError(f"the ledger at {store.path} is a {store.kind} ledger: resume it "
                              f"{'with' if store.kind == 'shards' else 'without'} shards=")
        marks = [e for e in store.events("trainer_checkpoint") if e.get("global_step") == global_step]
        if not marks:
            raise LedgerError(f"the ledger at {store.path} noted no checkpoint at step {global_step}; it cannot tell "
                              "which of its steps that checkpoint holds. Resume from a checkpoint saved while this "
                              "callback recorded")
        ledger_step = int(marks[-1]["ledger_step"])
        if store.kind == "shards":
            if head_hash(store.manifest, model) != store.index.get_meta("head_hash"):
                raise LedgerError(f"the shard ledger at {store.path} was committed after the checkpoint at step "
                                  f"{global_step}, and shard sums cannot be cut back: resume from the latest "
                                  "checkpoint, or record the run anew into an empty directory")
            return int(store.index.get_meta("head_step") or ledger_step)
        if store.last_step() < ledger_step:
            raise LedgerError(f"the ledger at {store.path} ends at step {store.last_step()}, before the {ledger_step} "
                              f"steps of the checkpoint at step {global_step}: it lacks steps the model holds")
        dropped = store.commits.truncate_after(ledger_step)
        if dropped:
            store.index.add_event("resume", {"dropped_steps_after": ledger_step, "dropped": dropped,
                                             "trainer_global_step": global_step})
        store.mark_head(model)
        return ledger_step

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


def confine_to_shards(trainer: Any, shards: ShardMap, *, seed: int | None = None,
                      id_column: str = ID_COLUMN) -> ShardBatchSampler:
    """Make ``trainer`` draw every optimizer step's batches from one shard of ``shards``.

    The Trainer's training data loader is replaced by one whose batch sampler is a
    :class:`~amnesiac.data.ShardBatchSampler`: each epoch visits the shards in a new order, and each shard gives a
    multiple of ``gradient_accumulation_steps`` batches, so accumulated micro-batches never mix shards. The
    examples' record ids are read from ``id_column``. Returns the sampler (its epoch is set by the Trainer).
    """
    if not isinstance(shards, ShardMap):
        raise ConfigError(f"shards must be a ShardMap (amnesiac.data.make_shards), got {type(shards).__name__}")
    args = trainer.args
    if getattr(args, "world_size", 1) > 1:
        raise ConfigError("shard-confined batching of a Trainer on several processes is not supported yet")
    dataset = trainer.train_dataset
    if dataset is None or not hasattr(dataset, "__len__"):
        raise ConfigError("confine_to_shards needs a training dataset with a length (not an iterable dataset)")
    sampler = ShardBatchSampler(shards, _record_ids(dataset, id_column), batch_size=int(args.per_device_train_batch_size),
                                seed=int(args.seed if seed is None else seed),
                                micro_batches=int(args.gradient_accumulation_steps))

    def get_train_dataloader() -> torch.utils.data.DataLoader:
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=trainer.data_collator,
                                             num_workers=args.dataloader_num_workers,
                                             pin_memory=args.dataloader_pin_memory)
        return trainer.accelerator.prepare(loader)

    trainer.get_train_dataloader = get_train_dataloader
    trainer.add_callback(_SamplerEpoch(sampler))
    return sampler


class _SamplerEpoch(TrainerCallback):
    """Sets the shard sampler's epoch before each epoch's batches are drawn."""

    def __init__(self, sampler: ShardBatchSampler) -> None:
        self.sampler = sampler

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.sampler.set_epoch(int(state.epoch or 0))


def _record_ids(dataset: Any, id_column: str) -> np.ndarray:
    """The record id of every example, in dataset order."""
    names = getattr(dataset, "column_names", None)
    if names is not None:  # a datasets.Dataset: read the column at once
        if id_column not in names:
            raise ConfigError(f"the training dataset has no {id_column!r} column (it has {list(names)})")
        return np.asarray(dataset[id_column], dtype=np.int64)
    out = np.empty(len(dataset), dtype=np.int64)
    for i in range(len(dataset)):
        example = dataset[i]
        if not isinstance(example, dict) or id_column not in example:
            raise ConfigError(f"training example {i} has no {id_column!r} key: give every example its record id")
        out[i] = int(example[id_column])
    return out


ADAPTER_FILE = "adapter_model.safetensors"
HEAD_FILE = "amnesiac-head.safetensors"


class _AdapterTensors(torch.nn.Module):
    """A saved adapter's tensors as trainable parameters under the names the ledger recorded them by."""

    amnesiac_adapter_only = True

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for name, value in tensors.items():
            owner: torch.nn.Module = self
            *path, leaf = name.split(".")
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, torch.nn.Module())
                owner = getattr(owner, part)
            owner.register_parameter(leaf, torch.nn.Parameter(value.clone()))


def _saved_names(ledger_names: list[str], adapter_name: str) -> dict[str, str]:
    """Ledger name -> the name PEFT saves it under (the adapter's name left out)."""
    marker = f".{adapter_name}."
    return {n: n.replace(marker, ".", 1) if marker in n else n for n in ledger_names}


def forget_saved_adapter(adapter_dir: str | os.PathLike[str], ledger: str | os.PathLike[str], ids: Any, *,
                         adapter_name: str = "default", force: bool = False) -> Any:
    """Forget ``ids`` from an adapter saved with ``save_pretrained`` (its ``adapter_model.safetensors``), without
    the base model: the ledger's recorded updates are subtracted from the adapter's tensors and the file is
    rewritten. Returns the :class:`~amnesiac.Deletion` (its model holds the adapter's tensors only).

    The adapter must be the ledger's head (as :func:`~amnesiac.forget_records` requires of a model); the base's
    fingerprint is not checked, as no base is loaded. Crash-safe: the new adapter is written next to the file
    (``amnesiac-head.safetensors``) before the ledger commits; a process that dies after the commit leaves it
    there, and the next call on this folder finishes the rewrite before anything else.
    """
    from safetensors.torch import save_file

    from ..run.checkpoint import load_tensors
    from ..unlearn.library import finish_interrupted_deletion, forget_records, writing_ledger
    from ..utils import state_hash

    folder = Path(adapter_dir)
    file = folder / ADAPTER_FILE
    if not file.is_file():
        raise ConfigError(f"{folder} holds no {ADAPTER_FILE}: give the folder a PEFT model was saved to with "
                          "save_pretrained")
    with writing_ledger(ledger) as store:
        finish_interrupted_deletion(store)  # a deletion that died after its commit: its head file renamed first
        names = sorted(store.load_initial())
        head = store.index.get_meta("head_hash")
    mapping = _saved_names(names, adapter_name)
    _finish_rewrite(folder, mapping, head)
    saved, _ = load_tensors(file)  # a damaged file is refused with its name, before anything changes
    missing = sorted(set(mapping.values()) - set(saved))
    extra = sorted(set(saved) - set(mapping.values()))
    if missing or extra:
        raise ConfigError(f"{file} does not hold the tensors the ledger recorded: missing {missing[:3]}, not recorded "
                          f"{extra[:3]} (is it the adapter this ledger was recorded for, under adapter name "
                          f"{adapter_name!r}?)")
    module = _AdapterTensors({n: saved[mapping[n]] for n in names})
    deletion = forget_records(module, ledger, ids, save_to=folder / HEAD_FILE, force=force)
    new = {mapping[n]: t.detach().contiguous() for n, t in module.state_dict().items()}
    assert state_hash(module.state_dict()) == deletion.receipt.model_hash_after
    fault_point("adapter:before-rewrite")
    tmp = folder / (ADAPTER_FILE + ".tmp")
    save_file(new, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, file)
    (folder / HEAD_FILE).unlink(missing_ok=True)
    return deletion


def _finish_rewrite(folder: Path, mapping: dict[str, str], head: str | None) -> None:
    """A deletion that committed and died before rewriting the adapter file: rewrite it from the head file."""
    from safetensors.torch import save_file

    from ..run.checkpoint import load_tensors
    from ..utils import state_hash

    pending = folder / HEAD_FILE
    if not pending.is_file():
        return
    tensors, _ = load_tensors(pending)
    if state_hash(tensors) != head:  # written aside, then the ledger did not commit: it is not the head
        pending.unlink()
        return
    tmp = folder / (ADAPTER_FILE + ".tmp")
    save_file({mapping[n]: t for n, t in tensors.items()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / ADAPTER_FILE)
    pending.unlink()
