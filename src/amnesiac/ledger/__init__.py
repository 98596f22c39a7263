"""The update ledger: record which samples fed each optimizer step and that step's update.

See :class:`Recorder` (attaches to an optimizer) and :class:`LedgerStore` (the durable record).
"""

from .audit import verify_ledger
from .estimate import StorageEstimate, estimate_for_model, estimate_storage, human_bytes, watched_step_probability
from .recorder import Recorder
from .scope import check_base, head_hash, head_scope, tracked_state
from .store import FORMAT_VERSION, STORAGE_DTYPES, LedgerStore, StepRecord, VerifyReport, is_bare_ledger, reading_ledger

__all__ = [
    "FORMAT_VERSION",
    "LedgerStore",
    "Recorder",
    "STORAGE_DTYPES",
    "StepRecord",
    "StorageEstimate",
    "check_base",
    "head_hash",
    "head_scope",
    "VerifyReport",
    "estimate_for_model",
    "estimate_storage",
    "human_bytes",
    "is_bare_ledger",
    "reading_ledger",
    "tracked_state",
    "verify_ledger",
    "watched_step_probability",
]
