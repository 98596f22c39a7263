"""One interface for every unlearning method, and the registry that names them.

A method is a callable ``method(ctx: MethodContext) -> MethodOutcome``. It receives the run's current
model (already checked against the ledger), the resolved request, the retained and forgotten data and
its options, and returns the new model with what it did. The orchestrator in :mod:`amnesiac.unlearn.forget`
does everything around it: locking, evaluation, the crash-safe commit and the receipt.

>>> from amnesiac.unlearn import METHODS
>>> "amnesiac" in METHODS
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

import math
import os

import numpy as np

from ..errors import ConfigError, did_you_mean
from ..registry import Registry

if TYPE_CHECKING:
    from ..data.base import ArrayDataset
    from ..ledger import LedgerStore
    from ..run import RunDir
    from .planner import Plan
    from .request import DeletionRequest


class MethodContext:
    """Everything a method may use. ``retain_data`` is built on first use (not every method needs it)."""

    def __init__(
        self,
        run: "RunDir",
        model: nn.Module,
        request: "DeletionRequest",
        store: "LedgerStore | None",
        plan: "Plan | None",
        retain_data: "ArrayDataset | Callable[[], ArrayDataset]",
        forget_data: "ArrayDataset",
        eval_sets: dict[str, "ArrayDataset"],
        options: dict[str, Any] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.run = run
        self.model = model
        self.request = request
        self.store = store
        self.plan = plan
        self._retain = retain_data
        self.forget_data = forget_data
        self.eval_sets = eval_sets
        self.options = dict(options or {})
        self.progress = progress

    @property
    def retain_data(self) -> "ArrayDataset":
        """The training data minus every record ever forgotten from this run (this request's included)."""
        if callable(self._retain):
            self._retain = self._retain()
        return self._retain

    def option(self, name: str, default: Any = None) -> Any:
        value = self.options.get(name)
        return default if value is None else value


@dataclass
class MethodOutcome:
    """What a method did."""

    model: nn.Module
    steps_reverted: list[int] = field(default_factory=list)
    recorded_steps: list[int] = field(default_factory=list)
    optimizer_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


Method = Callable[[MethodContext], MethodOutcome]
METHODS: Registry[Method] = Registry("unlearning method")

# option kinds: what each accepts, checked before a method runs
_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int>=1": ("a positive integer", lambda v: _is_int(v) and v >= 1),
    "int>=0": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "int": ("an integer", lambda v: _is_int(v)),
    "float>0": ("a positive number", lambda v: _is_num(v) and v > 0),
    "float>=0": ("a number >= 0", lambda v: _is_num(v) and v >= 0),
    "path": ("a directory path", lambda v: isinstance(v, (str, os.PathLike))),
}

TRAIN_OPTIONS = {"epochs": "int>=1", "steps": "int>=1", "lr": "float>0", "eval_every": "int>=1",
                 "batch_size": "int>=1", "seed": "int"}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(float(v))


def register_method(name: str, method: Method, *, help: str = "", needs_ledger: bool = False,
                    options: dict[str, str] | None = None) -> Method:
    """Register an unlearning method under ``name``; a name already taken is refused.

    ``options`` declares the options the method reads, name -> kind (``"int>=1"``, ``"int>=0"``,
    ``"int"``, ``"float>0"``, ``"float>=0"``, ``"path"``); :func:`check_options` refuses any other name
    (with a suggestion) and any value of the wrong kind, before anything runs.
    """
    for opt, kind in (options or {}).items():
        if kind not in _KINDS:
            raise ConfigError(f"option {opt!r} of method {name!r} has unknown kind {kind!r}; use one of {', '.join(_KINDS)}")
    method.needs_ledger = needs_ledger  # type: ignore[attr-defined]
    method.options = dict(options or {})  # type: ignore[attr-defined]
    return METHODS.register(name, method, help=help)


def check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Refuse options that ``method`` does not declare (suggesting the closest) or values of the wrong kind.

    >>> check_options("amnesiac", {"repair_steps": 5})
    {'repair_steps': 5}
    >>> check_options("amnesiac", {"repair_step": 5})
    Traceback (most recent call last):
    ...
    amnesiac.errors.ConfigError: method 'amnesiac' has no option 'repair_step'. Did you mean 'repair_steps'? Its options: repair_epochs, repair_lr, repair_steps, seed
    """
    declared: dict[str, str] = getattr(METHODS.get(method), "options", {})
    problems = []
    for opt, value in options.items():
        if value is None:
            continue
        if opt not in declared:
            problems.append(f"method {method!r} has no option {opt!r}." + did_you_mean(str(opt), declared)
                            + f" Its options: {', '.join(sorted(declared)) or 'none'}")
            continue
        what, ok = _KINDS[declared[opt]]
        if not ok(value):
            problems.append(f"option {opt!r} of method {method!r} must be {what}, got {value!r}")
    if problems:
        raise ConfigError("; ".join(problems))
    return {k: v for k, v in options.items() if v is not None}
