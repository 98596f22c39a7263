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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from . import __version__
from .checkpoint import load_tensors, optimizer_from_tensors, optimizer_to_tensors, save_tensors
from .data import DataBundle, load_dataset
from .data.base import ArrayDataset
from .errors import ConfigError, RunDirError
from .ledger import LedgerStore, Recorder, estimate_for_model, human_bytes
from .ledger.store import STORAGE_DTYPES
from .models import build_model
from .training import OPTIMIZERS, evaluate, fit, make_optimizer, resolve_device
from .utils import atomic_write_json, fingerprint, model_hash, model_state, seed_everything

RECORD_CHOICES = ("auto", "all", "watch", "none")


@dataclass
class TrainConfig:
    """Everything that determines a training run; saved as ``config.json``.

    ``limit_class`` keeps only the first N examples (in id order) of a class, as the paper's amnesiac run
    kept only the first 100 threes. ``exclude_ids`` drops records (a retrain from scratch uses it).
    """

    dataset: str = "digits"
    model: str = "small-cnn"
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    data_dir: str | None = None
    download: bool = False
    limit_class: dict[int, int] = field(default_factory=dict)
    exclude_ids: list[int] = field(default_factory=list)
    eval_class: int | None = None
    record: str = "auto"
    watch_ids: list[int] | None = None
    watch_class: int | None = None
    ledger_dtype: str = "float32"
    include_buffers: bool = True

    def validate(self) -> "TrainConfig":
        """Check every field; raise ConfigError listing all problems at once."""
        from .data import DATASETS
        from .models import MODELS

        problems = []
        for registry, value in ((DATASETS, self.dataset), (MODELS, self.model)):
            if value not in registry:
                try:
                    registry.get(value)
                except ConfigError as err:
                    problems.append(str(err))
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                problems.append(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            problems.append(f"lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.record not in RECORD_CHOICES:
            problems.append(f"record must be one of {', '.join(RECORD_CHOICES)}, got {self.record!r}")
        if self.record == "watch" and self.watch_ids is None and self.watch_class is None:
            problems.append("record='watch' needs watch_ids or watch_class (the records that may be deleted)")
        if self.ledger_dtype not in STORAGE_DTYPES:
            problems.append(f"ledger_dtype must be one of {', '.join(STORAGE_DTYPES)}, got {self.ledger_dtype!r}")
        for c, n in self.limit_class.items():
            if int(n) < 0:
                problems.append(f"limit_class for class {c} must be >= 0, got {n}")
        if problems:
            raise ConfigError("invalid training configuration:\n  - " + "\n  - ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["limit_class"] = {str(k): int(v) for k, v in self.limit_class.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        d = dict(d)
        d["limit_class"] = {int(k): int(v) for k, v in (d.get("limit_class") or {}).items()}
        return cls(**d)


def select_training_data(train: ArrayDataset, config: TrainConfig) -> ArrayDataset:
    """Apply ``limit_class`` and ``exclude_ids`` to the full training split."""
    data = train
    if config.limit_class:
        keep = torch.ones(len(train), dtype=torch.bool)
        for c, n in config.limit_class.items():
            members = torch.nonzero(train.targets == int(c)).flatten()
            members = members[torch.argsort(train.ids[members])]
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
        """Make a new run directory; refuses a non-empty one unless ``overwrite``."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise RunDirError(
                    f"{path} already exists and is not empty; choose a new --out, pass --overwrite to replace "
                    f"it, or --resume to continue its training"
                )
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.write_config(config)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "RunDir":
        """Open an existing run directory (config.json must be present)."""
        run = cls(path)
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
            raw = json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunDirError(f"cannot read {self.config_path}: {err}") from None
        return TrainConfig.from_dict(raw["config"])

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

    def model_meta(self) -> dict[str, Any]:
        """Epoch, step and hash stored with the current model (reads the file's header only)."""
        from safetensors import safe_open

        if not self.model_path.is_file():
            raise RunDirError(f"{self.model_path} is missing; the run has not finished an epoch yet")
        try:
            with safe_open(str(self.model_path), framework="pt") as fh:
                meta = fh.metadata() or {}
        except Exception as err:  # safetensors raises several types for a bad header
            raise RunDirError(f"{self.model_path} is not a readable safetensors file ({err})") from None
        return {k: json.loads(v) for k, v in meta.items()}

    def load_model(self) -> nn.Module:
        """The run's current model, weights loaded (built on the meta device: no wasted initialisation)."""
        if not self.model_path.is_file():
            raise RunDirError(f"{self.model_path} is missing; the run has not finished an epoch yet")
        tensors, _ = load_tensors(self.model_path)
        self.bundle()  # load data outside the meta-device context
        with torch.device("meta"):
            model = self.new_model()
        model.load_state_dict(tensors, assign=True)
        return model

    def save_model(self, model: nn.Module, **meta: Any) -> str:
        """Atomically write the current model with its hash in the metadata; returns the hash."""
        h = model_hash(model)
        save_tensors(self.model_path, model_state(model), {**meta, "hash": h})
        return h

    def optimizer_path(self, step: int) -> Path:
        return self.path / f"optimizer-{step:012d}.safetensors"

    def save_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, epoch: int, step: int) -> str:
        """Optimizer state first (named by step), then the model, then remove older optimizer files."""
        tensors, meta = optimizer_to_tensors(optimizer)
        save_tensors(self.optimizer_path(step), tensors, meta)
        h = self.save_model(model, epoch=epoch, step=step)
        for p in self.path.glob("optimizer-*.safetensors"):
            if p != self.optimizer_path(step):
                p.unlink(missing_ok=True)
        return h

    def load_optimizer(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        tensors, meta = load_tensors(self.optimizer_path(step))
        optimizer_from_tensors(optimizer, tensors, meta)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return json.loads(self.metrics_path.read_text())

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        atomic_write_json(self.metrics_path, records)

    # ----------------------------------------------------------------- ledger
    def has_ledger(self) -> bool:
        return (self.ledger_path / "manifest.json").is_file()

    def open_ledger(self) -> LedgerStore:
        return LedgerStore.open(self.ledger_path)

    # ----------------------------------------------------------------- locking and commits
    @contextlib.contextmanager
    def lock(self, *, wait: bool = True) -> Iterator[None]:
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
            self.finish_pending_commit()
            yield
        finally:
            fh.close()

    def finish_pending_commit(self) -> None:
        """Complete or roll back a model change interrupted by a crash (see amnesiac.unlearn)."""
        from .unlearn.commit import recover

        recover(self)


@dataclass
class TrainResult:
    """What :func:`train_run` produced."""

    run: RunDir
    model: nn.Module
    history: list[dict[str, Any]]
    final: dict[str, float]
    record: str


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
        if resume and run.model_path.is_file():
            meta = run.model_meta()
            start_epoch, start_step = int(meta["epoch"]) + 1, int(meta["step"])
            model.load_state_dict(load_tensors(run.model_path)[0])
            run.load_optimizer(optimizer, start_step)  # load_state_dict moves the state to the parameters' device
            history = [r for r in run.read_metrics() if r["step"] <= start_step]
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
                store = run.open_ledger()
                dropped = store.truncate_after(start_step)
                if dropped:
                    store.add_event("resume", {"dropped_steps_after": start_step, "dropped": dropped})
            else:
                if start_step:
                    raise RunDirError(f"{run.path} has a checkpoint at step {start_step} but no ledger to resume into")
                store = LedgerStore.create(run.ledger_path, manifest={
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
                store.save_initial(model_state(model))
                store.set_meta(initial_hash=model_hash(model))
            store.set_meta(training_complete=0)
            recorder = Recorder(model, optimizer, store, policy="watch" if record == "watch" else "all",
                                watch_ids=watch, dtype=config.ledger_dtype,
                                include_buffers=config.include_buffers, start_step=start_step)

        def on_epoch_end(epoch: int, rec: dict[str, Any]) -> None:
            if recorder is not None:
                recorder.flush()  # every step of this epoch is durable before the model says so
            h = run.save_checkpoint(model, optimizer, epoch=epoch, step=rec["step"])
            if store is not None:
                store.set_meta(head_hash=h, head_step=rec["step"])
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
            store.set_meta(training_complete=1)
            store.add_event("train", {"epochs": config.epochs, "steps": recorder.step if recorder else 0,
                                      "head_hash": store.get_meta("head_hash")})
            store.close()
        final = {name: evaluate(model, ds)["accuracy"] for name, ds in eval_sets.items()}
        return TrainResult(run, model, history, final, record)
