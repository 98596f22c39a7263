"""Storage arithmetic for a ledger, before any training: how many steps, how many stored, how many bytes.

>>> est = estimate_storage(num_params=1000, num_buffers=0, num_examples=640, batch_size=64, epochs=2)
>>> est.steps, est.recorded_steps, est.bytes_per_step
(20, 20.0, 4000)
>>> shard = estimate_storage(num_params=1000, num_examples=640, batch_size=64, epochs=2, shards=10)
>>> shard.recorded_steps, shard.blob_bytes
(10.0, 40000.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError
from .store import STORAGE_DTYPES

# Per step: the safetensors header (about 100 bytes per tensor) plus the index row and id rows.
_HEADER_BYTES_PER_TENSOR = 100
_INDEX_BYTES_PER_ID = 24
_INDEX_BYTES_PER_STEP = 120


@dataclass(frozen=True)
class StorageEstimate:
    """The expected size of a ledger."""

    steps: int
    steps_per_epoch: int
    recorded_steps: float
    bytes_per_step: int
    blob_bytes: float
    index_bytes: float
    dtype: str
    watch: int | None
    watch_step_fraction: float
    shards: int | None = None  # a shard ledger: one stored sum per shard, whatever the epochs

    @property
    def total_bytes(self) -> float:
        return self.blob_bytes + self.index_bytes

    @property
    def peak_bytes(self) -> float:
        """The most the ledger holds at once: a shard ledger keeps a shard's old sum beside its new one until
        the epoch's commit, so up to twice its blobs during an epoch."""
        return self.total_bytes + (self.blob_bytes if self.shards else 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes, "peak_bytes": self.peak_bytes}


def watched_step_probability(num_examples: int, batch_size: int, watch: int) -> float:
    """Chance that a batch of ``batch_size`` drawn without replacement holds one of ``watch`` ids.

    >>> round(watched_step_probability(60000, 64, 100), 4)
    0.1013
    """
    if watch <= 0:
        return 0.0
    if watch >= num_examples:
        return 1.0
    b = min(batch_size, num_examples)
    # P(no watched id) = C(N - W, b) / C(N, b), computed in log space.
    log_p = (math.lgamma(num_examples - watch + 1) - math.lgamma(num_examples - watch - b + 1)
             - math.lgamma(num_examples + 1) + math.lgamma(num_examples - b + 1)) if num_examples - watch >= b else -math.inf
    return 1.0 - math.exp(log_p)


def estimate_storage(
    *,
    num_params: int,
    num_buffers: int = 0,
    num_tensors: int = 0,
    num_examples: int,
    batch_size: int,
    epochs: int,
    dtype: str = "float32",
    watch: int | None = None,
    shards: int | None = None,
) -> StorageEstimate:
    """Estimate ledger size for ``epochs`` of training on ``num_examples`` at ``batch_size``.

    ``num_params`` and ``num_buffers`` count the floating-point elements recorded per step; ``watch`` is the
    size of a watch-list (None records every step); ``shards`` estimates a shard ledger with that many
    shards instead (one stored sum each, independent of ``epochs``; steps per epoch as with random batching,
    a few more when shard sizes are not multiples of the batch size).
    """
    for label, value in (("num_examples", num_examples), ("batch_size", batch_size), ("epochs", epochs)):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{label} must be a positive integer, got {value!r}")
    if dtype not in STORAGE_DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    per_epoch = (num_examples + batch_size - 1) // batch_size
    steps = per_epoch * epochs
    frac = 1.0 if watch is None else watched_step_probability(num_examples, batch_size, watch)
    itemsize = STORAGE_DTYPES[dtype].itemsize
    per_step = (num_params + num_buffers) * itemsize + num_tensors * _HEADER_BYTES_PER_TENSOR
    if shards is not None:
        if watch is not None:
            raise ConfigError("a shard ledger stores every shard's sum; a watch-list does not apply to it")
        if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= num_examples:
            raise ConfigError(f"shards must be an integer from 1 to num_examples ({num_examples}), got {shards!r}")
        index = shards * _INDEX_BYTES_PER_STEP + num_examples * 2 * _INDEX_BYTES_PER_ID
        return StorageEstimate(steps, per_epoch, float(shards), per_step, float(shards * per_step), float(index),
                               dtype, None, 1.0, shards)
    recorded = steps * frac
    index = steps * _INDEX_BYTES_PER_STEP + epochs * num_examples * 2 * _INDEX_BYTES_PER_ID
    return StorageEstimate(steps, per_epoch, recorded, per_step, recorded * per_step, float(index), dtype, watch, frac)


def estimate_for_model(model: Any, *, include_buffers: bool = True, **kwargs: Any) -> StorageEstimate:
    """:func:`estimate_storage` with the element counts read off a model."""
    from .scope import tracked_state

    state = tracked_state(model, include_buffers=include_buffers)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(t.numel() for t in state.values())
    return estimate_storage(num_params=n_params, num_buffers=n_total - n_params, num_tensors=len(state), **kwargs)


def human_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``.

    >>> human_bytes(1536)
    '1.5 KiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
