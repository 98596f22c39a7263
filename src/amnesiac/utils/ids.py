"""Sample ids as users write them: ``1,2,5-7``, JSON lists, files of ids; anything else refused clearly."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .files import read_text_file

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
    from ..errors import ConfigError

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


def strict_int_list(values: Any, where: str) -> list[int]:
    """``values`` as a list of ids, refusing anything but a JSON list of integers (no bools, floats or strings)."""
    from ..errors import ConfigError

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
    from ..errors import ConfigError

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
