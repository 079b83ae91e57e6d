"""One progress display per job, counting images: a bar with rate and ETA on a terminal,
one plain line every ``every_s`` seconds otherwise (job logs, pipes).

Ray Data's own bars count blocks per internal operator; users want images. The stages
that finish records call ``counter.add.remote(n)`` on a ``ProgressCounter`` actor; the
driver polls it from a thread while the pipeline runs::

    counter = ProgressCounter.remote()
    with JobProgress("inpaint", total=n, counter=counter):
        ds.write_parquet(...)   # blocks; encode tasks add to the counter
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

import ray


@ray.remote(num_cpus=0)
class ProgressCounter:
    """How many records the job's stages have finished (a zero-CPU actor)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, n: int) -> None:
        self.count += int(n)

    def value(self) -> int:
        return self.count


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3700`` -> ``1h01m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(label: str, done: int, total: int, elapsed: float) -> str:
    """``label: 120/1000 images (12%), 3.20 images/s, ETA 4m35s`` (no ETA before the first)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f", ETA {format_seconds((total - done) / rate)}" if rate > 0 and total > done else ""
    share = f" ({100 * done / total:.0f}%)" if total else ""
    return f"{label}: {done}/{total} images{share}, {rate:.2f} images/s{eta}"


class JobProgress:
    """Context manager that shows the progress of ``total`` records counted by ``counter``
    (a ``ProgressCounter`` handle) until the block exits. ``stream``: where to write
    (stderr); a TTY gets a tqdm bar, anything else a line every ``every_s`` seconds."""

    def __init__(self, label: str, total: int, counter: Any, stream: TextIO | None = None,
                 every_s: float = 10.0, poll_s: float = 0.5):
        self.label, self.total, self.counter = label, total, counter
        self.stream = stream or sys.stderr
        self.every_s, self.poll_s = every_s, poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-progress", daemon=True)
        self.done = 0

    def __enter__(self) -> "JobProgress":
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _read(self) -> int:
        try:
            return int(ray.get(self.counter.value.remote(), timeout=5))
        except Exception:  # noqa: BLE001 - a slow or dead counter never stops the job
            return self.done

    def _run(self) -> None:
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        bar = None
        if tty:
            from tqdm import tqdm
            bar = tqdm(total=self.total, desc=self.label, unit="img", file=self.stream, dynamic_ncols=True)
        last_line = self._start
        while True:
            stopping = self._stop.wait(self.poll_s)
            self.done = self._read()
            if bar is not None:
                bar.update(self.done - bar.n)
            elif stopping or time.perf_counter() - last_line >= self.every_s:
                last_line = time.perf_counter()
                print(progress_line(self.label, self.done, self.total, last_line - self._start),
                      file=self.stream, flush=True)
            if stopping:
                break
        if bar is not None:
            bar.close()
