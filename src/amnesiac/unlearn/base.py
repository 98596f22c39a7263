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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from ..options import check, check_declaration
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
        run: RunDir,
        model: nn.Module,
        request: DeletionRequest,
        store: LedgerStore | None,
        plan: Plan | None,
        retain_data: ArrayDataset | Callable[[], ArrayDataset],
        forget_data: ArrayDataset,
        eval_sets: dict[str, ArrayDataset],
        options: dict[str, Any] | None = None,
        progress: bool | None = None,
        on_epoch_end: Callable[[int, nn.Module], None] | None = None,
        topk: tuple[int, ...] = (1,),
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
        # for experiments that watch a method train: called with (epochs done, model) after each full epoch of
        # the methods that train; and the top-k accuracies their evaluations add
        self.on_epoch_end = on_epoch_end
        self.topk = tuple(topk)

    @property
    def retain_data(self) -> ArrayDataset:
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

TRAIN_OPTIONS = {"epochs": "int>=1", "steps": "int>=1", "lr": "float>0", "eval_every": "int>=1",
                 "batch_size": "int>=1", "seed": "int"}


def register_method(name: str, method: Method, *, help: str = "", needs_ledger: bool = False,
                    options: dict[str, str] | None = None) -> Method:
    """Register an unlearning method under ``name``; a name already taken is refused.

    ``options`` declares the options the method reads, name -> kind (``"int>=1"``, ``"int>=0"``,
    ``"int"``, ``"float>0"``, ``"float>=0"``, ``"path"``; see :mod:`amnesiac.options`); :func:`check_options` refuses any other name
    (with a suggestion) and any value of the wrong kind, before anything runs.
    """
    declared = check_declaration("method", name, options or {})
    method.needs_ledger = needs_ledger  # type: ignore[attr-defined]
    method.options = declared  # type: ignore[attr-defined]
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
    return check("method", method, getattr(METHODS.get(method), "options", {}), options)
