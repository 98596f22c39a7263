"""``amnesiac serve``: accept deletion requests over HTTP, apply them in batches, keep the receipts."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
from pathlib import Path
from typing import Any

from ..config import Thresholds
from ..errors import ConfigError
from .common import add_subparser


def add_parser(sub: Any) -> None:
    p = add_subparser(
        sub, "serve", help="serve deletion requests for a run over HTTP (needs amnesiac[serve])",
        description="Hold a run as its only writer and take deletion requests over HTTP: each is validated, "
                    "stored durably, applied in a batch with the others waiting, and given a receipt. Every "
                    "endpoint but /healthz needs 'Authorization: Bearer TOKEN'; the token is read from "
                    "--token-file, or generated at first start into RUN/service/token (readable by you only).",
        examples="  amnesiac serve runs/digits\n"
                 "  curl -H \"Authorization: Bearer $(cat runs/digits/service/token)\" \\\n"
                 "       -d '{\"ids\": [17, 42]}' http://127.0.0.1:8470/v1/deletions\n")
    p.add_argument("run", help="the run directory to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8470, help="port (default 8470)")
    p.add_argument("--token-file", default=None, help="file holding the bearer token (default RUN/service/token)")
    p.add_argument("--subjects-file", default=None, help="subject -> ids map, for requests that name subjects")
    p.add_argument("--max-share", type=float, default=Thresholds().amnesiac_max_share,
                   help="share of steps undone since the last repair above which a batch is repaired")
    p.add_argument("--repair-share", type=float, default=Thresholds().repair_max_share,
                   help="share of steps above which the planner recommends another method")
    p.add_argument("--repair-steps", default="owed",
                   help="'owed' (as many optimizer steps as the undone updates held) or a number (0: never)")
    p.add_argument("--repair-fraction", type=float, default=1.0,
                   help="with 'owed', repair with this share of the owed steps, in (0, 1] (default 1: all); "
                        "cheaper, and the model recovers less (docs/benchmarks.md measures both)")
    p.add_argument("--force", action="store_true",
                   help="serve requests past the planner's advice with amnesiac and a repair, instead of refusing")
    p.add_argument("--max-batch", type=int, default=1000, help="most requests in one batch")
    p.add_argument("--max-pending", type=int, default=10_000, help="most requests waiting; more get 429")
    p.set_defaults(func=run)


def read_or_make_token(path: Path) -> str:
    """The bearer token in ``path``; a new random one written there (mode 0600) when the file does not exist."""
    if path.exists():
        token = path.read_text().strip()
        if len(token) < 16:
            raise ConfigError(f"the token in {path} has {len(token)} characters; at least 16 are needed")
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def run(args: argparse.Namespace) -> int:
    from ..run import RunDir
    from ..service import BatchApplier, DeletionQueue
    from ..service.applier import QUEUE_DIR
    from ..unlearn import read_subject_map

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must lie in 1..65535, got {args.port}")
    repair: int | str = args.repair_steps
    if repair != "owed":
        if not str(repair).isdigit():
            raise ConfigError(f"--repair-steps must be 'owed' or a number >= 0, got {repair!r}")
        repair = int(repair)
    if not 0 < args.repair_fraction <= 1:
        raise ConfigError(f"--repair-fraction must lie in (0, 1], got {args.repair_fraction}")
    try:
        import uvicorn

        from ..service.app import create_app
    except ImportError:
        raise ConfigError("amnesiac serve needs FastAPI and uvicorn: pip install 'amnesiac[serve]'") from None
    run_dir = RunDir.open(args.run)
    subject_map = read_subject_map(args.subjects_file) if args.subjects_file else None
    thresholds = Thresholds(args.max_share, args.repair_share)
    token_path = Path(args.token_file) if args.token_file else run_dir.path / QUEUE_DIR / "token"
    token = read_or_make_token(token_path)
    url = f"http://{args.host}:{args.port}"
    queue = DeletionQueue(run_dir.path / QUEUE_DIR / "queue.sqlite", max_pending=args.max_pending)
    with queue, BatchApplier(run_dir, queue, thresholds=thresholds, force=args.force, repair=repair,
                             repair_fraction=args.repair_fraction,
                             subject_map=subject_map, max_batch=args.max_batch, owner={"url": url}) as applier:
        done, requeued = applier.recovered
        if done or requeued:
            print(f"recovered from an interrupted batch: {done} request(s) done, {requeued} queued again", flush=True)
        print(f"serving {run_dir.path} at {url} (token in {token_path}); Ctrl-C stops after the current batch",
              flush=True)
        for sig in (signal.SIGTERM, signal.SIGINT):  # uvicorn stops gracefully, then raises the signal again
            signal.signal(sig, _stop)
        try:
            uvicorn.run(create_app(applier, token=token), host=args.host, port=args.port, log_level="warning")
        except _Stopped:
            pass
    print("stopped", flush=True)
    return 0


class _Stopped(Exception):
    pass


def _stop(signum: int, frame: Any) -> None:
    """A stop signal after uvicorn's graceful shutdown (the batch in progress finished): leave the ``with``
    blocks, so the run's lock and ``.service.json`` are released, and exit 0."""
    raise _Stopped()
