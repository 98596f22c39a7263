"""Unlearning: deletion requests, planning, the methods behind one interface, receipts.

>>> from amnesiac.unlearn import METHODS
>>> METHODS.names()[:1]
['amnesiac']
"""

from ..training import evaluate_sets
from . import amnesiac as _amnesiac  # noqa: F401  (each import registers a method)
from . import finetune as _finetune  # noqa: F401
from . import gradient_ascent as _gradient_ascent  # noqa: F401
from . import naive as _naive  # noqa: F401
from . import relabel as _relabel  # noqa: F401
from . import retrain as _retrain  # noqa: F401
from . import salun as _salun  # noqa: F401
from . import scrub as _scrub  # noqa: F401
from .base import METHODS, MethodContext, MethodOutcome, register_method
from .forget import ForgetResult, forget, list_receipts
from .planner import Plan, Thresholds, make_plan, recommend
from .request import DeletionRequest, read_subject_map, resolve_request

__all__ = [
    "METHODS",
    "DeletionRequest",
    "ForgetResult",
    "MethodContext",
    "MethodOutcome",
    "Plan",
    "Thresholds",
    "evaluate_sets",
    "forget",
    "list_receipts",
    "make_plan",
    "read_subject_map",
    "recommend",
    "register_method",
    "resolve_request",
]
