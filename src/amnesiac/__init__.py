"""amnesiac: delete training records from a trained PyTorch model and measure how well they were forgotten.

Implements *Amnesiac Machine Learning* (Graves, Nagisetty and Ganesh, AAAI 2021).
"""

from ._version import __version__

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
__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):  # PEP 562: lazy top-level names
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'amnesiac' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
