"""The ledger's files besides its index: one safetensors blob per stored update under ``blobs/``, and the
model's initial state (``initial.safetensors``).

A blob is written under a temporary name and renamed into place (:func:`~amnesiac.ledger.blob.write_blob`);
every read is checked against the checksum recorded at write time. :class:`BlobStore` never decides on its
own which files may go: removals are asked for by the commit protocol (:mod:`amnesiac.ledger.commits`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import LedgerCorruptError, LedgerError
from ..utils import atomic_write_bytes, fsync_dir
from .blob import BlobBuffer, checksum, read_file_aligned, tensors_from_buffer, verify_checksum, write_blob
from .format import StepRecord, file_checksum

INITIAL_FILE = "initial.safetensors"


class BlobStore:
    """The stored updates of one ledger directory (``ledger_dir/blobs``) and its initial state.

    ``checksum_kind``: the checksum new blobs are recorded with (the manifest's ``checksum``)."""

    def __init__(self, ledger_dir: Path, *, checksum_kind: str) -> None:
        self.dir = ledger_dir / "blobs"
        self.initial_path = ledger_dir / INITIAL_FILE
        self.checksum_kind = checksum_kind
        self._unsynced: list[Path] = []  # blobs written since the last sync()

    @staticmethod
    def step_name(step: int) -> str:
        """The file name of step ``step``'s blob."""
        return f"{step:012d}.safetensors"

    def write(self, name: str, buf: BlobBuffer, *, fsync: bool = False) -> str:
        """Write a sealed buffer as blob ``name`` (temporary name, then rename); returns its checksum.
        Without ``fsync`` the file is synced by the next :meth:`sync`."""
        digest = checksum(buf.payload(), self.checksum_kind)
        write_blob(self.dir / name, buf, fsync=fsync)
        if not fsync:
            self._unsynced.append(self.dir / name)
        return digest

    def sync(self) -> None:
        """fsync the blobs written since the last sync, then their directory."""
        pending, self._unsynced = self._unsynced, []
        for p in pending:
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                continue  # destroyed since (a committed removal)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.dir)

    def remove(self, names: Iterable[str]) -> int:
        """Delete the named blobs (missing ones are fine) and sync the directory; returns how many were named."""
        names = [n for n in names if n]
        for name in names:
            (self.dir / name).unlink(missing_ok=True)
        if names:
            fsync_dir(self.dir)
        return len(names)

    def entries(self) -> Iterator[Path]:
        """Every file in the blob directory, ours or not."""
        return self.dir.iterdir()

    def read_verified(self, rec: StepRecord) -> tuple[torch.Tensor, int]:
        """The aligned bytes of ``rec``'s blob and their length, checked against the recorded checksum."""
        if not rec.recorded or rec.blob is None:
            raise LedgerError(f"step {rec.step} has no stored update")
        path = self.dir / rec.blob
        try:
            buf, size = read_file_aligned(path)
        except FileNotFoundError:
            raise LedgerCorruptError(f"the update of step {rec.step} is missing ({path})", [rec.step]) from None
        except OSError as err:
            raise LedgerCorruptError(f"the update of step {rec.step} cannot be read ({err})", [rec.step]) from None
        payload = buf.numpy().data[:size]
        if rec.checksum is None or size != rec.nbytes or not verify_checksum(payload, rec.checksum):
            raise LedgerCorruptError(
                f"the update of step {rec.step} does not match its checksum ({path}: {size} bytes, "
                f"{rec.nbytes} recorded); the blob is corrupt or truncated", [rec.step]
            )
        return buf, size

    def read_bytes(self, rec: StepRecord) -> bytes:
        """The raw bytes of a step's blob, checked against its checksum."""
        buf, size = self.read_verified(rec)
        return bytes(buf.numpy().data[:size])

    def load(self, rec: StepRecord) -> dict[str, torch.Tensor]:
        """The tensors of ``rec``'s blob, verified (they share one buffer, no copies)."""
        buf, size = self.read_verified(rec)
        try:
            return tensors_from_buffer(buf, size)
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            try:
                return st_load(bytes(buf.numpy().data[:size]))
            except Exception:
                raise LedgerCorruptError(f"the update of step {rec.step} cannot be decoded ({err})", [rec.step]) from None

    def write_initial(self, tensors: dict[str, torch.Tensor]) -> str:
        """Write the initial state (atomically); returns the file's checksum."""
        atomic_write_bytes(self.initial_path, st_save(tensors))
        return file_checksum(self.initial_path)

    def read_initial(self, expected_sum: str | None) -> dict[str, torch.Tensor]:
        """The initial state, checked against ``expected_sum`` (the checksum recorded when it was saved)."""
        path = self.initial_path
        if not path.is_file():
            raise LedgerCorruptError(f"{path} is missing; the ledger's initial weights are gone")
        if expected_sum is not None and file_checksum(path) != expected_sum:
            raise LedgerCorruptError(f"{path} does not match the checksum recorded when it was saved; it is damaged")
        try:
            return st_load(path.read_bytes())
        except Exception as err:  # safetensors raises several types for a bad file
            raise LedgerCorruptError(f"{path} cannot be decoded ({err})") from None
