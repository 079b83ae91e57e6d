"""The bulk inpainting job under faults (issue 12): storage outages, a killed driver,
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
from pipelines.codecs import RecordError, decode_image, decode_mask
from pipelines.error_kinds import INPUT, STORAGE
from pipelines.inpaint import InpaintConfig, run_inpaint
from pipelines.job_config import JobError
from pipelines.output_lease import LEASE_FILE, acquire_lease
from pipelines.storage_retry import RetryPolicy, call_with_retry, is_transient

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
    settings = dict(batch_size=4, codec_batch_size=4, num_actors=1, num_gpus=0, device="cpu",
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
    image, _ = decode_image(jpeg, "big.jpg", max_pixels=600 * 800)  # 1/2 scale fits exactly
    assert image.shape == (600, 800, 3)
    image, _ = decode_image(jpeg, "big.jpg", max_pixels=500 * 500)  # 1/4 scale
    assert image.shape == (300, 400, 3)
    with pytest.raises(RecordError, match="over max_input_pixels"):
        decode_image(jpeg, "big.jpg", max_pixels=100 * 100)  # even 1/8 (150x200) is too large


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
    import s3fs

    return s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)


def test_s3_outage_mid_run_then_a_rerun_leaves_every_record_once_and_ok(ray_local, model_uri, tmp_path, s3_bucket,
                                                                         s3_endpoint):
    local = tmp_path / "in"
    ids = folder_records(local, 10, size=48)
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
    rows = rows_by_id(pq.read_table(f"{bucket}/out/records", filesystem=direct)) \
        if direct.exists(f"{bucket}/out/records") else {}
    # Nothing the outage hit is final: only storage errors besides the one bad input.
    assert all(r["error_kind"] in (STORAGE, None) for rid, r in rows.items() if rid != "broken_mask000"), rows
    if stopped is None:  # a records file whose write outlasted the retries is absent: its ids are to do
        assert first.ok + first.failed <= len(ids) + 1
    hit = sum(r["status"] == "error" and r["error_kind"] == STORAGE for r in rows.values())
    print(f"outage: {proxy.refused} connections refused, {hit} storage error rows, job stopped: {stopped}")

    again = run(model_uri, f"{s3_bucket}/in", output, endpoint_url=proxy.url)
    rows = rows_by_id(pq.read_table(f"{bucket}/out/records", filesystem=direct))
    assert set(rows) == set(ids) | {"broken_mask000"}
    assert all(rows[i]["status"] == "ok" for i in ids), {i: rows[i]["error"] for i in ids}
    assert rows["broken_mask000"]["error_kind"] == INPUT
    assert again.ok + again.skipped + again.failed == len(ids) + 1
    odd = np.asarray(Image.open(io.BytesIO(direct.cat_file(rows["odd[1]?_mask000"]["output"][5:]))))
    hole = box_mask(48, 48) > 0
    np.testing.assert_array_equal(odd[~hole], rng_image(7, 48, 48)[~hole])
    third = run(model_uri, f"{s3_bucket}/in", output, endpoint_url=proxy.url)  # nothing left: broken stays final
    assert (third.ok, third.failed, third.skipped) == (0, 0, len(ids) + 1)
