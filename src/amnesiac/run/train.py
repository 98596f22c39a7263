"""Training a run directory from its configuration, recording a ledger, resumable after a crash."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..data import DataBundle, load_dataset
from ..data.base import ArrayDataset
from ..data.shards import ShardMap
from ..errors import ConfigError, RunDirError
from ..faults import point as fault_point
from ..ledger import LedgerStore, Recorder, estimate_for_model, human_bytes
from ..training import evaluate_sets, fit, make_optimizer, resolve_device
from ..utils import fingerprint, model_state, seeded
from .checkpoint import load_tensors
from .rundir import RunDir, evaluation_sets, select_training_data, shard_map_for


@dataclass
class TrainResult:
    """What :func:`train_run` produced."""

    run: RunDir
    model: nn.Module
    history: list[dict[str, Any]]
    final: dict[str, float]
    record: str
    resumed_nothing: bool = False  # resume found every epoch already trained


def _resolve_record(config: TrainConfig, model: nn.Module, n_train: int, out: Path, shards: ShardMap | None) -> str:
    if config.record != "auto":
        return config.record
    est = estimate_for_model(model, include_buffers=config.include_buffers, num_examples=n_train,
                             batch_size=config.batch_size, epochs=config.epochs, dtype=config.ledger_dtype,
                             shards=shards.num_shards if shards is not None else None)
    if shards is not None:
        if est.peak_bytes > 0.5 * shutil.disk_usage(out).free:
            raise ConfigError(f"the shard ledger would need up to {human_bytes(est.peak_bytes)} ({shards.num_shards} "
                              f"shards); only {human_bytes(shutil.disk_usage(out).free)} is free at {out}. "
                              "Use fewer shards (a larger shard_size=N) or ledger_dtype='float16'")
        return "all"
    free = shutil.disk_usage(out).free
    if est.total_bytes <= 0.5 * free:
        return "all"
    options = []
    for dtype in ("float16",):
        e16 = estimate_for_model(model, include_buffers=config.include_buffers, num_examples=n_train,
                                 batch_size=config.batch_size, epochs=config.epochs, dtype=dtype)
        options.append(f"ledger_dtype={dtype!r} (about {human_bytes(e16.total_bytes)})")
    options.append("record='watch' with watch_ids=FILE or watch_class=C (only steps holding deletable records)")
    options.append("record='none' (no ledger: amnesiac forgetting will not be possible)")
    raise ConfigError(
        f"recording every step would need about {human_bytes(est.total_bytes)} "
        f"({est.steps} steps x {human_bytes(est.bytes_per_step)}), but only {human_bytes(free)} is free at {out}. "
        "Options:\n  - " + "\n  - ".join(options)
    )


def train_run(
    config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    eval_every_steps: int | None = None,
    device: str | None = None,
) -> TrainResult:
    """Train a model as ``config`` says and write everything into the run directory ``out``.

    With ``resume=True`` training continues from the last saved epoch of ``out`` (the ledger drops any
    steps recorded after that checkpoint, since the saved model does not contain them). ``device``
    (``cpu``, ``cuda``, ``auto``) is where training runs; files are always written from CPU copies, and
    bit-for-bit determinism is promised on CPU only. The caller's random state is left as it was.
    """
    config.validate()
    if resume:
        run = RunDir.open(out)
        config = run.config  # the run's own recipe wins; the CLI refuses flags that would change it
        return _train_into(run, config, resume=True, progress=progress, eval_every_steps=eval_every_steps,
                           device=device)
    bundle = check_recipe(config)  # a recipe refused now leaves no folder behind
    with new_run_dir(out, config, overwrite=overwrite, bundle=bundle) as run:
        return _train_into(run, config, resume=False, progress=progress, eval_every_steps=eval_every_steps,
                           device=device)


def check_recipe(config: TrainConfig) -> DataBundle:
    """Everything in ``config`` that can be refused before a run directory exists: the dataset loads, the
    selection leaves records, the shards (or subject map) fit them. Returns the loaded data."""
    bundle = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)
    train_data = select_training_data(bundle.train, config)
    if len(train_data) == 0:
        raise ConfigError(f"the recipe leaves no training records of {config.dataset} (limit_class/exclude_ids)")
    shard_map_for(config, train_data.ids.numpy(), known=bundle.train.ids.numpy())
    evaluation_sets(bundle, config.eval_class)
    return bundle


@contextlib.contextmanager
def new_run_dir(out: str | os.PathLike[str], config: TrainConfig, *, overwrite: bool,
                bundle: DataBundle | None = None) -> Iterator[RunDir]:
    """Create the run directory ``out`` for the block; if the block fails before the first epoch committed
    (no model file yet), remove what it made, so a refused or failed training leaves no folder behind (an
    empty folder that was there before is left empty)."""
    existed = Path(out).is_dir()
    run = RunDir.create(out, config, overwrite=overwrite, bundle=bundle)
    try:
        yield run
    except BaseException:
        if not run.model_path.exists():
            _discard_unfinished(run, remove_folder=not existed)
        raise


def _discard_unfinished(run: RunDir, *, remove_folder: bool) -> None:
    """Remove a run directory this call made and no epoch committed to, under its lock; a run another process
    holds (it took the folder in the meantime) is left alone."""
    try:
        with run.lock(wait=False, recover=False):
            for entry in list(run.path.iterdir()):
                if entry.name != ".lock":
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    except RunDirError:
        return  # in use by another process: not ours to remove
    (run.path / ".lock").unlink(missing_ok=True)
    if remove_folder:
        with contextlib.suppress(OSError):
            run.path.rmdir()


def _train_into(run: RunDir, config: TrainConfig, *, resume: bool, progress: bool | None,
                eval_every_steps: int | None, device: str | None) -> TrainResult:
    """The training of :func:`train_run`, into a run directory that exists."""
    with run.lock(wait=False), seeded(config.seed):
        bundle = run.bundle()
        train_data = select_training_data(bundle.train, config)
        shards = shard_map_for(config, train_data.ids.numpy(), known=bundle.train.ids.numpy())
        eval_sets = evaluation_sets(bundle, config.eval_class)
        model = run.new_model().to(resolve_device(device))
        optimizer = make_optimizer(config.optimizer, model.parameters(), lr=config.lr,
                                   momentum=config.momentum, weight_decay=config.weight_decay)
        start_epoch, start_step = 0, 0
        history: list[dict[str, Any]] = []
        if resume and run.model_path.exists():
            start_epoch, start_step, history = resume_point(run)
            if start_epoch >= config.epochs:  # nothing left to train (a forget may have changed the model since)
                return complete_on_resume(run, config, eval_sets, history)
            restore_checkpoint(run, model, optimizer, start_step)
        record, store, recorder = start_recording(run, config, model, optimizer, train_data, start_step, shards)

        def on_epoch_end(epoch: int, rec: dict[str, Any]) -> None:
            if recorder is not None:
                recorder.flush()  # every step of this epoch is durable before the model says so
            fault_point("train:after-flush")
            run.commit_epoch(model, optimizer, store, epoch=epoch, step=rec["step"])
            history.append(rec)
            run.write_metrics(history)

        try:
            fit(model, optimizer, train_data, epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                start_epoch=start_epoch, recorder=recorder, eval_sets=eval_sets, eval_every_steps=eval_every_steps,
                on_epoch_end=on_epoch_end, progress=progress, shards=shards)
        finally:
            if recorder is not None:
                recorder.close()
        finish_recording(store, recorder, config)
        final = evaluate_sets(model, eval_sets)
        return TrainResult(run, model, history, final, record)


def finish_recording(store: LedgerStore | None, recorder: Recorder | None, config: TrainConfig) -> None:
    """Mark the ledger's training complete and log it."""
    if store is not None:
        store.index.set_meta(training_complete=1, durable=True)
        store.index.add_event("train", {"epochs": config.epochs, "steps": recorder.step if recorder else 0,
                                  "head_hash": store.index.get_meta("head_hash")})
        store.close()


def resume_point(run: RunDir) -> tuple[int, int, list[dict[str, Any]]]:
    """The epoch and step to continue from (after the last committed epoch) and the metrics up to there."""
    meta = run.model_meta()
    start_epoch, start_step = int(meta["epoch"]) + 1, int(meta["step"])
    return start_epoch, start_step, [r for r in run.read_metrics() if r["step"] <= start_step]


def restore_checkpoint(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Load the last committed epoch's model and the optimizer state that goes with it."""
    model.load_state_dict(load_tensors(run.model_path)[0])
    run.load_optimizer(optimizer, step)  # load_state_dict moves the state to the parameters' device


def complete_on_resume(run: RunDir, config: TrainConfig, eval_sets: dict[str, ArrayDataset],
                        history: list[dict[str, Any]]) -> TrainResult:
    """Every epoch is committed: a crash after the last commit point left the ledger not marked complete."""
    if run.has_ledger():
        with run.open_ledger(writable=True) as done:
            if done.index.get_meta("training_complete") != "1":
                done.index.set_meta(training_complete=1, durable=True)
                done.index.add_event("train", {"epochs": config.epochs, "completed_on_resume": True,
                                         "head_hash": done.index.get_meta("head_hash")})
    model = run.load_model()
    final = evaluate_sets(model, eval_sets)
    return TrainResult(run, model, history, final, config.record, resumed_nothing=True)


def start_recording(run: RunDir, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                     train_data: ArrayDataset, start_step: int, shards: ShardMap | None,
                     make_recorder: Any = Recorder) -> tuple[str, LedgerStore | None, Any]:
    """The recording policy, the ledger (created, or reopened and cut back to ``start_step``) and its recorder
    (``make_recorder(model, optimizer, store, **options)``: a :class:`Recorder`, or rank 0's distributed one)."""
    watch = None
    if config.watch_class is not None:
        watch = train_data.ids_of_class(config.watch_class).tolist()
    elif config.watch_ids is not None:
        watch = list(config.watch_ids)
    record = _resolve_record(config, model, len(train_data), run.path, shards)
    if record == "none":
        return record, None, None
    if run.has_ledger():
        store = run.open_ledger(writable=True)
        dropped = store.commits.truncate_after(start_step)
        if dropped:
            store.index.add_event("resume", {"dropped_steps_after": start_step, "dropped": dropped})
        if shards is not None:
            _check_shards_match(store, shards)
    else:
        if start_step:
            raise RunDirError(f"{run.path} has a checkpoint at step {start_step} but no ledger to resume into")
        store = LedgerStore.create(run.ledger_path, initial=model_state(model), manifest={
            "storage_dtype": config.ledger_dtype,
            "include_buffers": config.include_buffers,
            "policy": {"kind": record, "watch": len(watch) if watch is not None else None},
            "model": config.model,
            "model_fingerprint": fingerprint(model),
            "optimizer": {"class": type(optimizer).__name__,
                          **{k: v for k, v in optimizer.param_groups[0].items() if k != "params"}},
            "batch_size": config.batch_size,
            "seed": config.seed,
            **({"ledger_kind": "shards", "shards": {"count": shards.num_shards, "records": len(shards)}}
               if shards is not None else {}),
        })
    store.index.set_meta(training_complete=0, durable=True)
    policy = "shards" if shards is not None else "watch" if record == "watch" else "all"
    recorder = make_recorder(model, optimizer, store, policy=policy, watch_ids=watch, dtype=config.ledger_dtype,
                             include_buffers=config.include_buffers, start_step=start_step, shards=shards)
    return record, store, recorder


def _check_shards_match(store: LedgerStore, shards: ShardMap) -> None:
    """On resume: every committed shard row holds records of that shard only (the recipe made the same shards)."""
    if store.kind != "shards":
        raise RunDirError(f"{store.path} stores one update per step, but the run's recipe asks for shard batching")
    for rec in store.iter_steps():
        if rec.ids.size and not (shards.shard_of(rec.ids) == rec.step).all():
            raise RunDirError(f"shard {rec.step} of {store.path} holds records the recipe now puts in other shards "
                              "(was the subject map changed?); this run cannot be resumed")
