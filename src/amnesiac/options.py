"""Typed options: a method or an attack declares the options it reads, each with a kind, and anything else
is refused before work starts, with a suggestion for a misspelt name.

>>> check("method", "demo", {"steps": "int>=1"}, {"steps": 3})
{'steps': 3}
>>> check("attack", "logreg", {"folds": "int>=2"}, {"fold": 3})
Traceback (most recent call last):
...
amnesiac.errors.ConfigError: attack 'logreg' has no option 'fold'. Did you mean 'folds'? Its options: folds
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .errors import ConfigError, did_you_mean


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(float(v))


KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int>=1": ("a positive integer", lambda v: _is_int(v) and v >= 1),
    "int>=2": ("an integer >= 2", lambda v: _is_int(v) and v >= 2),
    "int>=0": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "int": ("an integer", lambda v: _is_int(v)),
    "float>0": ("a positive number", lambda v: _is_num(v) and v > 0),
    "float>=0": ("a number >= 0", lambda v: _is_num(v) and v >= 0),
    "path": ("a directory path", lambda v: isinstance(v, (str, os.PathLike))),
}


def check_declaration(what: str, name: str, declared: Mapping[str, str]) -> dict[str, str]:
    """A declaration whose every kind is known (else a ConfigError naming the option)."""
    for opt, kind in declared.items():
        if kind not in KINDS:
            raise ConfigError(f"option {opt!r} of {what} {name!r} has unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    return dict(declared)


def check(what: str, name: str, declared: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without the ones set to None, or a ConfigError listing every undeclared name (with a
    suggestion) and every value of the wrong kind."""
    problems = []
    for opt, value in options.items():
        if value is None:
            continue
        if opt not in declared:
            problems.append(f"{what} {name!r} has no option {opt!r}." + did_you_mean(str(opt), declared)
                            + f" Its options: {', '.join(sorted(declared)) or 'none'}")
            continue
        kind_text, ok = KINDS[declared[opt]]
        if not ok(value):
            problems.append(f"option {opt!r} of {what} {name!r} must be {kind_text}, got {value!r}")
    if problems:
        raise ConfigError("; ".join(problems))
    return {k: v for k, v in options.items() if v is not None}
