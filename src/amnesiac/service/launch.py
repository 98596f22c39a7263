"""Start ``amnesiac serve`` in its own process and wait until it answers: for scripts, tests and benchmarks that
drive the service as a client would.

    served = start_service("runs/digits", port=8470)
    httpx.post(served.url + "/v1/deletions", json={"ids": [17]}, headers=served.headers)
    served.stop()                       # SIGTERM: the batch in progress finishes, then it exits 0
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AmnesiacError
from .applier import QUEUE_DIR


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServedProcess:
    """A running ``amnesiac serve``: its process, its base URL and the bearer token it reads."""

    process: subprocess.Popen[Any]
    url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, then wait: the service finishes the batch it is in. Returns its exit status."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=timeout)


def start_service(run: str | os.PathLike[str], *, port: int | None = None, args: Sequence[str] = (),
                  env: Mapping[str, str] | None = None, timeout: float = 120, quiet: bool = False) -> ServedProcess:
    """``amnesiac serve RUN --port PORT ARGS...`` in a new process (this interpreter, this ``sys.path``),
    returned once ``/healthz`` answers; a process that exits first, or no answer in ``timeout`` seconds,
    raises :class:`AmnesiacError` with what it printed. ``env`` adds to the environment."""
    port = free_port() if port is None else port
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **(env or {})}
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-m", "amnesiac", "serve", str(run), "--port", str(port), *args],
                            env=full_env, stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as answer:
                if answer.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.kill()
                printed = proc.stdout.read() if proc.stdout is not None else ""
                raise AmnesiacError(f"amnesiac serve {run} did not start answering on {url}: {printed[-2000:]}") \
                    from None
            time.sleep(0.2)
    given = list(args)
    token_file = Path(given[given.index("--token-file") + 1]) if "--token-file" in given[:-1] else \
        Path(run) / QUEUE_DIR / "token"
    token = token_file.read_text().strip()
    return ServedProcess(proc, url, token)
