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


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    The bytes go to a temporary file in the same directory, which is then renamed over ``path``.
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


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool | None = None, **kwargs: Any) -> Any:
    """A tqdm bar on stderr; off when ``enabled`` is False, or when None and stderr is not a terminal."""
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(iterable, disable=not enabled, leave=False, dynamic_ncols=True, **kwargs)


def parse_id_list(text: str) -> list[int]:
    """Parse ``"1,2,5-7"`` into ``[1, 2, 5, 6, 7]``.

    >>> parse_id_list("3, 1,5-7")
    [3, 1, 5, 6, 7]
    """
    from .errors import ConfigError

    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ConfigError(
                f"cannot read {part!r} as a sample id or range; expected integers like 17 or 100-120"
            ) from None
    return out


def read_ids_file(path: str | os.PathLike[str]) -> list[int]:
    """Read sample ids from a file: a JSON list, or integers separated by commas, spaces or newlines
    (``#`` starts a comment)."""
    from .errors import ConfigError

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read ids file {p}: {err.strerror or err}") from None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = json.loads(stripped)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ValueError
            return [int(v) for v in values]
        except ValueError:
            raise ConfigError(f"{p}: expected a JSON list of integers") from None
    cleaned = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    try:
        return parse_id_list(",".join(cleaned.replace("\n", ",").split()))
    except ConfigError as err:
        raise ConfigError(f"{p}: {err}") from None
