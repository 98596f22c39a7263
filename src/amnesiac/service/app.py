"""The HTTP face of the deletion service (FastAPI; ``pip install 'amnesiac[serve]'``).

Endpoints (every one but ``/healthz`` needs ``Authorization: Bearer <token>``):

- ``POST /v1/deletions`` ``{"ids": [...]}`` or ``{"subjects": [...]}``, optional ``"idempotency_key"``: validated,
  stored durably, then ``202 {"request_id": ..., "status": "queued"}``;
- ``GET /v1/deletions/{request_id}``: queued / applying / done / refused, with the reason;
- ``GET /v1/receipts/{request_id}`` and ``GET /v1/receipts?after=REQUEST_ID``: receipts, each with its request id;
- ``GET /v1/model``: head hash, steps undone, share since the last repair, ledger bytes, hash history;
- ``GET /``: a read-only HTML page of the same; ``GET /healthz``.

One worker thread applies the queue in batches (:class:`~amnesiac.service.BatchApplier`); the HTTP threads
only validate (against data held in memory) and read the queue, whose SQLite file takes concurrent readers.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request, ...) at run time
import hmac
import html
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..errors import AmnesiacError, RequestError
from .applier import BatchApplier
from .queue import IdempotencyConflictError, QueueFullError

MAX_BODY_BYTES = 1 << 20
FIELDS = {"ids", "subjects", "idempotency_key"}


class Worker:
    """The thread that applies queued requests: woken by each accepted request (or every ``poll_s``); a stop
    lets the batch in progress finish."""

    def __init__(self, applier: BatchApplier, *, poll_s: float = 0.5) -> None:
        self.applier, self.poll_s = applier, poll_s
        self.wake, self.stopping = threading.Event(), threading.Event()
        self.lock = threading.Lock()
        self._info: tuple[int, dict[str, Any]] = (0, applier.model_info())
        self.error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="amnesiac-apply", daemon=True)

    def info(self) -> dict[str, Any]:
        """The model's state after the last batch committed, computed when asked rather than after every batch
        (a stream of requests should not wait on it); asked during a batch, it answers once that batch is done."""
        with self.lock:
            if self._info[0] != self.applier.batches_applied:
                info = self.applier.model_info()
                self._info = (int(info["batches"]), info)
            return dict(self._info[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(self.poll_s)
            self.wake.clear()
            try:
                if self.applier.apply_pending(stop=self.stopping.is_set):
                    self.error = None  # a good batch: the service is healthy again
            except Exception as err:  # noqa: BLE001 - the service stays up to report it; the batch was requeued
                self.error = f"{type(err).__name__}: {err}"
                time.sleep(self.poll_s)


def parse_request(raw: bytes) -> dict[str, Any]:
    """The JSON body of ``POST /v1/deletions``, or :class:`RequestError` naming what is wrong with it."""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"the request body has {len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted")
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise RequestError(f"the request body is not JSON ({err}); send an object such as {{\"ids\": [17, 42]}}") from None
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
    extra = sorted(set(body) - FIELDS)
    if extra:
        raise RequestError(f"unknown field(s) {', '.join(map(repr, extra))}; a request has ids or subjects, and "
                           "optionally idempotency_key")
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
        raise RequestError(f"idempotency_key must be a string of 1 to 200 characters, got {key!r:.60}")
    ids = body.get("ids")
    if isinstance(ids, list) and any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        bad = next(i for i in ids if isinstance(i, bool) or not isinstance(i, int))
        raise RequestError(f"ids must be integers, got {bad!r:.60}")
    return body


def create_app(applier: BatchApplier, *, token: str, poll_s: float = 0.5) -> Any:
    """The FastAPI application serving ``applier``'s run; its worker starts and stops with the app."""
    try:
        from fastapi import Depends, FastAPI, HTTPException, Request
        from fastapi.responses import JSONResponse
    except ImportError:  # pragma: no cover - depends on the environment
        raise AmnesiacError("the deletion service needs FastAPI and uvicorn: pip install 'amnesiac[serve]'") from None
    if len(token) < 16:
        raise RequestError("the service's token must have at least 16 characters")
    worker = Worker(applier, poll_s=poll_s)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.stop()  # SIGTERM: the batch in progress finishes, then the service stops

    app = FastAPI(title="amnesiac deletion service", lifespan=lifespan)
    app.state.worker = worker
    expected = f"Bearer {token}".encode()

    def authorized(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestError)
    async def refused(_: Request, err: RequestError) -> JSONResponse:
        status = 409 if isinstance(err, IdempotencyConflictError) else 422
        return JSONResponse({"detail": str(err)}, status_code=status)

    @app.exception_handler(QueueFullError)
    async def full(_: Request, err: QueueFullError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=429, headers={"Retry-After": "5"})

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": worker.error is None, "error": worker.error}

    @app.post("/v1/deletions", status_code=202, dependencies=[Depends(authorized)])
    async def submit(request: Request) -> dict[str, Any]:
        body = parse_request(await request.body())
        queued = applier.submit(ids=body.get("ids"), subjects=body.get("subjects"),
                                idempotency_key=body.get("idempotency_key"))
        worker.wake.set()
        return {"request_id": queued.request_id, "status": queued.status}

    _add_read_routes(app, applier, worker, Depends(authorized))
    return app


def _add_read_routes(app: Any, applier: BatchApplier, worker: Worker, auth: Any) -> None:
    """The read-only endpoints: a request's status and receipt, the receipts in order, the model, the page."""
    from fastapi import HTTPException
    from fastapi.responses import HTMLResponse

    def find(request_id: str) -> Any:
        found = applier.queue.get(request_id)
        if found is None:
            raise HTTPException(404, f"no deletion request {request_id!r}")
        return found

    @app.get("/v1/deletions/{request_id}", dependencies=[auth])
    def status(request_id: str) -> dict[str, Any]:
        return find(request_id).public(with_proof=True)

    @app.get("/v1/receipts/{request_id}", dependencies=[auth])
    def receipt(request_id: str) -> dict[str, Any]:
        found = find(request_id)
        if found.receipt is None:
            raise HTTPException(404, f"request {request_id} has no receipt: it is {found.status}"
                                + (f" ({found.reason})" if found.reason else ""))
        return found.receipt_body()

    @app.get("/v1/receipts", dependencies=[auth])
    def receipts(after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if not 1 <= limit <= 1000:
            raise RequestError(f"limit must lie in 1..1000, got {limit}")
        return applier.queue.receipts(after=after, limit=limit)

    @app.get("/v1/model", dependencies=[auth])
    def model() -> dict[str, Any]:
        return {**worker.info(), "queue": applier.queue.counts()}

    @app.get("/", response_class=HTMLResponse, dependencies=[auth])
    def page() -> str:
        info = worker.info()
        return render_page(info, applier.queue.counts(), [r.public() for r in applier.queue.recent(20)])


def render_page(info: dict[str, Any], counts: dict[str, int], recent: list[dict[str, Any]]) -> str:
    """The read-only status page: the queue, recent requests and the model's hash history."""
    esc = html.escape
    rows = "".join(f"<tr><td><code>{esc(r['request_id'])}</code></td><td>{esc(r['status'])}</td>"
                   f"<td>{r['records']}</td><td>{esc(r['batch_id'] or '')}</td><td>{esc(r['updated'])}</td>"
                   f"<td>{esc(r['reason'] or '')}</td></tr>" for r in recent)
    history = "".join(f"<li><code>{esc(h['hash'][:16])}</code> {esc(h.get('batch_id') or 'at start')}</li>"
                      for h in reversed(info.get("history", [])))
    queue = ", ".join(f"{k}: {v}" for k, v in counts.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>amnesiac deletion service</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}td,th{{padding:.2em .6em;text-align:left}}
tr:nth-child(even){{background:#f3f3f3}}</style></head><body>
<h1>amnesiac deletion service</h1>
<p>Run <code>{esc(str(info.get('run')))}</code>; model <code>{esc(str(info.get('head_hash', ''))[:16])}</code>;
{info.get('reverted')} of {info.get('steps')} {esc('shards' if info.get('ledger_kind') == 'shards' else 'steps')}
undone; {100 * float(info.get('unrepaired_share', 0)):.2f}% undone since the last repair; ledger
{int(info.get('ledger_bytes', 0)) / 2**20:.1f} MiB.</p>
<h2>Queue</h2><p>{esc(queue)}</p>
<h2>Recent requests</h2><table><tr><th>request</th><th>status</th><th>records</th><th>batch</th><th>updated</th>
<th>reason</th></tr>{rows}</table>
<h2>Model hash history</h2><ol>{history}</ol></body></html>"""
