"""Small shared helpers: atomic files, state hashing, seeding, progress bars."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch


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


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``model`` by name (the state dict, detached)."""
    return {k: v.detach() for k, v in model.state_dict().items()}


def state_hash(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: names, dtypes, shapes and bytes, in sorted name order.

    >>> import torch
    >>> a = {"w": torch.ones(2)}
    >>> state_hash(a) == state_hash({"w": torch.ones(2)}), state_hash(a) == state_hash({"w": torch.zeros(2)})
    (True, False)
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def model_hash(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (see :func:`state_hash`)."""
    return state_hash(model_state(model))


def fingerprint(model: torch.nn.Module) -> list[list[Any]]:
    """Names, shapes and dtypes of every parameter and buffer: identifies an architecture."""
    return [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that the same seed gives the same weights on CPU."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class LineProgress:
    """Progress for output that is not a terminal (logs, CI, notebooks, ``nohup``): lines on stderr at most
    every ``interval`` seconds with the count, rate and time left, and one at the end. Work that ends within
    ``quiet`` seconds prints nothing, so quick steps do not flood a log.

    >>> import io
    >>> out = io.StringIO()
    >>> for _ in LineProgress(range(3), desc="work", interval=0, quiet=0, file=out):
    ...     pass
    >>> out.getvalue().splitlines()[-1].startswith("[work] 3/3 done")
    True
    """

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 interval: float = 30.0, quiet: float = 5.0, file: Any = None) -> None:
        import time

        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.interval, self.quiet = total, desc, interval, quiet
        self.file = file if file is not None else sys.stderr
        self.n = 0
        self.postfix = ""
        self._clock = time.monotonic
        self.start = self._last = self._clock()
        self._closed = False
        self._spoke = False

    def _say(self, what: str) -> None:
        self._spoke = True
        print(f"[{self.desc}] {what}", file=self.file, flush=True)

    def _status(self) -> str:
        elapsed = self._clock() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total else ""
        left = ""
        if self.total and rate > 0:
            left = f", about {(self.total - self.n) / rate:.0f} s left"
        return f"{self.n}{of} ({rate:.2f}/s, {elapsed:.0f} s{left}){' ' + self.postfix if self.postfix else ''}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if (now - self._last >= self.interval and now - self.start >= self.quiet
                and not (self.total and self.n >= self.total)):
            self._last = now
            self._say(self._status())

    def set_postfix(self, refresh: bool = False, **kw: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in kw.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            elapsed = self._clock() - self.start
            if elapsed < self.quiet and not self._spoke:
                return
            of = f"/{self.total}" if self.total else ""
            self._say(f"{self.n}{of} done in {elapsed:.0f} s{' ' + self.postfix if self.postfix else ''}")

    def __iter__(self) -> Any:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool | None = None, **kwargs: Any) -> Any:
    """Progress for long work: a tqdm bar on a terminal; off the terminal (``enabled=None`` and stderr not a
    terminal) a :class:`LineProgress` that prints a line at most every 30 s (``AMNESIAC_PROGRESS_INTERVAL``);
    nothing when ``enabled`` is False."""
    from tqdm.auto import tqdm

    if enabled is None and not sys.stderr.isatty():
        interval = float(os.environ.get("AMNESIAC_PROGRESS_INTERVAL", "30"))
        return LineProgress(iterable, total=kwargs.get("total"), desc=kwargs.get("desc", "working"), interval=interval)
    if enabled is None:
        enabled = True
    return tqdm(iterable, disable=not enabled, leave=False, dynamic_ncols=True, **kwargs)


MAX_REQUEST_IDS = 10_000_000
_ID_MAX = 2**63 - 1


def _id_value(token: str) -> int:
    value = int(token)
    if not 0 <= value <= _ID_MAX:
        raise ValueError
    return value


def parse_ids(text: str) -> np.ndarray:
    """Parse ``"1,2,5-7"`` into a sorted-as-given int64 array; refuse anything else with a clear error.

    Ids are integers from 0 to 2**63-1; a request names at most :data:`MAX_REQUEST_IDS` of them.

    >>> parse_ids("3, 1,5-7").tolist()
    [3, 1, 5, 6, 7]
    """
    from .errors import ConfigError

    parts: list[np.ndarray] = []
    count = 0
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                a, b = _id_value(lo), _id_value(hi)
                if b < a:
                    raise ValueError
                n = b - a + 1
                chunk = None if count + n > MAX_REQUEST_IDS else np.arange(a, b + 1, dtype=np.int64)
            else:
                n, chunk = 1, np.asarray([_id_value(part)], dtype=np.int64)
        except ValueError:
            raise ConfigError(
                f"cannot read {part[:40]!r} as a sample id or range; expected integers from 0 to 2**63-1 like 17 or "
                "100-120"
            ) from None
        count += n
        if chunk is None or count > MAX_REQUEST_IDS:
            raise ConfigError(f"the request names more than {MAX_REQUEST_IDS:,} ids (at {part[:40]!r}); "
                              "name a class, data subjects or an ids file of the records instead")
        parts.append(chunk)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def parse_id_list(text: str) -> list[int]:
    """Parse ``"1,2,5-7"`` into ``[1, 2, 5, 6, 7]`` (see :func:`parse_ids`).

    >>> parse_id_list("3, 1,5-7")
    [3, 1, 5, 6, 7]
    """
    return parse_ids(text).tolist()


def read_text_file(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of a small input file, or a ConfigError that names it and says what was wrong."""
    from .errors import ConfigError

    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError(f"{what} {p} is a directory; expected a file")
        return p.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {what} {p}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not a UTF-8 text file (binary data?)") from None


def strict_int_list(values: Any, where: str) -> list[int]:
    """``values`` as a list of ids, refusing anything but a JSON list of integers (no bools, floats or strings)."""
    from .errors import ConfigError

    if not isinstance(values, list):
        raise ConfigError(f"{where}: expected a list of integer ids, got {type(values).__name__} {str(values)[:40]!r}")
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _ID_MAX:
            raise ConfigError(f"{where}: expected integer ids from 0 to 2**63-1, got {v!r}")
    if len(values) > MAX_REQUEST_IDS:
        raise ConfigError(f"{where}: more than {MAX_REQUEST_IDS:,} ids")
    return [int(v) for v in values]


def read_ids_file(path: str | os.PathLike[str]) -> list[int]:
    """Read sample ids from a file: a JSON list, or integers separated by commas, spaces or newlines
    (``#`` starts a comment)."""
    from .errors import ConfigError

    p = Path(path)
    text = read_text_file(p, "ids file")
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = json.loads(stripped)
        except ValueError:
            raise ConfigError(f"{p}: expected a JSON list of integers") from None
        return strict_int_list(values, str(p))
    cleaned = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    try:
        return parse_id_list(",".join(cleaned.replace("\n", ",").split()))
    except ConfigError as err:
        raise ConfigError(f"{p}: {err}") from None
