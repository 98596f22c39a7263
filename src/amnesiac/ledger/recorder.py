"""The Recorder: watches the user's own optimizer and writes each step's samples and update to a ledger.

Usage with any model, optimizer and data loader::

    recorder = Recorder(model, optimizer, store)        # hooks attach; nothing else changes
    for x, y, ids in loader:
        with recorder.batch(ids):                      # the forward pass belongs inside the block
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    recorder.close()                                   # flushes the background writer, removes hooks

Rules, each tested:

* **What an update is.** Delta of step s = state at the end of step s minus the state before it, over every
  trainable parameter and (by default) every floating-point buffer, such as BatchNorm running statistics,
  which change in the forward pass. With ``policy="all"`` the state before step s is the state at the end
  of step s-1 (or when recording began), so the deltas add up exactly to final minus initial.
  With a watch-list or a callable policy the "before" snapshot is taken when the first ``batch()`` block
  of a step opens (and, for a watch-list, when the first micro-batch holding a watched id opens), which
  skips the copy for steps that are not stored.
* **Gradient accumulation.** Ids of every ``batch()`` block add up until ``optimizer.step()`` runs.
* **Skipped steps.** When a step does not run (a GradScaler overflow calls no ``optimizer.step()``), its
  ids stay pending and are attributed to the next step that does run. That is conservative: the next
  step's delta includes the BatchNorm statistics those samples moved, and forgetting them also undoes it.
  Call :meth:`Recorder.discard_pending` to drop them instead when buffers are not tracked.
* **Durability.** Steps reach the ledger through a background writer (steps that store no update are handed
  to it in groups of 32, one transaction each). :meth:`Recorder.flush` returns once every step so far is
  durable; call it before saving a checkpoint of the model (``train_run`` does, every epoch), so no saved
  model contains a step the ledger lacks. :meth:`Recorder.close` flushes.
* **Shard ledgers.** With ``policy="shards"`` (and a ledger created with ``ledger_kind="shards"``) every step
  must draw its batch from one shard of ``shards`` (use :class:`~amnesiac.data.shards.ShardBatchSampler`); a
  step mixing shards is refused before it runs. The consecutive steps of one shard form a *visit*; when the
  next step belongs to another shard (or at :meth:`Recorder.flush`), the visit's update (θ now minus θ when it
  began, float32) is added to that shard's stored sum. The sums become the ledger's at the next head commit
  (:meth:`LedgerStore.mark_head` in your own loop; ``train_run`` commits every epoch).
* **A step with no ids is refused.** ``optimizer.step()`` outside any ``batch()`` block raises
  :class:`~amnesiac.errors.RecorderError` before the parameters change, because an update whose samples
  are unknown could never be honoured by a deletion request.
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.shards import ShardMap
from ..errors import ConfigError, RecorderError
from ..utils.ids import as_id_array
from .blob import BlobBuffer, Layout
from .scope import tracked_state
from .store import STORAGE_DTYPES, LedgerStore

Policy = str | Callable[[np.ndarray], bool]


class _Snapshot:
    """A copy of the tracked state in one contiguous allocation, reused from step to step."""

    def __init__(self, live: dict[str, torch.Tensor]) -> None:
        total = sum(t.numel() for t in live.values())
        self.flat = torch.empty(total, dtype=torch.float32)
        self.views: dict[str, torch.Tensor] = {}
        pos = 0
        for name, t in live.items():
            self.views[name] = self.flat[pos : pos + t.numel()].view(t.shape)
            pos += t.numel()
        self.release_with_step = False  # set per step: whether the writer releases it once the step is written


class _Pool:
    """At most ``limit`` objects made by ``make``; a released one is reused, else the caller waits for the
    writer to release one (backpressure), raising if the writer has failed meanwhile."""

    def __init__(self, make: Callable[[], Any], limit: int) -> None:
        self.make = make
        self.limit = limit
        self.made = 0
        self.free: queue.Queue[Any] = queue.Queue()

    def acquire(self, writer: _Writer) -> Any:
        while True:
            try:
                return self.free.get_nowait()
            except queue.Empty:
                pass
            if self.made < self.limit:
                self.made += 1
                return self.make()
            writer.raise_if_failed()
            try:
                return self.free.get(timeout=0.5)
            except queue.Empty:
                continue

    def release(self, item: Any) -> None:
        self.free.put(item)

    def clear(self) -> None:
        """Drop the released objects (they may be large); ``acquire`` would make new ones."""
        self.free = queue.Queue()


class _Writer(threading.Thread):
    """Background thread that persists steps; a bounded queue gives backpressure."""

    def __init__(self, store: LedgerStore, maxsize: int, fsync: bool, buffers: _Pool, snapshots: _Pool) -> None:
        super().__init__(name="amnesiac-ledger-writer", daemon=True)
        self.store = store
        self.fsync = fsync
        self.buffers = buffers
        self.snapshots = snapshots
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.written = 0

    def run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                if self.error is None and isinstance(item, list):  # steps indexed without an update
                    self.store.index.insert_rows([(int(st), int(ep), kind, np.asarray(ids, dtype=np.int64).reshape(-1),
                                                   None, None, 0) for st, ep, kind, ids in item])
                    self.written += len(item)
                elif self.error is None and item[0] == "shard":  # a shard visit, added to the shard's sum
                    _, shard, epoch, kind, ids, delta = item
                    self.store.shards.put_visit(shard, epoch=epoch, ids=ids, update=delta, kind=kind, fsync=self.fsync)
                    self.written += 1
                elif self.error is None:
                    step, epoch, kind, ids, update, before, after = item
                    try:
                        if before is not None:  # the delta was left to this thread: after - before
                            with torch.no_grad():
                                for name, out in update.views.items():
                                    torch.sub(after.views[name], before.views[name], out=out)
                        self.store.put_step(step, epoch=epoch, ids=ids, update=update, kind=kind, fsync=self.fsync)
                    finally:
                        if before is not None:
                            self.snapshots.release(before)
                        if after is not None and after.release_with_step:
                            self.snapshots.release(after)
                        if update is not None:
                            self.buffers.release(update)  # the buffer may be refilled now
                    self.written += 1
            except BaseException as err:  # surfaced in the training thread
                self.error = err
            finally:
                self.queue.task_done()

    def put(self, item: Any) -> None:
        while True:
            self.raise_if_failed()
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self.is_alive():
                    raise RecorderError("the ledger writer thread stopped; no more steps can be recorded") from None

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise RecorderError(f"the ledger writer failed: {self.error!r}") from self.error


def available_memory() -> int | None:
    """Bytes of memory the machine has available now (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_queue_memory(live: dict[str, torch.Tensor], buffer_bytes: int, queue_size: int) -> None:
    """Refuse a ``queue_size`` whose worst case (``queue_size + 2`` float32 snapshots of the tracked state and
    ``queue_size + 1`` update buffers) would take more than half the memory available now, before any is taken."""
    snapshot = sum(t.numel() * 4 for t in live.values())
    need = (queue_size + 2) * snapshot + (queue_size + 1) * buffer_bytes
    have = available_memory()
    if have is not None and need > have // 2:
        fits = max(1, (have // 2 - 2 * snapshot - buffer_bytes) // max(snapshot + buffer_bytes, 1))
        raise ConfigError(f"queue_size={queue_size} could hold up to {need / 2**30:.1f} GiB of step updates and "
                          f"snapshots, more than half of the {have / 2**30:.1f} GiB available; use queue_size={fits} "
                          "or less (the default 4 keeps a few updates in flight)")


class _Strategy:
    """What a recording policy decides, asked by the recorder's hot path (never a comparison of names).

    ``continuous``: the state before every step is kept (every-step and shard ledgers), not taken on demand.
    ``visits``: steps add up into their shard's visit instead of being stored one by one.
    """

    continuous = True
    visits = False

    def before_batch(self, rec: Recorder, ids: np.ndarray) -> None:
        """A batch of ``ids`` opens (before its forward pass)."""

    def should_store(self, rec: Recorder, ids: np.ndarray) -> bool:
        """Whether the step that just ran on ``ids`` stores its update."""
        return True


class _EveryStep(_Strategy):
    """``policy="all"``: every step stores its update."""


class _WatchList(_Strategy):
    """``policy="watch"``: a step stores its update when it holds an id of the watch-list (the state is
    copied when the first watched micro-batch opens)."""

    continuous = False

    def before_batch(self, rec: Recorder, ids: np.ndarray) -> None:
        hit = rec._watched(ids)
        rec._pending_watched |= hit
        if hit and not rec._have_snapshot:
            rec._take_snapshot()

    def should_store(self, rec: Recorder, ids: np.ndarray) -> bool:
        return rec._pending_watched


class _Decide(_Strategy):
    """A callable ``f(ids) -> bool`` decides after each step (so the state is copied before every step)."""

    continuous = False

    def __init__(self, decide: Callable[[np.ndarray], bool]) -> None:
        self.decide = decide

    def before_batch(self, rec: Recorder, ids: np.ndarray) -> None:
        if not rec._have_snapshot:
            rec._take_snapshot()

    def should_store(self, rec: Recorder, ids: np.ndarray) -> bool:
        return bool(self.decide(ids))


class _ShardVisits(_Strategy):
    """``policy="shards"``: consecutive steps of one shard form a visit, whose update is added to the shard's sum."""

    visits = True

    def before_batch(self, rec: Recorder, ids: np.ndarray) -> None:
        rec._enter_shard(ids)


def _strategy_for(policy: Policy, store: LedgerStore, *, watch_ids: Iterable[int] | None,
                  shards: ShardMap | None) -> _Strategy:
    """The strategy a policy names, refused where it does not fit the ledger or lacks what it needs."""
    if not (callable(policy) or policy in ("all", "watch", "shards")):
        raise ConfigError(f"policy must be 'all', 'watch', 'shards' or a callable f(ids) -> bool, got {policy!r}")
    if (policy == "shards") != (store.kind == "shards"):
        raise ConfigError(f"policy {policy!r} does not fit this ledger, which stores one update per "
                          f"{'shard' if store.kind == 'shards' else 'step'}; a shard ledger is recorded with "
                          "policy='shards' and a ShardMap, and only it")
    if callable(policy):
        return _Decide(policy)
    if policy == "shards":
        if not isinstance(shards, ShardMap):
            raise ConfigError(f"policy='shards' needs shards=ShardMap(...) (which shard each record is in), got {shards!r}")
        return _ShardVisits()
    if policy == "watch":
        if watch_ids is None:
            raise ConfigError("policy='watch' needs watch_ids: the sample ids that may later be deleted")
        return _WatchList()
    return _EveryStep()


def _storage_dtype(dtype: str | None, store: LedgerStore) -> torch.dtype:
    """The storage dtype: the ledger's manifest says it; ``dtype``, if given, must agree (one source)."""
    recorded = str(store.manifest.get("storage_dtype", "float32"))
    if dtype is None:
        return STORAGE_DTYPES[recorded]
    if dtype not in STORAGE_DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    if dtype != recorded:
        raise ConfigError(f"dtype={dtype!r} differs from the ledger's storage dtype {recorded!r} (its manifest); "
                          "leave dtype out to use the ledger's")
    return STORAGE_DTYPES[dtype]


class Recorder:
    """Record every optimizer step's sample ids and (per policy) its parameter update into a ledger.

    Args:
        model: the model being trained (its parameters must be the optimizer's).
        optimizer: the user's own optimizer; only step pre/post hooks are attached.
        store: an open :class:`LedgerStore`.
        policy: ``"all"`` stores every update; ``"watch"`` stores only steps holding an id from
            ``watch_ids``; a callable ``f(ids) -> bool`` decides per step. Steps not stored are still
            indexed with their ids, so a later request touching them is refused by step number.
            ``"shards"`` adds each visit of a shard to that shard's sum (a shard ledger; needs ``shards``).
        watch_ids: the deletable ids for ``policy="watch"``.
        shards: the :class:`~amnesiac.data.shards.ShardMap` of the training records, for ``policy="shards"``.
        dtype: storage dtype of updates: ``"float32"`` (exact), ``"float16"`` or ``"bfloat16"``; the ledger's
            manifest holds it (``storage_dtype``), so leave it out, or give the same.
        include_buffers: record floating buffers (BatchNorm statistics) too. Default True.
        start_step: number of the last step already in the ledger (for resuming).
        queue_size: how many step updates may wait for the writer. It bounds memory: at most
            ``queue_size + 1`` update buffers in the storage dtype and, for float32 state on CPU,
            ``queue_size + 2`` float32 snapshots of the tracked state exist at once.
        kind: label stored with each step (``"train"``, ``"repair"``, ...).
        offload_delta: compute each update (after - before, converted to the storage dtype) in the writer
            thread instead of the training thread, which then only copies the state once per step.
            ``None`` (default) offloads when every step is stored (``policy="all"``) and the tracked
            state is float32 on CPU; on a GPU the subtraction is cheap where it is and is never offloaded.
        fsync: sync each blob as the writer writes it (in the writer thread).
        durable: :meth:`flush` (and so :meth:`close`) makes every step so far survive a power loss, not only
            a killed process: blobs and their directory are fsynced and the index is checkpointed. Default
            True; ``False`` keeps only the killed-process guarantee (see docs/benchmarks.md for the cost).

    >>> import tempfile, torch
    >>> from amnesiac.ledger import LedgerStore, Recorder
    >>> model = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> store = LedgerStore.create(tempfile.mkdtemp() + "/l", manifest={"storage_dtype": "float32"})
    >>> with Recorder(model, opt, store) as rec:
    ...     with rec.batch([7, 8]):
    ...         model(torch.ones(2, 2)).sum().backward()
    ...         opt.step()
    >>> store.step(1).ids.tolist(), store.step(1).recorded
    ([7, 8], True)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        store: LedgerStore,
        *,
        policy: Policy = "all",
        watch_ids: Iterable[int] | None = None,
        dtype: str | None = None,
        include_buffers: bool = True,
        start_step: int = 0,
        queue_size: int = 4,
        fsync: bool = False,
        kind: str = "train",
        offload_delta: bool | None = None,
        durable: bool = True,
        shards: ShardMap | None = None,
    ) -> None:
        self._strategy = _strategy_for(policy, store, watch_ids=watch_ids, shards=shards)
        self.dtype = _storage_dtype(dtype, store)
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigError(f"queue_size must be a positive integer, got {queue_size!r}")
        opt_params = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if not opt_params & {id(p) for p in model.parameters()}:
            raise ConfigError("the optimizer holds none of the model's parameters; pass the optimizer that trains this model")
        self.model = model
        self.optimizer = optimizer
        self.store = store
        self.policy = policy
        self.watch: np.ndarray = np.unique(np.asarray(list(watch_ids), dtype=np.int64)) if watch_ids is not None else np.empty(0, np.int64)
        self.include_buffers = include_buffers
        self.durable = durable
        self.kind = kind
        self.step = int(start_step)
        self.epoch = 0
        self.recorded_steps = 0
        self._live = tracked_state(model, include_buffers=include_buffers)
        self._names = list(self._live)
        self._identity = self._live_identity()
        self._pending: list[np.ndarray] = []
        self._pending_watched = False  # some pending id is on the watch-list
        # steps that store no update are handed to the writer in groups (one transaction each), since a
        # hand-off per step costs more than the step's own index row; flush() hands over what is left
        self._unstored: list[tuple[int, int, str, np.ndarray]] = []
        self._unstored_group = 32
        self.shards = shards
        self._visit: int | None = None  # the shard whose consecutive steps are running
        self._visit_ids: list[np.ndarray] = []
        self._step_shard: int | None = None  # the shard of the pending (not yet run) step
        self._set_up_state(queue_size, fsync, offload_delta)
        self._handles = [
            optimizer.register_step_pre_hook(self._pre_hook),
            optimizer.register_step_post_hook(self._post_hook),
        ]
        self._closed = False
        # a recorder dropped without close() still stops its writer thread (steps already queued are written)
        self._finalizer = weakref.finalize(self, _stop_writer, self._writer)

    def _set_up_state(self, queue_size: int, fsync: bool, offload_delta: bool | None) -> None:
        """Where updates are computed, the bounded pools of snapshots and buffers, and the writer thread."""
        # Offloaded, the training thread only copies the state into a pooled snapshot (one memory pass) and the
        # writer thread subtracts and converts; otherwise the training thread subtracts into the blob buffer and
        # refreshes one snapshot. Offloading pays when every step is stored: the writer's subtraction overlaps
        # training. With a watch-list most steps store nothing, and a stored step is cheaper done at once (one
        # subtraction) than offloaded (a copy here plus a subtraction there); shard visits sum in place.
        cpu_f32 = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in self._live.values())
        if offload_delta and not cpu_f32:
            raise ConfigError("offload_delta=True needs the tracked state to be float32 on the CPU")
        every_step = isinstance(self._strategy, _EveryStep)
        self._defer = (cpu_f32 and every_step) if offload_delta is None else bool(offload_delta)
        if self._strategy.visits:
            self._defer = False
        live = self._live
        self._pool = _Pool(lambda: _Snapshot(live), limit=queue_size + 2)
        self._current: _Snapshot | None = None  # deferred mode: the state before the coming step
        self._snap: dict[str, torch.Tensor] = {}  # direct mode: the same, refreshed in place
        # update buffers: at most queue_size + 1 exist, so memory stays bounded
        layout = Layout.of(self._live, self.dtype)
        check_queue_memory(self._live, layout.data_bytes, queue_size)
        self._buffers = _Pool(lambda: BlobBuffer(layout), limit=queue_size + 1)
        self._writer = _Writer(self.store, queue_size, fsync, self._buffers, self._pool)
        self._writer.start()
        if not self._defer:
            self._snap = {k: v.detach().clone() for k, v in self._live.items()}
        self._have_snapshot = False
        if self._strategy.continuous:
            self._take_snapshot()

    # ------------------------------------------------------------------ user API
    def set_epoch(self, epoch: int) -> None:
        """Tell the recorder which epoch the coming steps belong to (stored in the index)."""
        self.epoch = int(epoch)

    @contextmanager
    def batch(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> Iterator[Recorder]:
        """Declare the sample ids feeding the coming optimizer step (micro-batches accumulate)."""
        if self._closed:
            raise RecorderError("this recorder is closed; create a new one to keep recording")
        arr = as_id_array(ids, "recorder.batch(ids)", error=RecorderError)
        if arr.size == 0:
            raise RecorderError("recorder.batch() was given no sample ids; every step must name the samples it used")
        self._strategy.before_batch(self, arr)
        self._pending.append(arr)
        yield self

    @property
    def pending_ids(self) -> np.ndarray:
        """Ids declared since the last step that really ran."""
        return np.concatenate(self._pending) if self._pending else np.empty(0, np.int64)

    def discard_pending(self) -> None:
        """Drop the ids of a skipped step instead of carrying them into the next one."""
        self._pending.clear()
        self._pending_watched = False
        self._step_shard = None
        if not self._strategy.continuous:
            self._drop_snapshot()

    def flush(self) -> None:
        """Wait until every step so far is durable in the ledger, also against a power loss (blobs and
        their directory fsynced, the index's WAL checkpointed); raise if the writer failed."""
        self._writer.raise_if_failed()
        self._close_visit()
        self._hand_over_unstored()
        self._writer.queue.join()
        self._writer.raise_if_failed()
        if self.durable:
            self.store.sync()

    def close(self) -> None:
        """Flush, stop the writer and remove the optimizer hooks. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for h in self._handles:
            h.remove()
        try:
            self.flush()
        finally:
            self._finalizer.detach()
            _stop_writer(self._writer)
            # the snapshots and update buffers can be hundreds of MiB: let them go with the recorder's use
            self._current = None
            self._snap = {}
            self._pool.clear()
            self._buffers.clear()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the user's exception is the one that matters: a failure to close must not replace it
            self.close()
        except Exception as err:  # noqa: BLE001
            import warnings

            warnings.warn(f"closing the recorder after an error also failed: {err!r}", RuntimeWarning, stacklevel=2)

    # ------------------------------------------------------------------ internals
    def _take_snapshot(self) -> None:
        if self._defer:
            self._current = self._copy_state(self._pool.acquire(self._writer))
        else:
            with torch.no_grad():
                _copy_all([self._snap[k] for k in self._names], [self._live[k] for k in self._names])
        self._have_snapshot = True

    def _copy_state(self, snap: _Snapshot) -> _Snapshot:
        with torch.no_grad():
            _copy_all([snap.views[k] for k in self._names], [self._live[k] for k in self._names])
        return snap

    def _drop_snapshot(self) -> None:
        if self._current is not None:
            self._pool.release(self._current)
            self._current = None
        self._have_snapshot = False

    def _watched(self, arr: np.ndarray) -> bool:
        """Whether any id of ``arr`` is on the (sorted, unique) watch-list: a binary search per id."""
        if self.watch.size == 0:
            return False
        pos = np.searchsorted(self.watch, arr)
        return bool((self.watch[np.minimum(pos, self.watch.size - 1)] == arr).any())

    def _live_identity(self) -> list[tuple[int, int, torch.dtype, torch.device]]:
        """Which tensors the model trains now: the object, its storage, dtype and device of each."""
        names = set(self._names)
        return [(id(t), t.data_ptr(), t.dtype, t.device)
                for n, t in self.model.state_dict(keep_vars=True).items() if n in names]

    def _pre_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._writer.raise_if_failed()
        if self._live_identity() != self._identity:
            raise RecorderError(
                "the model's parameters or buffers were replaced since this Recorder was created (model.to(), "
                ".half(), load_state_dict(assign=True) or similar); the recorder would store updates of tensors "
                "the model no longer trains. Close this recorder and create a new one after moving or converting "
                "the model (and its optimizer)"
            )
        if not self._pending:
            raise RecorderError(
                "optimizer.step() ran with no sample ids declared; wrap the forward pass, backward pass and "
                "step in `with recorder.batch(ids):` so the ledger knows which samples this update used"
            )

    def _post_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        ids = self.pending_ids
        self._pending.clear()
        self.step += 1
        if self._strategy.visits:  # the step joins its shard's visit; the visit is stored when it ends
            self._visit_ids.append(ids)
            self._step_shard = None
            return
        update: BlobBuffer | None = None
        before = after = None
        store = self._strategy.should_store(self, ids)
        self._pending_watched = False
        if store:
            if not self._have_snapshot:  # callable said yes but no snapshot: cannot know the update
                raise RecorderError(f"step {self.step}: no state snapshot was taken before this step")
            update = self._buffers.acquire(self._writer)
            if self._defer:
                before = self._current
                after = self._copy_state(self._pool.acquire(self._writer))
                continuous = self._strategy.continuous
                after.release_with_step = not continuous
                self._current = after if continuous else None
                self._have_snapshot = continuous
            else:
                with torch.no_grad():
                    for name in self._names:
                        live, snap, out = self._live[name], self._snap[name], update.views[name]
                        if live.device.type == "cpu":
                            torch.sub(live, snap, out=out)
                        else:
                            out.copy_(live - snap)
                if self._strategy.continuous:
                    self._take_snapshot()
                else:
                    self._have_snapshot = False
            self.recorded_steps += 1
        elif not self._strategy.continuous:  # an every-step ledger stores every step
            self._drop_snapshot()
        if update is None:
            self._unstored.append((self.step, self.epoch, self.kind, ids))
            if len(self._unstored) >= self._unstored_group:
                self._hand_over_unstored()
        else:
            self._hand_over_unstored()  # keep the writer's order the steps' order
            self._writer.put((self.step, self.epoch, self.kind, ids, update, before, after))

    def _enter_shard(self, arr: np.ndarray) -> None:
        """A batch of ``arr`` opens: it must lie in one shard (the pending step's, if micro-batches add up);
        a step in another shard than the running visit ends that visit first (before this forward pass)."""
        assert self.shards is not None
        try:
            found = np.unique(self.shards.shard_of(arr))
        except ConfigError as err:
            raise RecorderError(f"{err}; every record of a shard-ledger run needs a shard") from None
        if found.size != 1:
            raise RecorderError(f"this batch mixes records of shards {found[:5].tolist()}; with a shard ledger every "
                                "optimizer step draws from one shard (use amnesiac.data.ShardBatchSampler)")
        shard = int(found[0])
        if self._step_shard is not None and shard != self._step_shard:
            raise RecorderError(f"micro-batches of one optimizer step come from shards {self._step_shard} and {shard}; "
                                "with a shard ledger every step draws from one shard")
        if self._visit is not None and shard != self._visit and self._step_shard is None:
            self._close_visit()
        self._visit = shard
        self._step_shard = shard

    def _close_visit(self) -> None:
        """Hand the running visit's update (θ now minus θ when it began, float32) to the writer."""
        if not self._strategy.visits or self._visit is None or not self._visit_ids:
            return
        with torch.no_grad():
            delta = {name: (self._live[name].float() - self._snap[name].float()).cpu() for name in self._names}
        self._take_snapshot()
        ids = np.concatenate(self._visit_ids)
        # a step declared but not run yet (flush inside a batch block) opens the next visit of its shard
        shard, self._visit, self._visit_ids = self._visit, self._step_shard, []
        self.recorded_steps += 1
        self._writer.put(("shard", shard, self.epoch, self.kind, ids, delta))

    def _hand_over_unstored(self) -> None:
        if self._unstored:
            group, self._unstored = self._unstored, []
            self._writer.put(group)


def _stop_writer(writer: _Writer) -> None:
    if writer.is_alive():
        writer.queue.put(None)
        writer.join()


def _copy_all(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
    else:  # pragma: no cover - older torch
        for d, s_ in zip(dst, src):
            d.copy_(s_)
