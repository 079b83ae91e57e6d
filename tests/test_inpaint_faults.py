"""The bulk inpainting job under faults: storage outages, a killed driver,
reruns after fixes, other settings, a second run on the same output, glob characters in
names, images too large to decode, alpha-only masks. Local Ray of the session, moto S3 on
loopback, a small seeded model."""
from __future__ import annotations

import io
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from inpaint_fixtures import box_mask, encode, rng_image, write
from lama_core import build_generator, save_generator
from pipelines.records.codecs import RecordError, decode_image, decode_mask
from pipelines.common.error_kinds import INPUT, STORAGE
from pipelines.inpaint.config import InpaintConfig
from pipelines.common.errors import JobError
from pipelines.inpaint.job import run_inpaint
from pipelines.common.output_lease import LEASE_FILE, acquire_lease
from pipelines.common.retry import RetryPolicy, call_with_retry, is_transient

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory) -> str:
    torch.manual_seed(0)
    return save_generator(build_generator("small"), str(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def other_model_uri(tmp_path_factory) -> str:
    torch.manual_seed(1)
    return save_generator(build_generator("small"), str(tmp_path_factory.mktemp("model2")))


def run(model_uri: str, input, output, **overrides):
    settings = dict(batch_size=4, codec_batch_size=4, num_workers=1, gpus_per_worker=0,
                    storage_attempts=2, storage_backoff_seconds=0.2)
    settings.update(overrides)
    return run_inpaint(InpaintConfig(input=str(input), output=str(output), model=model_uri, **settings))


def rows_by_id(table) -> dict[str, dict]:
    """Rows by id; fails when an id appears twice."""
    rows = table.to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"duplicate ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    return {r["id"]: r for r in rows}


def folder_records(root: Path, n: int, size: int = 32, prefix: str = "r") -> list[str]:
    """``n`` LaMa-convention records ``{prefix}{i}.png`` + mask; returns their ids."""
    ids = []
    for i in range(n):
        write(root / f"{prefix}{i}.png", encode(rng_image(100 + i, size, size)))
        write(root / f"{prefix}{i}_mask000.png", encode(box_mask(size, size)))
        ids.append(f"{prefix}{i}_mask000")
    return ids


# ----------------------------------------------------------------------------- units

def test_transient_storage_errors_are_told_from_final_ones():
    from botocore.exceptions import ClientError, EndpointConnectionError

    assert is_transient(ConnectionRefusedError(111, "Connection refused"))
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    try:
        try:
            raise EndpointConnectionError(endpoint_url="http://x")
        except Exception as inner:
            raise OSError("s3fs wrapped it") from inner
    except OSError as wrapped:
        assert is_transient(wrapped)
    slow = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
    assert is_transient(slow)
    denied = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "Get")
    assert not is_transient(denied)
    assert not is_transient(FileNotFoundError("s3://b/x_503.png"))
    assert not is_transient(ValueError("bad value"))

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(104, "Connection reset by peer")
        return "done"

    slept = []
    assert call_with_retry(flaky, RetryPolicy(4, 0.5, 0.8), sleep=slept.append) == "done"
    assert slept == [0.5, 0.8]
    with pytest.raises(ConnectionResetError):
        calls.clear()
        call_with_retry(flaky, RetryPolicy(2, 0.1, 1), sleep=slept.append)
    with pytest.raises(FileNotFoundError):  # final: not retried
        call_with_retry(lambda: (_ for _ in ()).throw(FileNotFoundError("x")), RetryPolicy(5, 9, 9),
                        sleep=lambda s: pytest.fail("slept on a final error"))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_huge_png_is_refused_from_its_header_and_big_jpeg_decoded_reduced():
    # 12000 x 12000 black PNG: ~140 KB on disk, 432 MB as RGB.
    buf = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buf, format="PNG", compress_level=9)
    data = buf.getvalue()
    assert len(data) < 400_000
    tracemalloc.start()
    with pytest.raises(RecordError, match="12000x12000 = 144000000 pixels, over max_input_pixels=16777216") as err:
        decode_image(data, "huge.png", max_pixels=4096 * 4096)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert err.value.kind == INPUT
    assert peak < 20 * 2**20, peak  # nothing near the 144 MB of even one channel
    jpeg = encode(rng_image(1, 1200, 1600), "JPEG", quality=90)
    with pytest.raises(RecordError, match="raise max_input_pixels, or resize_over_limit=true to decode it reduced"):
        decode_image(jpeg, "big.jpg", max_pixels=600 * 800)  # reduced only when asked
    image, _ = decode_image(jpeg, "big.jpg", max_pixels=600 * 800, reduce=True)  # 1/2 scale fits exactly
    assert image.shape == (600, 800, 3)
    image, _ = decode_image(jpeg, "big.jpg", max_pixels=500 * 500, reduce=True)  # 1/4 scale
    assert image.shape == (300, 400, 3)
    with pytest.raises(RecordError, match="over max_input_pixels"):
        decode_image(jpeg, "big.jpg", max_pixels=100 * 100, reduce=True)  # even 1/8 (150x200) is too large


def test_alpha_only_mask_is_read_from_its_alpha_channel():
    rgba = np.zeros((24, 32, 4), np.uint8)  # black everywhere, hole only in alpha
    rgba[4:12, 6:20, 3] = 255
    hole, _ = decode_mask(encode(rgba), "alpha.png")
    assert hole.sum() == 8 * 14 and hole[4:12, 6:20].all()
    rgba[..., :3] = 255  # white everywhere: the colour alone would make the whole image a hole
    hole, _ = decode_mask(encode(rgba), "alpha_white.png")
    assert hole.sum() == 8 * 14
    la = np.zeros((24, 32, 2), np.uint8)
    la[0:5, 0:5, 1] = 255
    hole, _ = decode_mask(encode(la), "alpha_la.png")
    assert hole.sum() == 25
    colour = np.zeros((24, 32, 4), np.uint8)  # an ordinary RGBA mask: colour carries the hole
    colour[..., 3] = 255
    colour[2:4, 2:4, :3] = 255
    hole, _ = decode_mask(encode(colour), "rgba.png")
    assert hole.sum() == 4


def test_bad_numeric_options_stop_the_job_before_ray_starts(tmp_path, model_uri):
    folder_records(tmp_path / "in", 1)
    for bad in (dict(max_pixels=-5), dict(max_input_pixels=-1), dict(storage_attempts=0),
                dict(storage_backoff_seconds=-1.0), dict(lease_seconds=0.0), dict(mask_seed=-2)):
        key = next(iter(bad))
        with pytest.raises(JobError, match=f"bad config: .*{key}"):
            run(model_uri, tmp_path / "in", tmp_path / "out", **bad)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- a flaky S3

class CuttingProxy:
    """A TCP proxy on loopback in front of the S3 endpoint that can cut every connection:
    ``cut(seconds)`` closes all open connections and, for ``seconds``, closes each new one
    as soon as it is accepted (clients see resets), then forwards again."""

    def __init__(self, upstream: str):
        host, port = upstream.rsplit("//", 1)[-1].split(":")
        self.upstream = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.down_until = 0.0
        self.cuts = 0
        self.refused = 0
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds
        self.cuts += 1
        with self.lock:
            for s in list(self.open):
                self._close(s)

    @property
    def down(self) -> bool:
        return time.monotonic() < self.down_until

    def _close(self, s: socket.socket) -> None:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            s.close()
        except OSError:
            pass
        self.open.discard(s)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                self._close(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                self._close(client)
                continue
            with self.lock:
                self.open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with self.lock:
            self._close(src)
            self._close(dst)


def _s3(endpoint: str):
    from lama_core.literal_s3 import LiteralS3FileSystem  # keys as given, "?versionId=" included

    return LiteralS3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)


def _s3_records(fs, bucket: str) -> dict[str, dict]:
    fs.invalidate_cache()
    return rows_by_id(pq.read_table(f"{bucket}/out/records", filesystem=fs))


def test_s3_outage_mid_run_then_a_rerun_leaves_every_record_once_and_ok(ray_local, model_uri, tmp_path, s3_bucket,
                                                                         s3_endpoint):
    local = tmp_path / "in"
    ids = folder_records(local, 6, size=48)
    # Glob characters in S3 keys are names, nothing else.
    write(local / "odd[1]?.png", encode(rng_image(7, 48, 48)))
    write(local / "odd[1]?_mask000.png", encode(box_mask(48, 48)))
    write(local / "v?versionId=3.png", encode(rng_image(8, 48, 48)))
    write(local / "v?versionId=3_mask000.png", encode(box_mask(48, 48)))
    ids += ["v?versionId=3_mask000"]
    write(local / "broken.png", b"not an image")
    write(local / "broken_mask000.png", encode(box_mask(48, 48)))
    ids += ["odd[1]?_mask000"]
    direct = _s3(s3_endpoint)
    bucket = s3_bucket[5:]
    for path in sorted(local.iterdir()):
        direct.pipe_file(f"{bucket}/in/{path.name}", path.read_bytes())
    proxy = CuttingProxy(s3_endpoint)
    output = f"{s3_bucket}/out"

    def cut_when_first_image_lands():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                if direct.ls(f"{bucket}/out/images", refresh=True):
                    proxy.cut(20)
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=cut_when_first_image_lands, daemon=True)
    watcher.start()
    stopped = None
    try:
        first = run(model_uri, f"{s3_bucket}/in", output, endpoint_url=proxy.url, codec_batch_size=1, batch_size=1,
                    records_per_file=1, storage_attempts=2, storage_backoff_seconds=0.5)
    except JobError as exc:  # the records write outlasted its retries: one clear line
        stopped = str(exc)
        assert "rerun to resume" in stopped, stopped
    watcher.join(timeout=5)
    assert proxy.cuts == 1, "the outage never happened"
    while proxy.down:
        time.sleep(0.5)
    rows = _s3_records(direct, bucket) if direct.exists(f"{bucket}/out/records") else {}
    # Nothing the outage hit is final: only storage errors besides the one bad input.
    assert all(r["error_kind"] in (STORAGE, None) for rid, r in rows.items() if rid != "broken_mask000"), rows
    if stopped is None:  # a records file whose write outlasted the retries is absent: its ids are to do
        assert first.ok + first.failed <= len(ids) + 1
    hit = sum(r["status"] == "error" and r["error_kind"] == STORAGE for r in rows.values())
    print(f"outage: {proxy.refused} connections refused, {hit} storage error rows, job stopped: {stopped}")

    again = run(model_uri, f"{s3_bucket}/in", output, endpoint_url=proxy.url)
    rows = _s3_records(direct, bucket)
    assert set(rows) == set(ids) | {"broken_mask000"}
    assert all(rows[i]["status"] == "ok" for i in ids), {i: rows[i]["error"] for i in ids}
    assert rows["broken_mask000"]["error_kind"] == INPUT
    assert again.ok + again.skipped + again.failed == len(ids) + 1
    odd = np.asarray(Image.open(io.BytesIO(direct.cat_file(rows["odd[1]?_mask000"]["output"][5:]))))
    hole = box_mask(48, 48) > 0
    np.testing.assert_array_equal(odd[~hole], rng_image(7, 48, 48)[~hole])
    third = run(model_uri, f"{s3_bucket}/in", output, endpoint_url=proxy.url)  # nothing left: broken stays final
    assert (third.ok, third.failed, third.skipped) == (0, 0, len(ids) + 1)


# ----------------------------------------------------------------------------- reruns

def _job(*args: str, ray_address: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    return subprocess.Popen([sys.executable, "jobs/inpaint.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _readable_count(folder: Path) -> int:
    """Rows in the readable ``*.parquet`` files of ``folder`` (0 while there are none)."""
    return len(_readable_records(folder)) if folder.is_dir() else 0


def _readable_records(folder: Path):
    """The rows of the ``*.parquet`` files in ``folder`` that can be read (not those a
    killed writer left empty or cut short)."""
    import pyarrow as pa

    tables = []
    for path in sorted(folder.glob("*.parquet")):
        try:
            tables.append(pq.read_table(path))
        except pa.ArrowInvalid:
            continue
    return pa.concat_tables(tables) if tables else pa.table({})


def test_sigkill_of_the_driver_mid_run_then_a_rerun_resumes(ray_local, model_uri, tmp_path):
    import ray

    ids = folder_records(tmp_path / "in", 12, size=40)
    out = tmp_path / "out"
    proc = _job(f"input={tmp_path / 'in'}", f"output={out}", f"model={model_uri}", "num_workers=1", "batch_size=1",
                "codec_batch_size=1", "records_per_file=1", ray_address=ray.get_runtime_context().gcs_address)
    try:
        _wait_for(lambda: _readable_count(out / "records") >= 2 or proc.poll() is not None, 240,
                  "the first records files")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (out / LEASE_FILE).exists()  # left behind by the killed driver
    # A records file the kill caught mid-write is not readable; the rerun sets it aside
    # (``_NAME.corrupt``) and redoes its ids.
    written = len(_readable_records(out / "records"))
    assert 2 <= written < len(ids), written
    # Same host, the lease's process is gone: taken over at once, no wait for expiry.
    again = run(model_uri, tmp_path / "in", out)
    rows = rows_by_id(_readable_records(out / "records"))
    assert set(rows) == set(ids) and all(r["status"] == "ok" for r in rows.values())
    assert again.skipped == written and again.ok == len(ids) - written
    assert not (out / LEASE_FILE).exists()


def test_rerun_retries_input_errors_only_when_asked_and_keeps_ok_rows(ray_local, model_uri, tmp_path):
    d = tmp_path / "in"
    for i, name in enumerate(("x", "y", "z")):
        write(d / f"{name}.png", encode(rng_image(40 + i, 32, 32)))
        write(tmp_path / "masks" / f"{name}.png", encode(box_mask(32, 32)))
    out = tmp_path / "out"
    first = run(model_uri, d, out)  # forgot mask_dir=: every record is an input error
    assert (first.ok, first.failed) == (0, 3)
    rows = rows_by_id(pq.read_table(out / "records"))
    assert {r["error_kind"] for r in rows.values()} == {INPUT}
    plain = run(model_uri, d, out, mask_dir=str(tmp_path / "masks"))  # input errors are final by default
    assert (plain.ok, plain.failed, plain.skipped) == (0, 0, 3)
    fixed = run(model_uri, d, out, mask_dir=str(tmp_path / "masks"), retry_errors=True)
    assert (fixed.ok, fixed.failed, fixed.skipped) == (3, 0, 0)
    rows = rows_by_id(pq.read_table(out / "records"))
    assert all(r["status"] == "ok" and r["run"] == fixed.run_id for r in rows.values())
    # A broken file fixed later: only it is redone, the ok rows keep their run.
    write(d / "w.png", b"broken")
    write(tmp_path / "masks" / "w.png", encode(box_mask(32, 32)))
    broken = run(model_uri, d, out, mask_dir=str(tmp_path / "masks"))
    assert (broken.ok, broken.failed, broken.skipped) == (0, 1, 3)
    write(d / "w.png", encode(rng_image(50, 32, 32)))
    repaired = run(model_uri, d, out, mask_dir=str(tmp_path / "masks"), retry_errors=True)
    assert (repaired.ok, repaired.failed, repaired.skipped) == (1, 0, 3)
    rows = rows_by_id(pq.read_table(out / "records"))
    assert rows["w"]["status"] == "ok" and rows["w"]["run"] == repaired.run_id
    assert {rows[i]["run"] for i in "xyz"} == {fixed.run_id}
    # dry_run: the plan, nothing written, no model run.
    before = sorted(p.name for p in (out / "records").iterdir())
    plan = run(model_uri, d, out, mask_dir=str(tmp_path / "masks"), dry_run=True)
    assert (plan.ok, plan.failed, plan.skipped) == (0, 0, 4)
    assert sorted(p.name for p in (out / "records").iterdir()) == before


def test_rerun_with_other_results_settings_is_refused(ray_local, model_uri, other_model_uri, tmp_path):
    folder_records(tmp_path / "in", 2)
    out = tmp_path / "out"
    run(model_uri, tmp_path / "in", out)
    with pytest.raises(JobError, match=r"other settings \(model: .*@sha256:.* in the output vs .*@sha256:.* now\).*"
                                       r"another output, or pass overwrite=true"):
        run(other_model_uri, tmp_path / "in", out)
    with pytest.raises(JobError, match="max_pixels: 4194304 in the output vs 1048576 now"):
        run(model_uri, tmp_path / "in", out, max_pixels=1024 * 1024)
    redo = run(other_model_uri, tmp_path / "in", out, overwrite=True)
    assert redo.ok == 2
    rows = rows_by_id(pq.read_table(out / "records"))
    assert all(r["model"].startswith(other_model_uri) for r in rows.values())


def test_a_second_run_on_an_output_in_use_refuses(ray_local, model_uri, tmp_path):
    import ray

    folder_records(tmp_path / "in", 6, size=40)
    out = tmp_path / "out"
    proc = _job(f"input={tmp_path / 'in'}", f"output={out}", f"model={model_uri}", "num_workers=1", "batch_size=1",
                ray_address=ray.get_runtime_context().gcs_address)
    try:
        _wait_for(lambda: (out / LEASE_FILE).exists() or proc.poll() is not None, 120, "the first run's lease")
        with pytest.raises(JobError, match=r"output .* is in use by run run-\S+ \(host .*, pid \d+\)"):
            run(model_uri, tmp_path / "in", out)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert "inpaint: 6 ok / 0 failed" in stdout
    assert len(rows_by_id(pq.read_table(out / "records"))) == 6


def test_lease_of_a_run_elsewhere_expires(tmp_path):
    import fsspec
    import json

    fs = fsspec.filesystem("file")
    holder = acquire_lease(fs, str(tmp_path), str(tmp_path), "run-a", seconds=5)
    with pytest.raises(JobError, match="in use by run run-a"):
        acquire_lease(fs, str(tmp_path), str(tmp_path), "run-b", seconds=5)
    holder._stop.set()  # run-a is "killed" on another host: no renewals, no release
    lease = json.loads((tmp_path / LEASE_FILE).read_text())
    lease.update(host="elsewhere", expires=time.time() - 1)
    (tmp_path / LEASE_FILE).write_text(json.dumps(lease))
    taken = acquire_lease(fs, str(tmp_path), str(tmp_path), "run-b", seconds=5)
    assert json.loads((tmp_path / LEASE_FILE).read_text())["run"] == "run-b"
    assert not holder.renew() and holder.lost.is_set()  # run-a, back, finds it lost
    taken.release()
    assert not (tmp_path / LEASE_FILE).exists()


def test_glob_characters_in_names_and_output_paths_are_literal(ray_local, model_uri, tmp_path):
    d = tmp_path / "in[1]"
    write(d / "a[1].png", encode(rng_image(60, 32, 32)))
    write(d / "a[1]_mask000.png", encode(box_mask(32, 32)))
    write(d / "b*?.png", encode(rng_image(61, 32, 32)))
    write(d / "b*?_mask000.png", encode(box_mask(32, 32)))
    other = tmp_path / "jobA"
    done = run(model_uri, d, other)
    assert (done.ok, done.failed) == (2, 0)
    before = sorted(p.name for p in (other / "records").iterdir())
    odd = tmp_path / "job?"
    first = run(model_uri, d, odd, overwrite=True)  # "job?" must not match (and delete) jobA's records
    assert (first.ok, first.failed) == (2, 0)
    assert sorted(p.name for p in (other / "records").iterdir()) == before
    again = run(model_uri, d, odd)  # finds its own records: nothing to redo
    assert (again.ok, again.skipped) == (0, 2)
    rows = rows_by_id(pq.read_table(odd / "records"))
    assert set(rows) == {"a[1]_mask000", "b*?_mask000"}
    assert Path(rows["a[1]_mask000"]["output"]).exists()


def test_huge_image_in_a_job_is_one_input_error_row(ray_local, model_uri, tmp_path):
    d = tmp_path / "in"
    buf = io.BytesIO()
    Image.new("RGB", (12000, 12000)).save(buf, format="PNG", compress_level=9)
    write(d / "huge.png", buf.getvalue())
    write(d / "huge_mask000.png", encode(box_mask(32, 32)))
    folder_records(d, 1)
    summary = run(model_uri, d, tmp_path / "out")
    assert (summary.ok, summary.failed) == (1, 1)
    rows = rows_by_id(pq.read_table(tmp_path / "out" / "records"))
    assert rows["huge_mask000"]["error_kind"] == INPUT
    assert "12000x12000" in rows["huge_mask000"]["error"] and "max_input_pixels" in rows["huge_mask000"]["error"]


def test_parquet_dry_run_plan_and_duplicate_ids_across_shards(ray_local, model_uri, tmp_path, capsys):
    import pyarrow as pa

    d = tmp_path / "shards"
    d.mkdir()
    for s in range(3):
        ids = [f"s{s}-{i}" for i in range(4)]
        pq.write_table(pa.table({"id": ids, "image": [encode(rng_image(s * 10 + i, 32, 32)) for i in range(4)]}),
                       d / f"part-{s}.parquet")
    (d / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    first = run(model_uri, d, out, mask_kind="thick_256")
    assert (first.ok, first.failed) == (12, 0)
    assert len(list((out / "records").glob("shard=*"))) == 3  # one partition (manifest) per input shard
    rows = rows_by_id(pq.read_table(out / "records"))
    assert len(rows) == 12
    pq.write_table(pa.table({"id": ["s9-0", "s9-1"], "image": [encode(rng_image(99, 32, 32))] * 2}),
                   d / "part-9.parquet")
    capsys.readouterr()
    plan = run(model_uri, d, out, mask_kind="thick_256", dry_run=True)
    *_, line, last = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("dry run: 14 records in") and "12 done, 2 to do (of which 0 retryable error rows); " \
        "1 of 4 shards to read; 1 files ignored (" in line, line
    assert last == "dry run: nothing written"  # no summary line that reads as if a run happened
    assert (plan.ok, plan.skipped) == (0, 12) and not (out / "_plan").exists()
    assert len(rows_by_id(pq.read_table(out / "records"))) == 12  # nothing written
    pq.write_table(pa.table({"id": ["s9-0", "s1-2"], "image": [encode(rng_image(99, 32, 32))] * 2}),
                   d / "part-9.parquet")  # s1-2 is also in part-1
    with pytest.raises(JobError, match=r"1 duplicate ids \(e.g. \['s1-2'\]\)"):
        run(model_uri, d, out, mask_kind="thick_256")
