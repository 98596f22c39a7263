"""Named crash points for fault-injection tests.

Setting ``AMNESIAC_CRASH_AT=NAME`` makes the process kill itself with SIGKILL when it reaches the point
``NAME`` (for example ``forget:after-ledger``); ``NAME#N`` kills it the N-th time it gets there. Nothing
happens when the variable is unset, which is always the case outside tests and the fault campaign. The
points are listed in :data:`POINTS`, so a test can visit every one.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "train:creating-ledger",    # the new ledger's index and initial weights exist, its manifest not yet
    "train:after-flush",        # every step of the epoch is in the ledger; the model is not saved yet
    "train:after-optimizer",    # the new optimizer state is on disk
    "train-epoch:after-begin",
    "train-epoch:after-journal",
    "train-epoch:after-next",   # model.next written
    "train-epoch:after-ledger", # the commit point: the ledger's head names the new model
    "train-epoch:after-rename",
    "train-epoch:after-cleanup",
    "forget:after-begin",
    "forget:after-method",      # the method ran (updates subtracted, repair recorded); nothing committed
    "forget:after-journal",
    "forget:after-next",
    "forget:after-ledger",
    "commit:after-destroy",
    "forget:after-rename",
    "forget:after-cleanup",
    "ledger:after-fold",        # a head commit adopted new shard sums; the ones they replace are not removed yet
    "ledger:shard-visit",       # a shard ledger wrote a new (uncommitted) version of a shard's sum
    "service:after-applying",   # a service marked a batch's requests applying; its change has not begun
    "service:after-method",     # the batch's updates are subtracted in memory; nothing committed
    "service:after-commit",     # the batch's receipts are committed; the queue does not know yet
    "adapter:before-rewrite",   # a saved adapter's deletion committed; adapter_model.safetensors not rewritten yet
    "ddp:rank0-batch",          # a rank of a distributed run takes its slice of a global batch
    "ddp:rank1-batch",
)

_counts: dict[str, int] = {}


def point(name: str) -> None:
    """Kill this process here if ``AMNESIAC_CRASH_AT`` names this point (see the module docstring)."""
    wanted = os.environ.get("AMNESIAC_CRASH_AT")
    if not wanted:
        return
    target, _, nth = wanted.partition("#")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
