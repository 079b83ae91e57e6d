"""One progress display per job, counting images: a bar with rate and ETA on a terminal,
one plain line every ``every_s`` seconds otherwise (job logs, pipes).

Ray Data's own bars count blocks per internal operator; users want images. The stage
that finishes images (the model actors) calls ``counter.add.remote(n)`` on a ``ProgressCounter`` actor; the
driver polls it from a thread while the pipeline runs::

    counter = ProgressCounter.remote()
    with JobProgress("inpaint", total=n, counter=counter):
        ds.write_parquet(...)   # blocks; the model actors add to the counter
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


class _Poller:
    """Context manager running ``self._run(stop)`` in a daemon thread while the block runs;
    ``stop`` (a ``threading.Event``) is set when the block exits, and the thread is joined."""

    def __init__(self, name: str):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self):
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        raise NotImplementedError


class JobProgress(_Poller):
    """Context manager that shows the progress of ``total`` records counted by ``counter``
    (a ``ProgressCounter`` handle) until the block exits. ``stream``: where to write
    (stderr); a TTY gets a tqdm bar, anything else a line every ``every_s`` seconds."""

    def __init__(self, label: str, total: int, counter: Any, stream: TextIO | None = None,
                 every_s: float = 10.0, poll_s: float = 0.5):
        super().__init__("job-progress")
        self.label, self.total, self.counter = label, total, counter
        self.stream = stream or sys.stderr
        self.every_s, self.poll_s = every_s, poll_s
        self.done = 0

    def _due(self, stopping: bool, changed: bool, since_last: float) -> bool:
        """Whether a line is printed now: a new count every ``every_s``, the same count again
        only every ``6 x every_s`` (the job is alive), and at the end the final count unless the
        last line showed it already (one final line)."""
        if stopping:
            return changed
        return since_last >= self.every_s and (changed or 0 < 6 * self.every_s <= since_last)

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
        last_line, printed = self._start, -1
        while True:
            stopping = self._stop.wait(self.poll_s)
            self.done = self._read()
            if bar is not None:
                bar.update(self.done - bar.n)
            elif self._due(stopping, self.done != printed, time.perf_counter() - last_line):
                last_line, printed = time.perf_counter(), self.done
                print(progress_line(self.label, self.done, self.total, last_line - self._start),
                      file=self.stream, flush=True)
            if stopping:
                break
        if bar is not None:
            bar.close()


# ----------------------------------------------------------------------------- training


@ray.remote(num_cpus=0)
class ReportLog:
    """Lines waiting to be printed by the driver (a zero-CPU actor)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def push(self, line: str) -> None:
        self.lines.append(line)

    def pop_all(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


@ray.remote(num_cpus=0)
class SkippedInputs:
    """Input files a stage skipped (a zero-CPU actor): each distinct message (naming the
    file and why) counts once, however often the file comes back (every epoch of a training
    stream re-decodes it). The first ``named`` distinct ones wait to be printed by the
    driver (``pop_new``); only their count is kept beyond that, as a set of 8-byte hashes."""

    def __init__(self, named: int = 5) -> None:
        self.named = named
        self.seen: set[int] = set()
        self.pending: list[str] = []

    def add(self, message: str) -> None:
        import hashlib

        digest = int.from_bytes(hashlib.blake2b(message.encode("utf-8", "replace"), digest_size=8).digest(), "big")
        if digest in self.seen:
            return
        self.seen.add(digest)
        if len(self.seen) <= self.named:
            self.pending.append(message)

    def pop_new(self) -> list[str]:
        lines, self.pending = self.pending, []
        return lines

    def count(self) -> int:
        return len(self.seen)


#: Metrics a training report carries that are not worth a console column.
_QUIET_METRICS = {"step", "start_step", "start_generator_digest", "generator_lr", "discriminator_lr", "images_per_s"}


def training_report_line(metrics: dict[str, Any], total_steps: int) -> str:
    """``step 10/40  loss_a 0.123  loss_b 4.56  validation_l1 0.150  22.5 images/s`` from
    one worker's report, ``  (checkpoint)`` added when it wrote one: the line both trainers
    print (the Ray job through ``report_printer``, the local one itself)."""
    parts = [f"step {metrics.get('step', '?')}/{total_steps}"]
    for name, value in metrics.items():
        if name not in _QUIET_METRICS and isinstance(value, (int, float)):
            parts.append(f"{name} {value:.4g}")
    if "images_per_s" in metrics:
        parts.append(f"{metrics['images_per_s']:.1f} images/s")
    if metrics.get("checkpoint"):
        parts.append("(checkpoint)")
    return "  ".join(parts)


def report_printer(log: Any, total_steps: int) -> Any:
    """A Ray Train ``UserCallback`` that sends one line per report (rank 0's metrics) to
    ``log`` (a ``ReportLog`` handle). It runs in Ray Train's controller, whose own output
    does not reach the user's console; ``follow_reports`` prints the lines there."""
    from ray.train import UserCallback

    class _ReportPrinter(UserCallback):
        def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
            if metrics:
                # Our checkpoints are not Ray's: their URI is in the metrics, never ``checkpoint``.
                log.push.remote(training_report_line(metrics[0], total_steps))

    return _ReportPrinter()


class follow_reports(_Poller):
    """Context manager: print the lines ``log`` (a ``ReportLog``) receives, to ``stream``
    (stdout), from a thread, until the block exits (then the rest). ``skipped`` (a
    ``SkippedInputs`` handle, optional): its first distinct messages are printed as
    ``skipped training image: MESSAGE`` when they arrive, and its count once at the end."""

    def __init__(self, log: Any, stream: TextIO | None = None, poll_s: float = 1.0, skipped: Any = None):
        super().__init__("train-reports")
        self.log, self.stream, self.poll_s, self.skipped = log, stream or sys.stdout, poll_s, skipped

    def _get(self, ref: Any, default: Any) -> Any:
        try:
            return ray.get(ref, timeout=10)
        except Exception:  # noqa: BLE001 - never let the printer stop training
            return default

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.poll_s)
            lines = self._get(self.log.pop_all.remote(), [])
            if self.skipped is not None:
                lines += [f"skipped training image: {m}" for m in self._get(self.skipped.pop_new.remote(), [])]
            for line in lines:
                print(line, file=self.stream, flush=True)
            if stopping:
                count = self._get(self.skipped.count.remote(), 0) if self.skipped is not None else 0
                if count:
                    print(f"skipped {count} training images in all (over max_input_pixels or undecodable; the "
                          "first are named above)", file=self.stream, flush=True)
                return
