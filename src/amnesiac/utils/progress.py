"""Progress on long work: a bar on a terminal, a line now and then in a log."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any


class LineProgress:
    """Progress for output that is not a terminal (logs, CI, notebooks, ``nohup``): lines on stderr at most
    every ``interval`` seconds with the count, rate and time left, and one at the end. Work that ends within
    ``quiet`` seconds prints nothing, so quick steps do not flood a log.

    >>> import io
    >>> out = io.StringIO()
    >>> for _ in LineProgress(range(3), desc="work", interval=0, quiet=0, file=out):
    ...     pass
    >>> out.getvalue().splitlines()[-1].startswith("[work] 3/3 done")
    True
    """

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 interval: float = 30.0, quiet: float = 5.0, file: Any = None) -> None:
        import time

        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.interval, self.quiet = total, desc, interval, quiet
        self.file = file if file is not None else sys.stderr
        self.n = 0
        self.postfix = ""
        self._clock = time.monotonic
        self.start = self._last = self._clock()
        self._closed = False
        self._spoke = False

    def _say(self, what: str) -> None:
        self._spoke = True
        print(f"[{self.desc}] {what}", file=self.file, flush=True)

    def _status(self) -> str:
        elapsed = self._clock() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total else ""
        left = ""
        if self.total and rate > 0:
            left = f", about {(self.total - self.n) / rate:.0f} s left"
        return f"{self.n}{of} ({rate:.2f}/s, {elapsed:.0f} s{left}){' ' + self.postfix if self.postfix else ''}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if (now - self._last >= self.interval and now - self.start >= self.quiet
                and not (self.total and self.n >= self.total)):
            self._last = now
            self._say(self._status())

    def set_postfix(self, refresh: bool = False, **kw: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in kw.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            elapsed = self._clock() - self.start
            if elapsed < self.quiet and not self._spoke:
                return
            of = f"/{self.total}" if self.total else ""
            self._say(f"{self.n}{of} done in {elapsed:.0f} s{' ' + self.postfix if self.postfix else ''}")

    def __iter__(self) -> Any:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool | None = None, **kwargs: Any) -> Any:
    """Progress for long work: a tqdm bar on a terminal; off the terminal (``enabled=None`` and stderr not a
    terminal) a :class:`LineProgress` that prints a line at most every 30 s (``AMNESIAC_PROGRESS_INTERVAL``);
    nothing when ``enabled`` is False."""
    from tqdm.auto import tqdm

    if enabled is None and not sys.stderr.isatty():
        interval = float(os.environ.get("AMNESIAC_PROGRESS_INTERVAL", "30"))
        return LineProgress(iterable, total=kwargs.get("total"), desc=kwargs.get("desc", "working"), interval=interval)
    if enabled is None:
        enabled = True
    return tqdm(iterable, disable=not enabled, leave=False, dynamic_ncols=True, **kwargs)



_ACTIVE: list[Heartbeat] = []


class Heartbeat:
    """A line on stderr at least every ``every`` seconds while long work runs, whatever it is doing inside (one
    training epoch can outlast any bar's refresh): the label, the time so far and the latest :func:`note`.
    ``AMNESIAC_HEARTBEAT_INTERVAL`` sets the default interval (45 s).

    >>> import io, time
    >>> out = io.StringIO()
    >>> with Heartbeat("stage", every=0.02, file=out):
    ...     note("step one")
    ...     time.sleep(0.1)
    >>> "stage: still working" in out.getvalue() and "step one" in out.getvalue()
    True
    """

    def __init__(self, label: str, *, every: float | None = None, file: Any = None) -> None:
        import threading

        self.label = label
        self.every = float(every if every is not None else os.environ.get("AMNESIAC_HEARTBEAT_INTERVAL", "45"))
        if not self.every > 0:
            raise ValueError(f"a heartbeat interval must be positive, got {self.every}")
        self.file = file if file is not None else sys.stderr
        self.note = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat:{label}", daemon=True)

    def _beat(self) -> None:
        import time

        start = time.monotonic()
        while not self._stop.wait(self.every):
            what = f"; {self.note}" if self.note else ""
            print(f"[{time.strftime('%H:%M:%S')}] {self.label}: still working, {time.monotonic() - start:.0f} s so far"
                  f"{what}", file=self.file, flush=True)

    def __enter__(self) -> Heartbeat:
        _ACTIVE.append(self)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        _ACTIVE.remove(self)


def note(text: str) -> None:
    """Tell the innermost running :class:`Heartbeat` what the work is doing now (nothing when none runs)."""
    if _ACTIVE:
        _ACTIVE[-1].note = text
