"""amnesiac: delete training records from a trained PyTorch model and measure how well they were forgotten.

Implements *Amnesiac Machine Learning* (Graves, Nagisetty and Ganesh, AAAI 2021).
"""

from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:  # what the lazy loader below returns, for type checkers and IDEs (never imported at run time)
    from .attacks import run_attacks
    from .config import TrainConfig
    from .errors import AmnesiacError
    from .ledger import LedgerStore, Recorder
    from .run import RunDir, train_run
    from .unlearn import forget
    from .unlearn.library import Deletion, forget_records, plan_deletion

# The public API, loaded on first use so that `import amnesiac` (and `amnesiac --help`) stays light.
_API = {
    "Recorder": "amnesiac.ledger",
    "LedgerStore": "amnesiac.ledger",
    "forget_records": "amnesiac.unlearn.library",
    "Deletion": "amnesiac.unlearn.library",
    "plan_deletion": "amnesiac.unlearn.library",
    "TrainConfig": "amnesiac.config",
    "train_run": "amnesiac.run",
    "RunDir": "amnesiac.run",
    "forget": "amnesiac.unlearn",
    "run_attacks": "amnesiac.attacks",
    "AmnesiacError": "amnesiac.errors",
}
__all__ = ["AmnesiacError", "Deletion", "LedgerStore", "Recorder", "RunDir", "TrainConfig", "__version__", "forget",
           "forget_records", "plan_deletion", "run_attacks", "train_run"]
assert set(__all__) == {"__version__", *_API}  # the list spelled out for linters and IDEs is the loader's


def __getattr__(name: str) -> object:  # PEP 562: lazy top-level names
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'amnesiac' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
