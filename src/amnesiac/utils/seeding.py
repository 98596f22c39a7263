"""Seeding: :func:`seed_everything` for scripts and tests; :func:`seeded` for library code, which restores the
caller's random state afterwards."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that the same seed gives the same weights on CPU."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)



@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's generators seeded by ``seed``, then restore the caller's state.

    Library code uses this instead of :func:`seed_everything`, so that training a run or an attack gives
    the same numbers every time without reseeding the caller's random streams behind their back.

    >>> import torch
    >>> before = torch.random.get_rng_state()
    >>> with seeded(3):
    ...     a = torch.rand(2)
    >>> with seeded(3):
    ...     b = torch.rand(2)
    >>> bool((a == b).all()), bool((torch.random.get_rng_state() == before).all())
    (True, True)
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
