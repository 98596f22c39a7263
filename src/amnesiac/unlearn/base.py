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


def register_method(name: str, method: Method, *, help: str = "", needs_ledger: bool = False) -> Method:
    """Register an unlearning method under ``name``; a name already taken is refused."""
    method.needs_ledger = needs_ledger  # type: ignore[attr-defined]
    return METHODS.register(name, method, help=help)
