"""Serving deletion requests: a durable queue, a batch applier that is the run's only writer, and an HTTP
service around them (``amnesiac serve RUN``; the HTTP part needs the ``serve`` extra: FastAPI and uvicorn).

The queue and the applier are library objects, usable without HTTP (see :class:`BatchApplier`).
"""

from __future__ import annotations

from .applier import BatchApplier, BatchResult, held_optimizer_steps
from .launch import ServedProcess, free_port, start_service
from .queue import DeletionQueue, IdempotencyConflictError, QueuedRequest, QueueFullError

__all__ = ["BatchApplier", "BatchResult", "DeletionQueue", "IdempotencyConflictError", "QueueFullError",
           "QueuedRequest", "ServedProcess", "free_port", "held_optimizer_steps", "start_service"]
