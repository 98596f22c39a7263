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


def as_id_array(ids: Any, where: str = "ids", *, error: type[Exception] | None = None) -> np.ndarray:
    """Sample ids in any form a caller holds them, as a flat int64 array (order and repeats kept): a list,
    tuple, range or set of integers, a NumPy integer array, or a PyTorch integer tensor (any device). The one
    validator behind ``Recorder.batch``, ``forget_records`` and deletion requests, so each accepts the same.

    Refused with ``error`` (default :class:`~amnesiac.errors.ConfigError`) naming what was given: a bare
    number (wrap it in a list), strings, mappings, booleans, floats (even ``900.0``: an id is never rounded),
    and values outside 0..2**63-1.

    >>> as_id_array([3, 1, 3]).tolist()
    [3, 1, 3]
    >>> as_id_array(np.array([900.7]))
    Traceback (most recent call last):
    ...
    amnesiac.errors.ConfigError: ids: sample ids must be integers; got an array of float64 (900.7 would be rounded)
    """
    from ..errors import ConfigError

    err = error or ConfigError
    kind = type(ids).__name__
    if hasattr(ids, "detach") and hasattr(ids, "dtype"):  # a torch tensor, without importing torch here
        if ids.dtype.is_floating_point or ids.dtype.is_complex or str(ids.dtype) == "torch.bool":
            raise err(f"{where}: sample ids must be integers; got a tensor of {ids.dtype}")
        ids = ids.detach().cpu().numpy()
    if isinstance(ids, (bool, int, float, np.generic)):
        raise err(f"{where}: expected a sequence of sample ids, got the single {kind} {ids!r}; wrap it in a list: [{ids!r}]")
    if isinstance(ids, (str, bytes, dict)) or hasattr(ids, "keys") or ids is None:
        raise err(f"{where}: expected a sequence of integer sample ids (list, NumPy array or tensor), got {kind} "
                  f"{str(ids)[:40]!r}")
    if isinstance(ids, np.ndarray):
        if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
            first = ids.reshape(-1)[:1].tolist()
            shown = f" ({first[0]!r} would be rounded)" if first and isinstance(first[0], float) else ""
            raise err(f"{where}: sample ids must be integers; got an array of {ids.dtype}{shown}")
        if ids.size and ids.dtype.kind == "u" and int(ids.max()) > _ID_MAX:
            raise err(f"{where}: a sample id is out of range; ids are integers from 0 to 2**63-1")
        arr = ids.astype(np.int64, copy=False).reshape(-1)
    else:
        try:
            values = list(ids)
        except TypeError:
            raise err(f"{where}: expected a sequence of integer sample ids, got {kind} {str(ids)[:40]!r}") from None
        bad = [v for v in values if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))]
        if bad:
            raise err(f"{where}: sample ids must be integers; got {bad[0]!r} ({type(bad[0]).__name__})")
        try:
            arr = np.asarray(values, dtype=np.int64).reshape(-1)
        except OverflowError:
            raise err(f"{where}: a sample id is out of range; ids are integers from 0 to 2**63-1") from None
    if arr.size and int(arr.min()) < 0:
        raise err(f"{where}: sample ids are integers from 0 to 2**63-1; got {int(arr.min())}")
    return arr


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
