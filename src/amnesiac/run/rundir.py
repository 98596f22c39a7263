"""The run directory: one model, its configuration, metrics, optimizer state and ledger (see :mod:`amnesiac.run`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..config import TrainConfig
from ..data import DataBundle, load_dataset
from ..data.base import ArrayDataset
from ..data.shards import ShardMap, make_shards, read_subject_map
from ..errors import ConfigError, LedgerError, PendingChangeError, RunDirError
from ..faults import point as fault_point
from ..ledger import LedgerStore
from ..models import build_model
from ..utils import atomic_write_json, model_hash, model_state, wait_for_lock
from .audit import RunAudit, audit_run
from .checkpoint import load_tensors, optimizer_from_tensors, optimizer_to_tensors, save_tensors
from .commit import begin_change, commit_model, recover
from .layout import COMMIT_LOCK, RunFiles


def select_training_data(train: ArrayDataset, config: TrainConfig) -> ArrayDataset:
    """Apply ``limit_class`` and ``exclude_ids`` to the full training split."""
    data = train
    if config.limit_class:
        keep = torch.ones(len(train), dtype=torch.bool)
        g = torch.Generator().manual_seed(int(config.seed))
        for c, n in sorted(config.limit_class.items()):
            members = torch.nonzero(train.targets == int(c)).flatten()
            if config.limit_class_select == "first":
                members = members[torch.argsort(train.ids[members])]
            else:
                members = members[torch.randperm(members.numel(), generator=g)]
            keep[members[int(n):]] = False
        data = train.subset(torch.nonzero(keep).flatten())
    if config.exclude_ids:
        data = data.without_ids(config.exclude_ids)
    return data


def shard_map_for(config: TrainConfig, ids: Any, *, known: Any = None) -> ShardMap | None:
    """The shards ``config`` asks for over the training ids (None with random batching). ``known``: every
    record id of the dataset's training split; a subject map naming any other id is refused (records the
    recipe leaves out, such as excluded ids, are allowed and ignored)."""
    if config.batching != "shards":
        return None
    subjects = read_subject_map(config.shard_subjects) if config.shard_subjects else None
    if subjects is not None and not subjects:
        raise ConfigError(f"the subject map {config.shard_subjects} names no data subject; shard by subject needs "
                          "at least one (subject -> record ids)")
    if subjects and known is not None:
        named = np.fromiter((int(i) for v in subjects.values() for i in v), dtype=np.int64)
        strangers = np.setdiff1d(named, np.asarray(known, dtype=np.int64))
        if strangers.size:
            raise ConfigError(f"the subject map {config.shard_subjects} names {strangers.size} id(s) that are not "
                              f"training records of {config.dataset}: {', '.join(map(str, strangers[:10].tolist()))}"
                              f"; every id must be a record of the training split")
    size = config.shard_size if (config.shard_size or config.num_shards) else config.batch_size
    return make_shards(ids, shard_size=None if config.num_shards else size, num_shards=config.num_shards,
                       subjects=subjects, seed=config.seed)


def evaluation_sets(bundle: DataBundle, eval_class: int | None) -> dict[str, ArrayDataset]:
    """The test set, and for ``eval_class`` its examples of that class and of every other class."""
    sets: dict[str, ArrayDataset] = {"test": bundle.test}
    if eval_class is not None:
        if not 0 <= int(eval_class) < bundle.info.num_classes:
            raise ConfigError(f"eval_class must lie in 0..{bundle.info.num_classes - 1}, got {eval_class}")
        mask = bundle.test.targets == int(eval_class)
        sets[f"test_class{eval_class}"] = bundle.test.subset(torch.nonzero(mask).flatten())
        sets["test_other"] = bundle.test.subset(torch.nonzero(~mask).flatten())
    return sets


class RunDir(RunFiles):
    """A run directory: config, model, optimizer state, metrics and ledger of one model (the files and the
    readers' view are :class:`~amnesiac.run.layout.RunFiles`; this adds data, models, locking and commits)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self._bundle: DataBundle | None = None

    # ----------------------------------------------------------------- creation and opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], config: TrainConfig, *, overwrite: bool = False,
               bundle: DataBundle | None = None) -> RunDir:
        """Make a new run directory; refuses a non-empty one unless ``overwrite``. ``bundle``: the recipe's
        data, if the caller has loaded it already (it is not loaded twice).

        ``overwrite`` replaces only a run directory (one holding ``config.json``), and only after taking its
        lock, so a run in use is never deleted and a folder that is not a run is never touched.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} is a file, not a directory; choose a directory as out=DIR")
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                unfinished = (path / "config.json").is_file() and not (path / "model.safetensors").exists()
                raise RunDirError(
                    f"{path} already exists and is not empty"
                    + (" (a run whose training stopped before its first epoch ended: no model yet)" if unfinished
                       else "") + "; choose a new out=DIR, pass overwrite=True to replace it, or resume=True to continue "
                    "its training"
                )
            if not (path / "config.json").is_file():
                raise RunDirError(f"{path} is not a run directory (no config.json); overwrite=True replaces only a run "
                                  "directory, never other files. Choose another out=DIR")
            old = cls(path)
            with old.lock(wait=False, recover=False):
                for entry in path.iterdir():
                    if entry.name == ".lock":
                        continue
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        path.mkdir(parents=True, exist_ok=True)
        (path / COMMIT_LOCK).touch()  # made now, so the readers that take it never create a file
        run = cls(path)
        run._bundle = bundle
        run.write_config(config)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """Open an existing run directory (config.json must be present)."""
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise RunDirError(f"{run.path} is a file, not a run directory")
        if not (run.path / "config.json").is_file():
            raise RunDirError(f"{run.path} is not a run directory (no config.json); create one with `amnesiac train --out`")
        return run

    def write_config(self, config: TrainConfig) -> None:
        atomic_write_json(self.config_path, {
            "config": config.to_dict(),
            "amnesiac_version": __version__,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
        })

    # ----------------------------------------------------------------- data and model
    def bundle(self) -> DataBundle:
        """The run's dataset (loaded once)."""
        if self._bundle is None:
            c = self.config
            self._bundle = load_dataset(c.dataset, data_dir=c.data_dir, download=c.download)
        return self._bundle

    def training_data(self) -> ArrayDataset:
        """The records this run trained on (after ``limit_class`` and ``exclude_ids``)."""
        return select_training_data(self.bundle().train, self.config)

    def shard_map(self, training: ArrayDataset | None = None) -> ShardMap | None:
        """The shards of a run trained with ``batching='shards'`` (None otherwise), made from its recipe and
        seed, so every call (a resume, a repair) gets the same ones."""
        return shard_map_for(self.config, (training if training is not None else self.training_data()).ids.numpy())

    def new_model(self) -> nn.Module:
        """A freshly initialised model of the run's architecture (uses the global torch RNG)."""
        info = self.bundle().info
        return build_model(self.config.model, in_channels=info.channels, num_classes=info.num_classes, image_size=info.image_size)

    def load_model(self) -> nn.Module:
        """The run's current model, weights loaded (built on the meta device: no wasted initialisation)."""
        self._check_model_file()
        tensors, _ = load_tensors(self.model_path)
        self.bundle()  # load data outside the meta-device context
        with torch.device("meta"):
            model = self.new_model()
        expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
        found = {k: (tuple(v.shape), v.dtype) for k, v in tensors.items()}
        if expected != found:
            odd = sorted(set(expected.items()) ^ set(found.items()))
            names = sorted({k for k, _ in odd})
            raise RunDirError(
                f"{self.model_path} does not hold a {self.config.model!r} model as config.json says: "
                f"{len(names)} tensor(s) differ in name, shape or dtype (e.g. {', '.join(names[:3])}). "
                "It belongs to another run or architecture; restore this run's model."
            )
        model.load_state_dict(tensors, assign=True)
        return model

    def save_model(self, model: nn.Module, **meta: Any) -> str:
        """Atomically write the current model with its hash in the metadata; returns the hash."""
        h = model_hash(model)
        save_tensors(self.model_path, model_state(model), {**meta, "hash": h})
        return h

    def commit_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, store: LedgerStore | None, *,
                     epoch: int, step: int) -> str:
        """Commit the model at the end of an epoch together with the ledger's head, through the journal
        (optimizer state first, then model.next, the head as commit point, the rename). Returns the hash."""
        tensors, meta = optimizer_to_tensors(optimizer)
        save_tensors(self.optimizer_path(step), tensors, meta)
        fault_point("train:after-optimizer")
        old = self.model_meta().get("hash") if self.model_path.is_file() else None
        begin_change(self, old_hash=str(old), store=store, kind="train-epoch", truncate_on_rollback=False)
        ledger_commit = None
        if store is not None:
            ledger_commit = lambda h, fsum: store.commits.head(  # noqa: E731
                head_hash=h, head_step=step, head_file_sum=fsum)
        return commit_model(self, model, old_hash=str(old), store=store, ledger_commit=ledger_commit,
                            destroy_optimizer=False, keep_optimizer_step=step, meta={"epoch": epoch, "step": step},
                            kind="train-epoch")

    def load_optimizer(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        path = self.optimizer_path(step)
        if not path.is_file():
            raise RunDirError(f"{path} (the optimizer state for resuming at step {step}) is missing; this run "
                              "cannot be resumed. Train a new run instead")
        tensors, meta = load_tensors(path)
        optimizer_from_tensors(optimizer, tensors, meta)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return json.loads(self.metrics_path.read_text())

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        atomic_write_json(self.metrics_path, records)

    # ----------------------------------------------------------------- locking and commits
    @contextlib.contextmanager
    def lock(self, *, wait: bool = True, recover: bool = True) -> Iterator[None]:
        """An exclusive lock on the run (training and forgetting take it; a second process waits).

        Whoever takes the lock first finishes or rolls back a change that a crashed process left behind.
        """
        fh = open(self.path / ".lock", "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                self._refuse_if_served()
                if not wait:
                    raise RunDirError(f"{self.path} is in use by another amnesiac process") from None
                wait_for_lock(fh, f"the lock of {self.path} (another amnesiac process is training or forgetting)")
            if recover:
                self.finish_pending_commit()
            yield
        finally:
            fh.close()

    def _refuse_if_served(self) -> None:
        """A run held by a deletion service takes no other writer: say so, naming the service."""
        service = self.served_by()
        if service is not None:
            where = f" at {service['url']}" if service.get("url") else ""
            raise PendingChangeError(  # busy, not bad input
                f"{self.path} is served by a deletion service (amnesiac serve, pid {service.get('pid')}{where}), its "
                "only writer while it runs: send deletion requests to it (POST /v1/deletions), or stop it (Ctrl-C or "
                "SIGTERM) first")

    def finish_pending_commit(self) -> str | None:
        """Complete or roll back a model change interrupted by a crash (see amnesiac.run.commit)."""
        outcome = recover(self)
        for tmp in self.path.glob(".ledger.*.creating"):  # a ledger whose creation a crash interrupted
            shutil.rmtree(tmp, ignore_errors=True)
        for tmp in self.leftover_writes():  # a file write (model, optimizer, config) a crash interrupted
            tmp.unlink(missing_ok=True)
        try:  # the lock holder also removes the leftovers a crash explains (a reader never does)
            if self.has_ledger():
                LedgerStore.open(self.ledger_path, writable=True).close()
        except LedgerError:
            pass  # a damaged ledger: the command that needs it reports the damage when it opens it
        return outcome

    def audit(self, *, deep: bool = False, progress: bool | None = None) -> RunAudit:
        """Check the whole run: the ledger's own audit plus the model against the head (see :class:`RunAudit`)."""
        return audit_run(self, deep=deep, progress=progress)


