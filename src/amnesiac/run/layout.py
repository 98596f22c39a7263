"""The files of a run directory and the readers' view of them: paths, the config, the model file's header, the
ledger's presence, and the commit lock (held exclusive by the one writer committing, shared by readers).

:class:`~amnesiac.run.rundir.RunDir` builds on this with data, models, the run's lock and the commit of an
epoch; :mod:`amnesiac.run.commit` and :mod:`amnesiac.run.audit` need only this, so neither imports the other
nor ``rundir``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..config import TrainConfig
from ..errors import LedgerCorruptError, PendingChangeError, RunDirError
from ..ledger import LedgerStore
from ..utils import shared_lock_unless_busy

JOURNAL = ".commit.json"
NEXT_MODEL = "model.next.safetensors"
COMMIT_LOCK = ".commit.lock"
SERVICE_FILE = ".service.json"  # written by the deletion service that holds the run: who it is and where


class CommitLock:
    """The run's commit lock, owned by the object that takes it: exclusive while a change commits (readers
    then say "being changed"); taking it again while held is a no-op."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[Any] | None = None

    def hold(self) -> None:
        if self._fh is None:
            fh = open(self.path, "a+")
            fcntl.flock(fh, fcntl.LOCK_EX)
            self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the flock
            self._fh = None


class RunFiles:
    """The files of one run directory, and what a reader may do with them (nothing that changes a file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.commit_lock = CommitLock(self.path / COMMIT_LOCK)

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

    def optimizer_path(self, step: int) -> Path:
        return self.path / f"optimizer-{step:012d}.safetensors"

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

    def no_ledger_reason(self) -> str:
        """Why this run has no ledger, from what its config asked for and what it holds."""
        try:
            record = self.config.record
        except RunDirError:
            record = None
        if record == "none":
            return f"{self.path} has no ledger (it was trained with record='none')"
        if not self.model_path.exists():
            return (f"{self.path} has no ledger yet: its training (record={record!r}) stopped before creating one, "
                    f"and before its first epoch; train it again with resume=True")
        return f"{self.path} has no ledger, although its config asks for record={record!r}: it was removed"

    def open_ledger(self, *, writable: bool = False, check_manifest: bool = True) -> LedgerStore:
        """Open the run's ledger; ``writable`` only with the run's lock held."""
        return LedgerStore.open(self.ledger_path, writable=writable, check_manifest=check_manifest)

    @contextlib.contextmanager
    def reading(self, *, interrupted_ok: bool = False) -> Iterator[None]:
        """For commands that only read (info, verify, receipts, attacks): see committed state or nothing.

        Holds the run's commit lock shared for the block, so no change commits while it reads. Raises
        :class:`PendingChangeError` while a change is being committed, or (unless ``interrupted_ok``, for the
        audit, which reports it) when an interrupted one awaits recovery. Readers never complete, roll back,
        create or delete anything themselves.
        """
        with shared_lock_unless_busy(self.path / COMMIT_LOCK) as free:
            if not free:
                raise PendingChangeError(
                    f"{self.path} is being changed right now (a forget, or the end of a training epoch); "
                    "try again when that command finishes")
            if (self.path / JOURNAL).exists() and not interrupted_ok:
                raise PendingChangeError(
                    f"{self.path} holds an interrupted change (its journal {JOURNAL} is still there): a training or "
                    "forget died before finishing. The next command that takes the run's lock completes or rolls it "
                    f"back; run `amnesiac ledger recover {self.path}` to do it now")
            yield

    def served_by(self) -> dict[str, Any] | None:
        """The deletion service holding this run (its pid and address, from ``.service.json``), or None when
        none runs: no file, or a file left by a service that died (its process is gone)."""
        try:
            info = json.loads((self.path / SERVICE_FILE).read_bytes().decode("utf-8"))
            os.kill(int(info["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return info if isinstance(info, dict) else None

    def leftover_writes(self) -> list[Path]:
        """Temporary files of atomic writes in the run directory that a crash interrupted (``.NAME.*.tmp``):
        never a committed file; the next holder of the run's lock removes them."""
        return sorted(p for p in self.path.glob(".*.tmp") if p.is_file())
