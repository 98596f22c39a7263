"""Run directories and the high-level training entry point.

A run directory holds everything about one model::

    RUN/config.json              the full configuration (TrainConfig) and environment
    RUN/model.safetensors        the current model (metadata: epoch, step, hash)
    RUN/optimizer-S.safetensors  optimizer state matching the model at step S (for resuming)
    RUN/metrics.json             one record per evaluation
    RUN/ledger/                  the update ledger, when recording (see amnesiac.ledger)

>>> import tempfile
>>> from amnesiac.run import TrainConfig, train_run
>>> out = tempfile.mkdtemp() + "/run"
>>> result = train_run(TrainConfig(dataset="digits", model="small-cnn", epochs=1, record="none"), out, progress=False)
>>> sorted(p.name for p in result.run.path.iterdir() if not p.name.startswith('.'))[:3]
['config.json', 'metrics.json', 'model.safetensors']
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from . import __version__
from .checkpoint import load_tensors, optimizer_from_tensors, optimizer_to_tensors, save_tensors
from .data import DataBundle, load_dataset
from .data.base import ArrayDataset
from .errors import ConfigError, LedgerCorruptError, LedgerError, PendingChangeError, RunDirError
from .faults import point as fault_point
from .ledger import LedgerStore, Recorder, estimate_for_model, human_bytes
from .models import build_model
from .training import evaluate, fit, make_optimizer, resolve_device
from .utils import atomic_write_json, fingerprint, model_hash, model_state, seed_everything, state_hash

from .config import TrainConfig  # noqa: E402  (re-exported: it lives where the CLI can read it cheaply)
from .names import RECORD_CHOICES  # noqa: E402,F401  (re-exported)


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


class RunDir:
    """A run directory: config, model, optimizer state, metrics and ledger of one model."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._bundle: DataBundle | None = None

    # ----------------------------------------------------------------- creation and opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], config: TrainConfig, *, overwrite: bool = False) -> "RunDir":
        """Make a new run directory; refuses a non-empty one unless ``overwrite``.

        ``overwrite`` replaces only a run directory (one holding ``config.json``), and only after taking its
        lock, so a run in use is never deleted and a folder that is not a run is never touched.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} is a file, not a directory; choose a directory for --out")
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise RunDirError(
                    f"{path} already exists and is not empty; choose a new --out, pass --overwrite to replace "
                    f"it, or --resume to continue its training"
                )
            if not (path / "config.json").is_file():
                raise RunDirError(f"{path} is not a run directory (no config.json); --overwrite replaces only a run "
                                  "directory, never other files. Choose another --out")
            old = cls(path)
            with old.lock(wait=False, recover=False):
                for entry in path.iterdir():
                    if entry.name == ".lock":
                        continue
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.write_config(config)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "RunDir":
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

    # ----------------------------------------------------------------- paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def model_path(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def ledger_path(self) -> Path:
        return self.path / "ledger"

    @property
    def config(self) -> TrainConfig:
        try:
            raw = json.loads(self.config_path.read_bytes().decode("utf-8"))
            return TrainConfig.from_dict(raw["config"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RunDirError(f"cannot read {self.config_path}: {err}") from None

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

    def new_model(self) -> nn.Module:
        """A freshly initialised model of the run's architecture (uses the global torch RNG)."""
        info = self.bundle().info
        return build_model(self.config.model, in_channels=info.channels, num_classes=info.num_classes, image_size=info.image_size)

    def _check_model_file(self) -> None:
        if not self.model_path.exists():
            raise RunDirError(f"{self.model_path} is missing; the run has not finished an epoch yet")
        if not self.model_path.is_file():
            raise RunDirError(f"{self.model_path} should be the model file but is a {'directory' if self.model_path.is_dir() else 'special file'}")

    def model_meta(self) -> dict[str, Any]:
        """Epoch, step and hash stored with the current model (reads the file's header only)."""
        from safetensors import safe_open

        self._check_model_file()
        try:
            with safe_open(str(self.model_path), framework="pt") as fh:
                meta = fh.metadata() or {}
            return {k: json.loads(v) for k, v in meta.items()}
        except Exception as err:  # safetensors raises several types for a bad header
            raise RunDirError(f"{self.model_path} is not a readable safetensors file ({err})") from None

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

    def optimizer_path(self, step: int) -> Path:
        return self.path / f"optimizer-{step:012d}.safetensors"

    def commit_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, store: LedgerStore | None, *,
                     epoch: int, step: int) -> str:
        """Commit the model at the end of an epoch together with the ledger's head, through the journal
        (optimizer state first, then model.next, the head as commit point, the rename). Returns the hash."""
        from .unlearn.commit import begin_change, commit_model

        tensors, meta = optimizer_to_tensors(optimizer)
        save_tensors(self.optimizer_path(step), tensors, meta)
        fault_point("train:after-optimizer")
        old = self.model_meta().get("hash") if self.model_path.is_file() else None
        begin_change(self, old_hash=str(old), store=store, kind="train-epoch", truncate_on_rollback=False)
        ledger_commit = None
        if store is not None:
            ledger_commit = lambda h, fsum: store.set_meta(  # noqa: E731
                head_hash=h, head_step=step, head_file_sum=fsum, durable=True)
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

    # ----------------------------------------------------------------- ledger
    def has_ledger(self) -> bool:
        """Whether the run keeps a ledger. A ledger folder that is damaged (a file in its place, or an index
        without its manifest) raises instead of passing for a run trained without one."""
        p = self.ledger_path
        if not p.exists():
            return False
        if not p.is_dir():
            raise LedgerCorruptError(f"{p} should be the run's ledger directory but is a file; the ledger is damaged")
        if (p / "manifest.json").exists():
            return True
        if any(p.iterdir()):
            raise LedgerCorruptError(f"{p} holds ledger files but its manifest.json is missing; the ledger is damaged")
        return False

    def open_ledger(self, *, writable: bool = False, check_manifest: bool = True) -> LedgerStore:
        """Open the run's ledger; ``writable`` only with the run's lock held."""
        return LedgerStore.open(self.ledger_path, writable=writable, check_manifest=check_manifest)

    # ----------------------------------------------------------------- locking and commits
    @contextlib.contextmanager
    def lock(self, *, wait: bool = True, recover: bool = True) -> Iterator[None]:
        """An exclusive lock on the run (training and forgetting take it; a second process waits).

        Whoever takes the lock first finishes or rolls back a change that a crashed process left behind.
        """
        fh = open(self.path / ".lock", "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    raise RunDirError(f"{self.path} is in use by another amnesiac process") from None
                raise
            if recover:
                self.finish_pending_commit()
            yield
        finally:
            fh.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """For commands that only read (info, verify, receipts, attacks): see committed state or nothing.

        Raises :class:`PendingChangeError` while a change is being committed, or when an interrupted one
        awaits recovery; readers never complete, roll back or delete anything themselves.
        """
        from .unlearn.commit import COMMIT_LOCK, JOURNAL

        try:
            fh = open(self.path / COMMIT_LOCK, "a+")
        except OSError:  # a read-only copy of a run: nobody can be committing to it; the journal still counts
            fh = open(os.devnull)
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    raise PendingChangeError(
                        f"{self.path} is being changed right now (a forget, or the end of a training epoch); "
                        "try again when that command finishes") from None
                raise
            if (self.path / JOURNAL).exists():
                raise PendingChangeError(
                    f"{self.path} holds an interrupted change (its journal {JOURNAL} is still there): a training or "
                    "forget died before finishing. The next command that takes the run's lock completes or rolls it "
                    f"back; run `amnesiac ledger recover {self.path}` to do it now")
            yield
        finally:
            fh.close()

    def finish_pending_commit(self) -> str | None:
        """Complete or roll back a model change interrupted by a crash (see amnesiac.unlearn.commit)."""
        from .unlearn.commit import recover

        outcome = recover(self)
        for tmp in self.path.glob(".ledger.*.creating"):  # a ledger whose creation a crash interrupted
            shutil.rmtree(tmp, ignore_errors=True)
        try:  # the lock holder also removes the leftovers a crash explains (a reader never does)
            if self.has_ledger():
                LedgerStore.open(self.ledger_path, writable=True).close()
        except LedgerError:
            pass  # a damaged ledger: the command that needs it reports the damage when it opens it
        return outcome

    def audit(self, *, deep: bool = False, progress: bool | None = None) -> "RunAudit":
        """Check the whole run: the ledger's own audit plus the model against the head (see :class:`RunAudit`)."""
        return audit_run(self, deep=deep, progress=progress)


@dataclass
class TrainResult:
    """What :func:`train_run` produced."""

    run: RunDir
    model: nn.Module
    history: list[dict[str, Any]]
    final: dict[str, float]
    record: str
    resumed_nothing: bool = False  # resume found every epoch already trained


def _resolve_record(config: TrainConfig, model: nn.Module, n_train: int, out: Path, watch: list[int] | None) -> str:
    if config.record != "auto":
        return config.record
    est = estimate_for_model(model, include_buffers=config.include_buffers, num_examples=n_train,
                             batch_size=config.batch_size, epochs=config.epochs, dtype=config.ledger_dtype)
    free = shutil.disk_usage(out).free
    if est.total_bytes <= 0.5 * free:
        return "all"
    options = []
    for dtype in ("float16",):
        e16 = estimate_for_model(model, include_buffers=config.include_buffers, num_examples=n_train,
                                 batch_size=config.batch_size, epochs=config.epochs, dtype=dtype)
        options.append(f"--ledger-dtype {dtype} (about {human_bytes(e16.total_bytes)})")
    options.append("--record watch --watch-ids FILE or --watch-class C (only steps holding deletable records)")
    options.append("--record none (no ledger: amnesiac forgetting will not be possible)")
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
    bit-for-bit determinism is promised on CPU only.
    """
    config.validate()
    if resume:
        run = RunDir.open(out)
        saved = run.config
        if saved.to_dict() != config.to_dict():
            config = saved  # the run's own recipe wins; the CLI passes it through
    else:
        run = RunDir.create(out, config, overwrite=overwrite)
    with run.lock(wait=False):
        bundle = run.bundle()
        train_data = select_training_data(bundle.train, config)
        eval_sets = evaluation_sets(bundle, config.eval_class)
        seed_everything(config.seed)
        model = run.new_model().to(resolve_device(device))
        optimizer = make_optimizer(config.optimizer, model.parameters(), lr=config.lr,
                                   momentum=config.momentum, weight_decay=config.weight_decay)
        start_epoch, start_step = 0, 0
        history: list[dict[str, Any]] = []
        if resume and run.model_path.exists():
            meta = run.model_meta()
            start_epoch, start_step = int(meta["epoch"]) + 1, int(meta["step"])
            history = [r for r in run.read_metrics() if r["step"] <= start_step]
            if start_epoch >= config.epochs:  # nothing left to train (a forget may have changed the model since)
                if run.has_ledger():  # a crash after the last epoch's commit point: the training is complete
                    with run.open_ledger(writable=True) as done:
                        if done.get_meta("training_complete") != "1":
                            done.set_meta(training_complete=1, durable=True)
                            done.add_event("train", {"epochs": config.epochs, "completed_on_resume": True,
                                                     "head_hash": done.get_meta("head_hash")})
                model = run.load_model()
                final = {name: evaluate(model, ds)["accuracy"] for name, ds in eval_sets.items()}
                return TrainResult(run, model, history, final, config.record, resumed_nothing=True)
            model.load_state_dict(load_tensors(run.model_path)[0])
            run.load_optimizer(optimizer, start_step)  # load_state_dict moves the state to the parameters' device
        watch = None
        if config.watch_class is not None:
            watch = train_data.ids_of_class(config.watch_class).tolist()
        elif config.watch_ids is not None:
            watch = list(config.watch_ids)
        record = _resolve_record(config, model, len(train_data), run.path, watch)
        recorder = None
        store = None
        if record != "none":
            if run.has_ledger():
                store = run.open_ledger(writable=True)
                dropped = store.truncate_after(start_step)
                if dropped:
                    store.add_event("resume", {"dropped_steps_after": start_step, "dropped": dropped})
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
                })
            store.set_meta(training_complete=0, durable=True)
            recorder = Recorder(model, optimizer, store, policy="watch" if record == "watch" else "all",
                                watch_ids=watch, dtype=config.ledger_dtype,
                                include_buffers=config.include_buffers, start_step=start_step)

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
                on_epoch_end=on_epoch_end, progress=progress)
        finally:
            if recorder is not None:
                recorder.close()
        if store is not None:
            store.set_meta(training_complete=1, durable=True)
            store.add_event("train", {"epochs": config.epochs, "steps": recorder.step if recorder else 0,
                                      "head_hash": store.get_meta("head_hash")})
            store.close()
        final = {name: evaluate(model, ds)["accuracy"] for name, ds in eval_sets.items()}
        return TrainResult(run, model, history, final, record)


@dataclass
class RunAudit:
    """What ``amnesiac ledger verify`` found: the ledger's own report plus run-level findings."""

    ledger: Any  # VerifyReport, or None for a run without a ledger
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # what was checked, in words

    @property
    def ok(self) -> bool:
        return not self.problems and (self.ledger is None or self.ledger.ok)


def audit_run(run: RunDir, *, deep: bool = False, progress: bool | None = None) -> RunAudit:
    """Audit a run: ledger (manifest, index, initial state, blobs), model against the head, pending journal;
    with ``deep`` every blob is read and, when every applied step is stored, initial + sum of the updates
    must equal the model."""
    from .ledger.store import file_checksum
    from .unlearn.commit import JOURNAL, NEXT_MODEL

    out = RunAudit(ledger=None)
    if (run.path / JOURNAL).exists():
        out.problems.append(f"an interrupted change is pending ({JOURNAL}); run `amnesiac ledger recover {run.path}`")
    if (run.path / NEXT_MODEL).exists() and not (run.path / JOURNAL).exists():
        out.problems.append(f"{NEXT_MODEL} is left over without a journal")
    try:
        run.config
        out.checks.append("config.json")
    except RunDirError as err:
        out.problems.append(str(err))
    has = False
    try:
        has = run.has_ledger()
    except LedgerCorruptError as err:
        out.problems.append(str(err))
    store = None
    if has:
        try:
            store = LedgerStore.open(run.ledger_path, check_manifest=False)  # the audit reports a bad manifest itself
        except (LedgerCorruptError, LedgerError) as err:
            out.problems.append(str(err))
    if store is None:
        return out
    with store:
        out.ledger = store.verify(deep=deep, progress=progress)
        out.checks.append("manifest, index rows and id table, initial weights, "
                          + ("every stored update's checksum" if deep else "presence and size of stored updates"))
        head, head_sum = store.get_meta("head_hash"), store.get_meta("head_file_sum")
        model_state_: dict[str, torch.Tensor] | None = None
        if head is None:
            out.checks.append("no model committed yet")
            return out
        try:
            meta = run.model_meta()
            if head_sum is not None and file_checksum(run.model_path) != head_sum:
                out.problems.append(f"{run.model_path} does not match the checksum the ledger recorded for its head")
            elif meta.get("hash") != head:
                out.problems.append(f"{run.model_path} (hash {str(meta.get('hash'))[:16]}) is not the model the ledger "
                                    f"describes (head {head[:16]})")
            elif deep:
                model_state_ = load_tensors(run.model_path)[0]
                if state_hash(model_state_) != head:
                    out.problems.append(f"{run.model_path}: its weights do not hash to the ledger's head")
                    model_state_ = None
            fp = store.manifest.get("model_fingerprint")
            if fp is not None and model_state_ is not None:
                mine = sorted([k, list(v.shape), str(v.dtype)] for k, v in model_state_.items())
                if mine != sorted(fp):
                    out.problems.append(f"{run.model_path} does not have the architecture the ledger recorded")
            out.checks.append("model against the ledger's head" + (" (weights hashed)" if deep else " (file checksum)"))
        except RunDirError as err:
            out.problems.append(str(err))
        if deep and model_state_ is not None and out.ledger.ok:
            _check_reconstruction(store, model_state_, out)
    return out


def _check_reconstruction(store: LedgerStore, model: dict[str, torch.Tensor], out: RunAudit) -> None:
    """initial + sum of the applied updates up to the head must be the model (when every one is stored)."""
    from .unlearn.planner import sum_updates

    head_step = int(store.get_meta("head_step") or 0)
    applied = [r for r in store.iter_steps(state="applied") if r.kind != "train" or r.step <= head_step]
    if not applied or any(r.blob is None for r in applied):
        out.checks.append("reconstruction skipped (not every applied step stores its update)")
        return
    try:
        initial = store.load_initial()
    except LedgerError as err:
        out.problems.append(str(err))
        return
    summed = sum_updates(store, [r.step for r in applied], progress=False)
    dtype = store.manifest.get("storage_dtype", "float32")
    tol = 1e-4 if dtype == "float32" else 2e-2
    # a deletion that drove BatchNorm running variances below 0 set them to 0 (its receipt counts them), so
    # those statistics are no longer initial + sum of the updates; every other tensor still is
    clamped = any((e.get("details") or {}).get("clamped_running_var") for e in store.events("forget"))
    if clamped:
        summed = {k: v for k, v in summed.items() if not k.endswith("running_var")}
    bad = []
    for name, delta in summed.items():
        if name not in model or name not in initial:
            bad.append(name)
            continue
        want = model[name].float()
        got = initial[name].float() + delta
        scale = float(delta.abs().max()) + float(want.abs().max()) * 1e-6 + 1e-12
        if float((got - want).abs().max()) > tol * scale:
            bad.append(name)
    if bad:
        out.problems.append(f"initial weights + the stored updates do not add up to the model for {len(bad)} tensor(s) "
                            f"(e.g. {', '.join(bad[:3])}); an update, the initial weights or the model is wrong")
    out.checks.append(f"initial + sum of {len(applied)} updates = model (tolerance {tol:g} of the update's scale)"
                      + ("; running variances clamped by a deletion left out" if clamped else ""))
