"""Training a run directory on N processes with DistributedDataParallel, one ledger written by rank 0.

:func:`train_run_distributed` (``amnesiac train --nproc N``) spawns N processes (gloo on CPU, nccl on GPUs).
Every rank walks the same global batches as a single-process run of the recipe (seeded by epoch), takes its
slice of each (``torch.tensor_split``, rank order), and DDP all-reduces the gradients, so the step is the
global batch's. Rank 0 holds the run's lock, the ledger (through a
:class:`~amnesiac.ledger.distributed.DistributedRecorder`, which gathers every rank's ids), the commit of each
epoch and the metrics; the other ranks read the run's data and checkpoint and write nothing.

A rank that dies ends the run: the others fail at the next collective (the process group's timeout bounds
the wait), the parent reports which rank and how, and the run directory holds what rank 0 last committed (the
journal rules of a single-process run apply unchanged). ``train_run_distributed(..., resume=True)`` (``amnesiac
train --resume --nproc N``) continues it, with any number of processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..config import TrainConfig
from ..errors import ConfigError, TrainingFailedError
from ..faults import point as fault_point
from ..ledger.distributed import DistributedRecorder
from ..training import evaluate_sets, fit, make_optimizer
from ..utils import seeded, usable_cores
from .rundir import RunDir, evaluation_sets, select_training_data, shard_map_for
from .train import (
    TrainResult,
    check_recipe,
    complete_on_resume,
    finish_recording,
    new_run_dir,
    restore_checkpoint,
    resume_point,
    start_recording,
)

TIMEOUT_S = float(os.environ.get("AMNESIAC_DDP_TIMEOUT", "120"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_run_distributed(config: TrainConfig, out: str | os.PathLike[str], *, nproc: int, resume: bool = False,
                          overwrite: bool = False, device: str | None = None,
                          oversubscribe: bool = False) -> TrainResult:
    """Train ``config`` into the run directory ``out`` on ``nproc`` processes (see the module's docstring).

    ``nproc`` is checked against the machine before anything starts: at most one process per GPU, and on
    CPU at most one per core this process may use, unless ``oversubscribe=True``."""
    cuda = device not in (None, "cpu")
    check_nproc(nproc, cuda=cuda, device=device, oversubscribe=oversubscribe)
    config.validate()
    if resume:
        config = RunDir.open(out).config
        return _spawn(config, out, nproc=nproc, resume=True, cuda=cuda)
    bundle = check_recipe(config)
    with new_run_dir(out, config, overwrite=overwrite, bundle=bundle):  # written once, before any rank starts
        return _spawn(config, out, nproc=nproc, resume=False, cuda=cuda)


def check_nproc(nproc: Any, *, cuda: bool, device: str | None, oversubscribe: bool = False) -> None:
    """Refuse a process count the machine cannot hold, before any process starts."""
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ConfigError(f"nproc must be a positive integer, got {nproc!r}")
    if cuda:
        if torch.cuda.device_count() < nproc:
            raise ConfigError(f"nproc={nproc} on {device} needs {nproc} GPUs; this machine has "
                              f"{torch.cuda.device_count()}")
        return
    cores = usable_cores()
    if nproc > cores and not oversubscribe:
        raise ConfigError(f"nproc={nproc} processes on CPU, but this process may use {cores} core(s); each process "
                          f"trains a copy of the model and loads the data. Use nproc={cores} or fewer, or "
                          "oversubscribe=True if you mean it")
    if nproc > 4 * cores:
        raise ConfigError(f"nproc={nproc} is more than four processes per core ({cores} core(s)); even with "
                          "oversubscribe=True that many would exhaust the machine")


def _spawn(config: TrainConfig, out: str | os.PathLike[str], *, nproc: int, resume: bool, cuda: bool) -> TrainResult:
    """Start the ranks on a run directory that exists and wait for them."""
    result_file = Path(out) / ".distributed-result.json"
    result_file.unlink(missing_ok=True)
    context = mp.spawn(_worker, args=(nproc, _free_port(), config.to_dict(), str(out), resume, bool(cuda),
                                      str(result_file)), nprocs=nproc, join=False)
    try:
        while not context.join():
            pass
    except (mp.ProcessExitedException, mp.ProcessRaisedException) as err:
        raise TrainingFailedError(_failure(context, err, nproc, out)) from None
    run = RunDir.open(out)
    done = json.loads(result_file.read_text())
    result_file.unlink(missing_ok=True)
    return TrainResult(run, run.load_model(), done["history"], done["final"], done["record"],
                       resumed_nothing=done["resumed_nothing"])


def _failure(context: Any, err: Exception, nproc: int, out: Any) -> str:
    """Which rank ended the run and how: a rank killed by a signal (other than the SIGTERM with which the
    survivors are stopped) is named first, since the others only failed on losing it."""
    import signal

    after = (f"the run stopped at its last committed epoch at {out}. Continue it with resume=True and nproc={nproc} "
             "(any number of processes works)")
    for rank, proc in enumerate(context.processes):
        code = proc.exitcode
        if code is not None and code < 0 and -code != signal.SIGTERM:
            return f"rank {rank} of {nproc} died ({_how(code)}); {after}"
    if isinstance(err, mp.ProcessExitedException):
        return f"rank {err.error_index} of {nproc} died ({_how(err.exit_code)}); {after}"
    return f"a rank of the {nproc}-process run failed ({str(err).strip().splitlines()[-1]}); {after}"


def _how(code: int | None) -> str:
    import signal

    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _worker(rank: int, nproc: int, port: int, config_dict: dict[str, Any], out: str, resume: bool, cuda: bool,
            result_file: str) -> None:
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=nproc,
                            timeout=timedelta(seconds=TIMEOUT_S))
    try:
        if cuda:
            torch.cuda.set_device(rank)
        else:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
        device = torch.device(f"cuda:{rank}" if cuda else "cpu")
        result = _train_rank(rank, nproc, TrainConfig.from_dict(config_dict), RunDir.open(out), resume, device)
        if rank == 0:
            Path(result_file).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _train_rank(rank: int, nproc: int, config: TrainConfig, run: RunDir, resume: bool,
                device: torch.device) -> dict[str, Any]:
    """One rank's share of the run; rank 0 also locks, records, commits and evaluates."""
    lock = run.lock(wait=False) if rank == 0 else contextlib.nullcontext()
    with lock, seeded(config.seed):
        bundle = run.bundle()
        train_data = select_training_data(bundle.train, config)
        _check_split(len(train_data), config.batch_size, nproc)
        shards = shard_map_for(config, train_data.ids.numpy(), known=bundle.train.ids.numpy())
        model = run.new_model().to(device)
        optimizer = make_optimizer(config.optimizer, model.parameters(), lr=config.lr, momentum=config.momentum,
                                   weight_decay=config.weight_decay)
        start = [resume_point(run) if rank == 0 and resume and run.model_path.exists() else (0, 0, [])]
        dist.broadcast_object_list(start, src=0)  # after rank 0 took the lock (and recovered what a crash left)
        start_epoch, start_step, history = start[0]
        eval_sets = evaluation_sets(bundle, config.eval_class)
        if start_epoch >= config.epochs:
            done = complete_on_resume(run, config, eval_sets, history) if rank == 0 else None
            dist.barrier()
            return {"history": history, "final": done.final if done else {}, "record": config.record,
                    "resumed_nothing": True}
        if start_step:
            restore_checkpoint(run, model, optimizer, start_step)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        record, store, recorder = _recording(rank, run, config, model, optimizer, train_data, start_step, shards)
        history = _fit_ranks(rank, nproc, run, config, model, ddp, optimizer, train_data, shards, recorder, store,
                             start_epoch, history)
        if rank != 0:
            return {}
        finish_recording(store, recorder.inner if recorder is not None else None, config)
        return {"history": history, "final": evaluate_sets(model, eval_sets), "record": record,
                "resumed_nothing": False}


def _check_split(n: int, batch_size: int, nproc: int) -> None:
    if batch_size < nproc or 0 < n % batch_size < nproc:
        raise ConfigError(f"with {nproc} processes every global batch needs at least {nproc} records; batch size "
                          f"{batch_size} over {n} records leaves a last batch of {n % batch_size or batch_size}")


def _recording(rank: int, run: RunDir, config: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               train_data: Any, start_step: int, shards: Any) -> tuple[str, Any, DistributedRecorder | None]:
    """Rank 0 opens (or creates) the ledger and its recorder; every rank then joins the distributed recorder."""
    plan = [config.record]
    if rank == 0:
        record, store, recorder = start_recording(run, config, model, optimizer, train_data, start_step, shards,
                                                   make_recorder=DistributedRecorder)
        plan = [record]
    dist.broadcast_object_list(plan, src=0)
    if plan[0] == "none":
        return "none", None, None
    if rank != 0:
        return plan[0], None, DistributedRecorder(model, optimizer, None)
    return record, store, recorder


def _fit_ranks(rank: int, nproc: int, run: RunDir, config: TrainConfig, model: torch.nn.Module, ddp: Any,
               optimizer: torch.optim.Optimizer, train_data: Any, shards: Any, recorder: DistributedRecorder | None,
               store: Any, start_epoch: int, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seeded loop on every rank, each on its slice of the global batches; rank 0 commits every epoch."""
    eval_sets = evaluation_sets(run.bundle(), config.eval_class) if rank == 0 else None

    def local(x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> tuple[Any, Any, Any]:
        fault_point(f"ddp:rank{rank}-batch")
        return (torch.tensor_split(x, nproc)[rank], torch.tensor_split(y, nproc)[rank],
                torch.tensor_split(ids, nproc)[rank])

    def on_epoch_end(epoch: int, rec: dict[str, Any]) -> None:
        if recorder is not None:
            recorder.flush()  # every step of this epoch durable on rank 0, every rank waiting
        if rank == 0:
            fault_point("train:after-flush")
            rec.update({f"{k}_acc": v for k, v in evaluate_sets(model, eval_sets or {}).items()})
            run.commit_epoch(model, optimizer, store, epoch=epoch, step=rec["step"])
            history.append(rec)
            run.write_metrics(history)
        dist.barrier()

    try:
        fit(ddp, optimizer, train_data, epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
            start_epoch=start_epoch, recorder=recorder, on_epoch_end=on_epoch_end, progress=False, shards=shards,
            local=local)
    finally:
        if recorder is not None:
            recorder.close()
    return history
