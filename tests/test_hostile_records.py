"""Records built to stop, crash or silently degrade the bulk inpainting job: geometry that
would make pycocotools allocate terabytes, megabyte RLE strings, images whose header
declares 144 megapixels. Each runs the real job (``jobs/inpaint.py`` in a subprocess
joined to the session's local Ray) and checks its exit code, its records and its time."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from inpaint_fixtures import blank_png, box_mask, encode, rng_image, tar_bytes, write
from lama_core import build_generator, save_generator
from pipelines.common.error_kinds import INPUT

REPO = Path(__file__).resolve().parents[1]
# Generous: a hang or a quadratic parse takes far longer; a healthy 13-record job ~30 s.
BOUNDED_SECONDS = 240


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory) -> str:
    torch.manual_seed(0)
    return save_generator(build_generator("small"), str(tmp_path_factory.mktemp("model")))


def run_job(*args: str, timeout: float = BOUNDED_SECONDS) -> tuple[subprocess.CompletedProcess, float]:
    """``jobs/inpaint.py ARGS`` on the session's Ray; returns the finished process and its
    wall time. Fails the test when it outlives ``timeout``."""
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "jobs/inpaint.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc, time.monotonic() - start


def records(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out / "records").to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "an id appears twice"
    return {r["id"]: r for r in rows}


def good_samples(n: int, size: int = 32) -> list[tuple[str, bytes]]:
    """``n`` samples ``good00.png`` + ``good00.json`` (a box) for a shard."""
    members = []
    for i in range(n):
        members.append((f"good{i:02d}.png", encode(rng_image(200 + i, size, size))))
        members.append((f"good{i:02d}.json", json.dumps({"boxes": [[4, 4, 12, 12]]}).encode()))
    return members


def test_poison_polygon_in_a_shard_is_clipped_to_the_image(ray_local, model_uri, tmp_path):
    # Unclipped, pycocotools would walk a 5e12-pixel outline (a terabyte allocation or an
    # int32 overflow in C). Clipped first, the triangle's part inside the 32x32 image (the
    # pixels on and above the diagonal) is a valid hole: an ok row, flagged mask_clipped.
    good = good_samples(12)
    members = good[:12] + [("poison.png", encode(rng_image(7, 32, 32))),
                           ("poison.json", b'{"polygons": [[0, 0, 1e12, 0, 1e12, 1e12]]}')] + good[12:]
    write(tmp_path / "in" / "shard-000000.tar", tar_bytes(members))
    out = tmp_path / "out"
    proc, seconds = run_job(f"input={tmp_path / 'in'}", f"output={out}", f"model={model_uri}", "num_workers=1",
                            "batch_size=4", "codec_batch_size=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = records(out)
    assert len(rows) == 13 and all(r["status"] == "ok" for r in rows.values()), \
        [r["error"] for r in rows.values() if r["error"]]
    poison = rows["poison"]
    assert poison["mask_clipped"] and 0.45 < poison["hole_fraction"] < 0.6, poison["hole_fraction"]
    assert seconds < BOUNDED_SECONDS


def test_megabyte_rle_string_is_an_error_row_naming_the_json(ray_local, model_uri, tmp_path):
    # Beside a mask image, so the row must name the .json member, not the .png one.
    endless = {"rle": {"size": [32, 32], "counts": "o" * 2**20}}  # one run length that never ends
    members = good_samples(2) + [
        ("endless.png", encode(rng_image(8, 32, 32))), ("endless.mask.png", encode(np.zeros((32, 32), np.uint8))),
        ("endless.json", json.dumps(endless).encode()),
        ("ones.png", encode(rng_image(9, 32, 32))),
        ("ones.json", json.dumps({"rle": {"size": [32, 32], "counts": "1" * 2**20}}).encode())]
    write(tmp_path / "in" / "shard-000000.tar", tar_bytes(members))
    out = tmp_path / "out"
    proc, seconds = run_job(f"input={tmp_path / 'in' / 'shard-000000.tar'}", f"output={out}", f"model={model_uri}",
                            "num_workers=1", "batch_size=4", "codec_batch_size=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = records(out)
    assert {i for i, r in rows.items() if r["status"] == "ok"} == {"good00", "good01"}
    for rid, problem in (("endless", "run length longer than 13 characters"), ("ones", "more than 1025 run lengths")):
        error = rows[rid]["error"]
        assert f"shard-000000.tar/{rid}.json" in error and problem in error and ".png" not in error, error
        assert rows[rid]["error_kind"] == INPUT
    assert seconds < BOUNDED_SECONDS


def _tree_memory_bytes(root: int) -> int:
    """Memory of process ``root`` and all its descendants: the sum of their proportional
    set sizes (``Pss`` in ``/proc/PID/smaps_rollup``: a page shared by n processes, such as
    torch's libraries mapped by every Ray worker, counts 1/n in each, so the sum is what the
    tree holds; plain RSS would count torch once per process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            rollup = ""
        total += next((int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:")), 0)
        todo += children.get(pid, [])
    return total


def run_job_alone(*args: str, timeout: float = BOUNDED_SECONDS) -> tuple[subprocess.CompletedProcess, int]:
    """``jobs/inpaint.py ARGS`` with a local Ray of its own, so every process of the job
    (driver, Ray's daemons, decode workers, model actor) is in its process tree. Returns the
    finished process (stdout, stderr) and the tree's peak memory in bytes
    (``_tree_memory_bytes``), sampled every 0.2 s."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "jobs/inpaint.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak, deadline = 0, time.monotonic() + timeout
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the job did not finish in bounded time"
            peak = max(peak, _tree_memory_bytes(proc.pid))
            time.sleep(0.2)
        stdout, stderr = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), peak


def test_huge_png_in_a_shard_is_an_error_row_and_the_job_stays_small(model_uri, tmp_path):
    # 12000 x 12000 RGB: 432 MB decoded, more in the model's float copies. Refused from the
    # header in the decode task, it never costs more than its 0.4 MB file.
    members = good_samples(3) + [("huge.png", blank_png(12000, 12000)),
                                 ("huge.json", json.dumps({"boxes": [[0, 0, 100, 100]]}).encode())]
    write(tmp_path / "in" / "shard-000000.tar", tar_bytes(members))
    out = tmp_path / "out"
    proc, peak = run_job_alone(f"input={tmp_path / 'in'}", f"output={out}", f"model={model_uri}", "num_workers=1",
                               "batch_size=2", "codec_batch_size=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"job tree peak memory (PSS) {peak / 2**20:.0f} MiB")
    rows = records(out)
    assert {i for i, r in rows.items() if r["status"] == "ok"} == {"good00", "good01", "good02"}
    huge = rows["huge"]
    assert huge["error_kind"] == INPUT and "12000x12000" in huge["error"] and "max_input_pixels" in huge["error"]
    assert "shard-000000.tar/huge.png" in huge["error"]
    assert peak < 3 * 2**30, f"the job's processes held {peak / 2**20:.0f} MiB at their peak"


def test_ray_training_skips_huge_and_corrupt_images_and_names_them_on_the_console(ray_local, tmp_path, capsys):
    from pipelines.train.config import TrainConfig
    from pipelines.train.ray_job import run_training

    data = tmp_path / "train"
    for i in range(5):
        write(data / f"photo{i}.png", encode(rng_image(300 + i, 80, 80)))
    write(data / "a_huge.png", blank_png(12000, 12000))  # sorted first: trained on, not held out
    write(data / "b_broken.png", encode(rng_image(9, 80, 80))[:200])
    cfg = TrainConfig(input=str(data), output=str(tmp_path / "out"), model="small", recipe="no-perceptual", num_workers=1,
                      cpus_per_worker=0.5, batch_size=2, crop_size=64, steps=2, log_every=1, checkpoint_every=2,
                      validation_images=2, max_failures=0, seed=3)
    outcome = run_training(cfg)
    assert outcome.checkpoint
    out = capsys.readouterr().out
    assert "skipped training image: image " in out and "a_huge.png is 12000x12000" in out, out[-3000:]
    assert "b_broken.png" in out
    assert "skipped 2 training images in all" in out, out[-3000:]


def _inpaint(model_uri: str, input: Path, output: Path, **overrides):
    from pipelines.inpaint.config import InpaintConfig
    from pipelines.inpaint.job import run_inpaint

    settings = dict(batch_size=1, codec_batch_size=1, num_workers=1, gpus_per_worker=0)
    return run_inpaint(InpaintConfig(input=str(input), output=str(output), model=model_uri, **{**settings,
                                                                                              **overrides}))


def test_20_megapixel_jpeg_is_inpainted_at_its_own_size_by_default(ray_local, model_uri, tmp_path):
    from PIL import Image

    photo = np.repeat(np.repeat(rng_image(11, 400, 500), 10, axis=0), 10, axis=1)  # 5000 x 4000, smooth
    write(tmp_path / "in" / "photo.jpg", encode(photo, "JPEG", quality=90))
    write(tmp_path / "in" / "photo_mask000.png", encode(box_mask(4000, 5000, top=1900, left=2400, size=200)))
    summary = _inpaint(model_uri, tmp_path / "in", tmp_path / "out")
    assert (summary.ok, summary.failed) == (1, 0)
    row = records(tmp_path / "out")["photo_mask000"]
    assert (row["width"], row["height"], row["processed_width"], row["processed_height"]) == (5000, 4000, 5000, 4000)
    assert row["resized"] is False
    with Image.open(row["output"]) as result:
        assert result.size == (5000, 4000)


def test_jpeg_over_the_limit_is_an_error_unless_reduction_is_asked_for(ray_local, model_uri, tmp_path):
    write(tmp_path / "in" / "big.jpg", encode(rng_image(12, 1200, 1600), "JPEG", quality=90))
    write(tmp_path / "in" / "big_mask000.png", encode(box_mask(1200, 1600, top=100, left=100, size=64)))
    out = tmp_path / "out"
    refused = _inpaint(model_uri, tmp_path / "in", out, max_input_pixels=600 * 800)
    assert (refused.ok, refused.failed) == (0, 1)
    row = records(out)["big_mask000"]
    assert row["error_kind"] == INPUT and "resize_over_limit=true" in row["error"]
    assert (row["width"], row["height"], row["processed_width"]) == (1600, 1200, None)  # read from the header
    # The setting is remembered: asking for reduction on this output needs overwrite=true.
    reduced = _inpaint(model_uri, tmp_path / "in", out, max_input_pixels=600 * 800, resize_over_limit=True,
                       overwrite=True)
    assert (reduced.ok, reduced.failed) == (1, 0)
    row = records(out)["big_mask000"]
    assert (row["width"], row["height"], row["processed_width"], row["processed_height"]) == (1600, 1200, 800, 600)
    assert row["resized"] is True


def test_output_written_before_resize_over_limit_counts_as_having_reduced(tmp_path):
    import fsspec

    from pipelines.common.errors import JobError
    from pipelines.common.run_settings import SETTINGS_FILE, check_settings
    from pipelines.inpaint.config import RESULT_KEYS_BEFORE

    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"model": "m", "max_input_pixels": 16777216}))
    fs = fsspec.filesystem("file")
    with pytest.raises(JobError, match="resize_over_limit: True in the output vs False now"):
        check_settings(fs, str(tmp_path), str(tmp_path), {"model": "m", "max_input_pixels": 16777216, "backend": "torch",
                                                          "resize_over_limit": False}, False, before=RESULT_KEYS_BEFORE)
    check_settings(fs, str(tmp_path), str(tmp_path), {"model": "m", "max_input_pixels": 16777216, "backend": "torch",
                                                      "resize_over_limit": True}, False, before=RESULT_KEYS_BEFORE)


# ----------------------------------------------------------------------------- state files


def folder_input(root: Path, n: int) -> list[str]:
    """``n`` LaMa-convention records ``r0.png`` + ``r0_mask000.png`` (32²); their ids."""
    for i in range(n):
        write(root / f"r{i}.png", encode(rng_image(400 + i, 32, 32)))
        write(root / f"r{i}_mask000.png", encode(box_mask(32, 32)))
    return [f"r{i}_mask000" for i in range(n)]


def test_torn_records_file_with_webdataset_output_is_set_aside_on_rerun(ray_local, model_uri, tmp_path):
    ids = folder_input(tmp_path / "in", 6)
    out = tmp_path / "out"
    args = (f"input={tmp_path / 'in'}", f"output={out}", f"model={model_uri}", "num_workers=1", "batch_size=2",
            "codec_batch_size=2", "records_per_file=2", "records_per_shard=2", "output_format=webdataset")
    first, _ = run_job(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    files = sorted((out / "records").glob("*.parquet"))
    assert len(files) == 3
    files[1].write_bytes(files[1].read_bytes()[:100])  # what a kill mid-write leaves on local disk
    again, _ = run_job(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is not a readable records file" in again.stderr and "Traceback" not in again.stderr
    rows = records(out)  # the set-aside file (_NAME.corrupt) is not read as records
    assert sorted(rows) == ids and all(r["status"] == "ok" for r in rows.values())
    samples = [m.name for shard in (out / "shards").glob("*.tar") for m in tarfile.open(shard) if m.isreg()]
    assert sorted(s for s in samples if s.endswith(".png")) == sorted(f"{i}.png" for i in ids)  # each key once
    plain, _ = run_job(*args)
    assert plain.returncode == 0 and "6 skipped" in plain.stdout, plain.stdout[-2000:]


@pytest.mark.parametrize("name, content, problem", [
    ("_settings.json", '{"model": "x", "mask_se', "not JSON"),
    ("_settings.json", "[]", "a JSON object was expected, it holds []"),
    ("_lease.json", "[]", "a JSON object was expected, it holds []"),
    ("_lease.json", '{"run": "r", "host": "h", "pid": 1, "expires": "tomorrow"}',
     "'expires' must be a finite number, it is 'tomorrow'"),
    ("_lease.json", '{"run": "r", "host": "h", "pid": 1, "expires": 1e300}', "'expires' 1e+300 is more than 86400 s"),
    ("_lease.json", '{"run": "r", "host": "h", "pid": "abc", "expires": 1}', "'pid' must be an integer, it is 'abc'"),
])
def test_malformed_state_file_stops_the_job_with_one_line_naming_it(ray_local, model_uri, tmp_path, name, content,
                                                                     problem):
    folder_input(tmp_path / "in", 1)
    out = tmp_path / "out"
    write(out / name, content.encode())
    proc, _ = run_job(f"input={tmp_path / 'in'}", f"output={out}", f"model={model_uri}", "num_workers=1")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"{out}/{name} is malformed" in line and problem in line, line
    what_to_do = f"delete {out}/_settings.json to start over" if name == "_settings.json" else "delete it if no run"
    assert what_to_do in line, line
    assert not (out / "records").exists()


# ----------------------------------------------------------------------------- error kinds


def test_running_out_of_memory_on_a_record_alone_is_an_input_error():
    from pipelines.common.error_kinds import MODEL, kind_of_exception, retried

    failures = {}
    for name, allocate in (("numpy", lambda: np.empty(2**60, np.uint8)),
                           ("torch", lambda: torch.empty(2**60, dtype=torch.uint8)),
                           ("shape", lambda: torch.nn.Conv2d(4, 8, 3)(torch.zeros(1, 3, 8, 8)))):
        try:
            allocate()
        except Exception as exc:  # the real errors numpy and torch raise
            failures[name] = exc
    assert isinstance(failures["numpy"], MemoryError)
    assert "can't allocate memory" in str(failures["torch"])  # a RuntimeError, not a MemoryError
    for name in ("numpy", "torch"):
        assert kind_of_exception(failures[name], "inpaint") == INPUT
        assert kind_of_exception(failures[name], "decode") == INPUT
        assert not retried(INPUT, retry_errors=False)  # a plain rerun does not redo it
    assert kind_of_exception(failures["shape"], "inpaint") == MODEL  # not the record's size: retried


def test_memory_error_while_decoding_a_record_is_its_own_input_error(tmp_path):
    # A real MemoryError: a 12000² PNG decoded with no pixel limit in a process whose
    # address space has 200 MB left (a child process, so this one keeps its memory).
    script = tmp_path / "decode.py"
    script.write_text(f"""
import resource, sys
sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
from inpaint_fixtures import blank_png
from pipelines.records.decode import DecodeOptions, decode_record
data = blank_png(12000, 12000)
vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 200 * 2**20, vm + 200 * 2**20))
row = decode_record("huge", "huge.png", data, None, "", DecodeOptions(0, "thick_256", 0, 0))
print(row["status"], row["error_kind"], row["error"])
""")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("error input ") and "huge.png" in proc.stdout and "MemoryError" in proc.stdout


# ----------------------------------------------------------------------------- damaged shards


def _member_offsets(data: bytes) -> dict[str, tuple[int, int]]:
    """Member name -> (header offset, data offset) in a tar."""
    import io

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: (m.offset, m.offset_data) for m in tar}


def test_damaged_shards_give_error_rows_and_never_drop_a_sample_silently(ray_local, model_uri, tmp_path):
    import gzip

    img = lambda seed: encode(rng_image(seed, 32, 32))  # noqa: E731
    box = json.dumps({"boxes": [[4, 4, 12, 12]]}).encode()
    d = tmp_path / "in"
    write(d / "a.tar", tar_bytes([("a1.png", img(1)), ("a1.json", box),
                                  ("split.png", img(2)), ("other.png", img(3)), ("split.json", box),
                                  ("twice.png", img(4)), ("twice.png", img(5))]))
    cut_data = tar_bytes([("b1.png", img(6)), ("b2.png", img(7)), ("b3.png", img(8)), ("b4.png", img(9))])
    write(d / "b.tar", cut_data[: _member_offsets(cut_data)["b3.png"][1] + 50])  # inside b3.png's data
    cut_header = tar_bytes([("c1.png", img(10)), ("c2.png", img(11)), ("c3.png", img(12))])
    write(d / "c.tar", cut_header[: _member_offsets(cut_header)["c3.png"][0] + 100])  # inside c3's header
    write(d / "d.tar.gz", gzip.compress(tar_bytes([("d1.png", img(13)), ("d1.json", box), ("a1.png", img(14))])))
    out = tmp_path / "out"
    proc, seconds = run_job(f"input={d}", f"output={out}", f"model={model_uri}", "num_workers=1", "batch_size=4",
                            "codec_batch_size=4", "mask_kind=thick_256")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = records(out)
    ok = {i for i, r in rows.items() if r["status"] == "ok"}
    assert ok == {"other", "b1", "b2", "c1", "d1"}, {i: r["error"] for i, r in rows.items()}
    errors = {i: r["error"] for i, r in rows.items() if r["status"] == "error"}
    assert set(errors) == {"a1", "split", "twice", "b3", "b.tar", "c2", "c.tar"}, errors
    assert "sample key 'a1' is in shards" in errors["a1"] and f"{d}/a.tar" in errors["a1"]  # one row, not two
    assert "not consecutive" in errors["split"] and "two members 'twice.png'" in errors["twice"]
    assert "cut short" in errors["b3"] and f"{d}/b.tar" in errors["b3"]
    assert "the rest of the shard cannot be read" in errors["b.tar"]
    # c3's header is cut: its name is unknowable, so the shard's row says so (c3 is not
    # silently gone), and c2, whose next member may have been its own, is not trusted.
    assert "ends inside the header of the member after 'c2.png'" in errors["c.tar"]
    assert "may be incomplete" in errors["c2"]
    again, _ = run_job(f"input={d}", f"output={out}", f"model={model_uri}", "num_workers=1", "mask_kind=thick_256")
    assert again.returncode == 0 and "12 skipped" in again.stdout, again.stdout[-2000:]


def test_a_folder_of_only_compressed_shards_is_read(ray_local, model_uri, tmp_path):
    import gzip

    members = good_samples(3)
    write(tmp_path / "in" / "s0.tar.gz", gzip.compress(tar_bytes(members[:4])))
    write(tmp_path / "in" / "s1.tgz", gzip.compress(tar_bytes(members[4:])))
    summary = _inpaint(model_uri, tmp_path / "in", tmp_path / "out")
    assert (summary.ok, summary.failed) == (3, 0)
    assert sorted(records(tmp_path / "out")) == ["good00", "good01", "good02"]


# ----------------------------------------------------------------------------- fencing


def test_a_run_that_lost_its_lease_stops_writing_and_no_id_is_written_twice(ray_local, model_uri, tmp_path):
    import ray

    from pipelines.common.output_lease import LEASE_FILE

    ids = folder_input(tmp_path / "in", 40)
    out = tmp_path / "out"
    args = [sys.executable, "jobs/inpaint.py", f"input={tmp_path / 'in'}", f"output={out}", f"model={model_uri}",
            "num_workers=1", "batch_size=1", "codec_batch_size=1", "records_per_file=4", "lease_seconds=6"]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    first = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        deadline = time.monotonic() + BOUNDED_SECONDS
        while not list((out / "records").glob("*.parquet")) and first.poll() is None:
            assert time.monotonic() < deadline, "no records file in bounded time"
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[1][-3000:]
        (out / LEASE_FILE).unlink()  # someone "cleans up"; the same command is started again
        second = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, first_err = first.communicate(timeout=BOUNDED_SECONDS)
        second_out, second_err = second.communicate(timeout=BOUNDED_SECONDS)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    # When the fence stops a records-file write, Ray Data logs that write's traceback (and
    # advice on its retry settings) around it; the job's own word is one line.
    assert first.returncode == 1, first_err[-3000:]
    (line,) = [ln for ln in first_err.splitlines() if ln.startswith("error:")]
    assert line.startswith(f"error: lost the lease on {out}"), line
    assert line.endswith("nothing more was written; rerun to continue"), line
    assert second.returncode == 0, second_err[-3000:]
    third, _ = run_job(*args[2:])
    assert third.returncode == 0 and f"{len(ids)} skipped" in third.stdout, third.stdout[-2000:]
    rows = records(out)  # fails on an id written twice
    assert sorted(rows) == sorted(ids) and all(r["status"] == "ok" for r in rows.values())


# ----------------------------------------------------------------------------- crashing workers


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def test_a_decode_task_whose_worker_keeps_dying_stops_the_job_instead_of_hanging(ray_local, model_uri, tmp_path):
    # Every worker that runs the decode stage is killed with SIGSEGV, as a native crash on a
    # record would kill it. Only this test session's Ray workers (our descendants) are hit.
    # Ray Data's default retries a dead worker's task forever (a hang); the job must stop
    # after TASK_RETRIES with one line, and what it wrote must stay valid.
    import signal
    import threading

    folder_input(tmp_path / "in", 3)
    stop, killed = threading.Event(), []

    def killer() -> None:
        while not stop.is_set():
            for pid in _descendants(os.getpid()):
                try:
                    if b"decode_folder_batch" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGSEGV)
                        killed.append(pid)
                except OSError:
                    pass
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        proc, seconds = run_job(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", f"model={model_uri}",
                                "num_workers=1", "batch_size=1", "codec_batch_size=1")
    finally:
        stop.set()
        thread.join(timeout=5)
    assert len(set(killed)) >= 1 + 3, killed  # the first run of a task and its 3 retries
    # Ray Data logs the dead task's system error (with its traceback) around it; the job's
    # own word is one line.
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: a task of decoding or writing records crashed its worker 4 times"), line
    assert "records written so far stay valid" in line, line
    assert seconds < BOUNDED_SECONDS


def test_the_lost_lease_line_is_found_in_a_ray_task_error(ray_local):
    import ray

    from pipelines.common.output_lease import LeaseLost, lost_lease_line

    @ray.remote(max_retries=0)
    def writer():
        raise LeaseLost("lost the lease on /out (its lease file is gone); nothing more was written; rerun to continue")

    with pytest.raises(Exception) as info:
        ray.get(writer.remote())
    assert isinstance(info.value, LeaseLost) and str(info.value).count("\n") > 2  # the whole traceback
    assert lost_lease_line(info.value) == ("lost the lease on /out (its lease file is gone); nothing more was "
                                           "written; rerun to continue")
