"""Files that are replaced whole or not at all, and small text inputs read with clear errors."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make renames and creations inside the directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    The bytes go to a temporary file in the same directory (fsynced), which is then renamed over ``path``;
    with ``fsync`` the directory is synced too, so the rename survives a power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())



def read_text_file(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of a small input file, or a ConfigError that names it and says what was wrong."""
    from ..errors import ConfigError

    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError(f"{what} {p} is a directory; expected a file")
        return p.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {what} {p}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not a UTF-8 text file (binary data?)") from None

