"""Planning + resume of the bulk inpainting job over many Parquet records: time and driver memory.

    python benchmarks/bench_planning.py [--sizes 1000000 10000000] [--shards 1000] [--workdir DIR]

For each size, writes synthetic input shards (``id``, a 1-byte ``image``) and records of
an earlier run that did half of every shard (``records/shard=KEY/``, as the job writes
them), then, in a fresh process with its own local Ray, runs the job's planning
(``pipelines.records.shard_plan.plan_shards``: per-shard Ray tasks, skip lists, duplicate-id
check) and prints its time and the driver's peak RSS above the idle driver (Ray started,
modules imported). ``--baseline`` also times the former driver-side way (every id of
every shard and of every records file in one process) for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's RSS every 5 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self):
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def make_data(root: Path, records: int, shards: int) -> None:
    """``shards`` input shards of ``records / shards`` ids; half of each already done."""
    from pipelines.records.shard_plan import PARTITION, shard_key

    per = records // shards
    (root / "in").mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        ids = pa.array([f"s{s:05d}-{i:08d}" for i in range(per)], pa.string())
        path = root / "in" / f"part-{s:05d}.parquet"
        pq.write_table(pa.table({"id": ids, "image": pa.array([b"\x00"] * per, pa.binary())}), path)
        done = root / "out" / "records" / f"{PARTITION}={shard_key(str(path))}"
        done.mkdir(parents=True, exist_ok=True)
        half = ids.slice(0, per // 2)
        pq.write_table(pa.table({"id": half, "status": pa.array(["ok"] * len(half)),
                                 "error_kind": pa.array([None] * len(half), pa.string())}),
                       done / "run-0_000000-0.parquet")


def measure(root: Path, baseline: bool) -> dict:
    """Run in a fresh process: plan the job over ``root`` and report time and memory."""
    import fsspec
    import ray

    from pipelines.records.shard_plan import PlanRequest, plan_shards, remove_plan
    from pipelines.common.retry import RetryPolicy

    for attempt in range(3):  # a loaded machine can time out Ray's node startup
        try:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     object_store_memory=512 * 2**20)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    fs = fsspec.filesystem("file")
    shards = sorted(str(p) for p in (root / "in").iterdir())
    # Warm up the task path (worker start, imports) so it does not count as planning.
    def request(plan_root: str) -> PlanRequest:
        return PlanRequest(fs, fs, str(root / "out" / "records"), plan_root, False, False, RetryPolicy())

    plan_shards(request(str(root / "out" / "_plan" / "warm")), [(p, p) for p in shards[:2]])
    remove_plan(fs, str(root / "out" / "_plan" / "warm"))
    time.sleep(1.0)
    idle = rss_bytes()
    start = time.perf_counter()
    with PeakRSS() as peak:
        listing = plan_shards(request(str(root / "out" / "_plan" / "bench")), [(p, p) for p in shards])
    seconds = time.perf_counter() - start
    remove_plan(fs, str(root / "out" / "_plan" / "bench"))
    out = {"records": listing.total, "done": listing.counts.ok, "to_do": listing.total - listing.counts.ok,
           "shards": listing.shard_count, "seconds": round(seconds, 2),
           "driver_peak_above_idle_mib": round((peak.peak - idle) / 2**20, 1), "idle_mib": round(idle / 2**20, 1)}
    ray.shutdown()
    if baseline:
        # The former way: every id in one driver set, every shard's ids in one Counter.
        from collections import Counter

        idle = rss_bytes()
        start = time.perf_counter()
        with PeakRSS() as peak:
            done: set[str] = set()
            for path in sorted((root / "out" / "records").rglob("*.parquet")):
                done.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
            counts: Counter[str] = Counter()
            for path in shards:
                counts.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
            todo = sum(1 for i in counts if i not in done)
        out["baseline_seconds"] = round(time.perf_counter() - start, 2)
        out["baseline_peak_above_idle_mib"] = round((peak.peak - idle) / 2**20, 1)
        out["baseline_to_do"] = todo
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--baseline", action="store_true", help="also time the former driver-side planning")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: one size, fresh process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.baseline)))
        return
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for size in args.sizes:
            root = Path(tmp) / f"n{size}"
            start = time.perf_counter()
            make_data(root, size, args.shards)
            print(f"data for {size:,} records in {args.shards} shards written in {time.perf_counter() - start:.0f} s",
                  flush=True)
            cmd = [sys.executable, __file__, "--measure", str(root)] + (["--baseline"] if args.baseline else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"measuring {size} records failed:\n{done.stderr[-3000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    print("\n| records | shards | done | to do | planning s | driver peak above idle (MiB) |"
          + (" former way s | former way MiB |" if args.baseline else ""))
    print("| ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if args.baseline else ""))
    for r in results:
        extra = f" {r['baseline_seconds']} | {r['baseline_peak_above_idle_mib']} |" if args.baseline else ""
        print(f"| {r['records']:,} | {r['shards']} | {r['done']:,} | {r['to_do']:,} | {r['seconds']} | "
              f"{r['driver_peak_above_idle_mib']} |{extra}")
    if len(results) >= 2:
        growth = results[-1]["driver_peak_above_idle_mib"] - results[0]["driver_peak_above_idle_mib"]
        print(f"\ndriver peak growth from {results[0]['records']:,} to {results[-1]['records']:,} records: "
              f"{growth:+.1f} MiB")


if __name__ == "__main__":
    main()
