"""Files that are replaced whole or not at all, and small text inputs read with clear errors."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


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



def _try_flock(fh: IO[Any], how: int) -> bool:
    """Take ``how`` (LOCK_EX or LOCK_SH) without waiting; False when another process holds it."""
    try:
        fcntl.flock(fh, how | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def wait_for_lock(fh: IO[Any], what: str, *, say: Callable[[str], None] | None = None, every_s: float = 10.0,
                  poll_s: float = 0.2) -> float:
    """Take an exclusive lock on ``fh``, saying so when it has to wait: one line at once naming ``what`` holds
    it, then one every ``every_s`` seconds with the time waited. Returns the seconds waited."""
    if _try_flock(fh, fcntl.LOCK_EX):
        return 0.0
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    start = time.monotonic()
    say(f"waiting for {what} ...")
    next_line = start + every_s
    while not _try_flock(fh, fcntl.LOCK_EX):
        now = time.monotonic()
        if now >= next_line:
            say(f"still waiting for {what} ({now - start:.0f} s)")
            next_line = now + every_s
        time.sleep(poll_s)
    waited = time.monotonic() - start
    short = what.split(" (")[0]
    say(f"got {short} after {waited:.1f} s")
    return waited


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block, saying so if it waits."""
    fh = open(path, "a+")
    try:
        wait_for_lock(fh, what)
        yield
    finally:
        fh.close()  # closing drops the lock


@contextlib.contextmanager
def shared_lock_unless_busy(path: Path) -> Iterator[bool]:
    """For readers: hold a shared lock on ``path`` for the block and yield True, or yield False at once when a
    writer holds it. Creates nothing: a missing lock file means no writer has ever taken it (ledgers and runs
    create theirs when they are made)."""
    try:
        fh: IO[Any] = open(path, "rb")
    except FileNotFoundError:
        yield True
        return
    except OSError:  # unreadable: nobody can be writing through it from here; say free
        yield True
        return
    try:
        yield _try_flock(fh, fcntl.LOCK_SH)
    finally:
        fh.close()
