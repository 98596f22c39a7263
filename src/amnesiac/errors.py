"""One exception hierarchy for the whole package.

Every error says what was given, what was expected and, where it helps, what to do next.
All of them derive from :class:`AmnesiacError`, so a caller can catch the package's own
failures with one ``except`` clause.

>>> try:
...     raise ConfigError("batch_size must be a positive integer, got -3")
... except AmnesiacError as err:
...     print(err)
batch_size must be a positive integer, got -3
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AmnesiacError(Exception):
    """Base class of every error raised on purpose by amnesiac."""


class ConfigError(AmnesiacError, ValueError):
    """A setting or argument has a value that is not allowed."""


class UnknownNameError(ConfigError, KeyError):
    """A name (dataset, model, method, ...) is not in its registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DatasetError(AmnesiacError):
    """A dataset file is missing, malformed or inconsistent."""


class LedgerError(AmnesiacError):
    """The update ledger cannot serve the request."""


class LedgerCorruptError(LedgerError):
    """A stored update or the index does not match its checksum or format."""

    def __init__(self, message: str, steps: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.steps = sorted(set(int(s) for s in steps))


class MissingUpdatesError(LedgerError):
    """A request touches steps whose update was indexed but never stored."""

    def __init__(self, message: str, steps: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.steps = sorted(set(int(s) for s in steps))


class ModelMismatchError(LedgerError):
    """The model given is not the one the ledger describes."""


class RecorderError(AmnesiacError):
    """The recorder was used in a way that would make its record wrong."""


class RunDirError(AmnesiacError):
    """A run directory is missing, incomplete or locked."""


class TrainingFailedError(RunDirError):
    """Training stopped (a process of a distributed run died or failed); the run holds its last committed epoch."""


class PendingChangeError(RunDirError):
    """A change to the run is being committed, or an interrupted one awaits recovery."""


class RequestError(ConfigError):
    """A deletion request is empty, malformed or names unknown records."""


class PlanRefusedError(RequestError):
    """The planner recommends another method than amnesiac for this request, and ``force`` was not given."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return a ``" Did you mean 'x'?"`` suffix for the closest choice, or ``""``.

    >>> did_you_mean("resnet", ["resnet18", "small-cnn"])
    " Did you mean 'resnet18'?"
    """
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""
