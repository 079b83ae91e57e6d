"""End-to-end tests of the bulk inpainting job (``jobs/inpaint.py``, ``pipelines/inpaint/job.py``)
on one local Ray for the whole session, a small seeded model and 32-96 px images."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from inpaint_fixtures import box_mask, encode, lama_folder, parquet_shards, png16_rgb, rng_image, write
from lama_core import build_generator, save_generator
from lama_core.masks import generate_mask
from pipelines.inpaint.config import InpaintConfig
from pipelines.inpaint.job import run_inpaint
from pipelines.records.decode import mask_index_for
from pipelines.common.cli import JobError
from pipelines.records.listing import list_folder, list_files

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def model_uri(tmp_path_factory) -> str:
    """A seeded ``small`` generator saved in our safetensors format."""
    torch.manual_seed(0)
    return save_generator(build_generator("small"), str(tmp_path_factory.mktemp("model")))


def run(model_uri: str, input: Path | str, output: Path | str, **overrides) -> object:
    settings = dict(batch_size=4, codec_batch_size=4, num_workers=1, gpus_per_worker=0)
    settings.update(overrides)
    cfg = InpaintConfig(input=str(input), output=str(output), model=model_uri, **settings)
    return run_inpaint(cfg)


def records(output: Path) -> dict[str, dict]:
    """All rows under OUTPUT/records/, by id; fails if an id appears twice."""
    table = pq.read_table(output / "records")
    rows = table.to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"duplicate ids in records: {sorted(ids)}"
    return {r["id"]: r for r in rows}


def decoded(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_listing_pairs_masks_and_names_ids_by_contract(tmp_path):
    lama_folder(tmp_path)
    write(tmp_path / "lonely.webp", encode(rng_image(0, 8, 8), "WEBP"))
    write(tmp_path / "gone_mask000.png", encode(box_mask(8, 8)))
    import fsspec

    fs = fsspec.filesystem("file")
    recs, ignored = list_folder(fs, str(tmp_path), str(tmp_path), list_files(fs, str(tmp_path)))
    by_id = {r["id"]: r for r in recs}
    assert set(by_id) == {"a_mask000", "a_mask001", "sub/b_mask000", "sub/deeper/c_mask000", "lonely", "gone_mask000"}
    assert ignored == ["README.txt"]  # the one non-image file, by name
    assert by_id["sub/b_mask000"]["source"] == f"{tmp_path}/sub/b.png"
    assert "no mask for image" in by_id["lonely"]["error"] and "lonely.webp" in by_id["lonely"]["error"]
    assert "no image for mask" in by_id["gone_mask000"]["error"]


def test_folder_in_images_and_records_out_then_resume_and_overwrite(ray_local, model_uri, tmp_path):
    inputs = lama_folder(tmp_path / "in")
    out = tmp_path / "out"
    summary = run(model_uri, tmp_path / "in", out)
    assert (summary.ok, summary.failed, summary.skipped, summary.ignored) == (4, 0, 0, 1)
    rows = records(out)
    assert set(rows) == set(inputs)
    for rid, image in inputs.items():
        row = rows[rid]
        assert row["status"] == "ok" and row["error"] is None
        assert row["output"] == f"{out}/images/{rid}.png" and Path(row["output"]).exists()
        assert (row["width"], row["height"]) == (image.shape[1], image.shape[0])
        assert row["model"] == model_uri and row["model_hash"].startswith("sha256:")
        assert not any(row[f] for f in ("mask_binarized", "resized", "converted", "mask_generated"))
        assert row["hole_area_bin"].endswith("%") and row["timestamp"].tzinfo is not None
        assert (row["hd_strategy"], row["windows"]) == ("full", 1)  # small images: one whole frame
        mask_written = np.asarray(Image.open(Path(row["mask_output"])))
        assert mask_written.shape == (image.shape[0], image.shape[1]) and set(np.unique(mask_written)) <= {0, 255}
        assert row["psnr"] is None and row["seconds"] > 0
        result = decoded(Path(row["output"]))
        source = decoded(Path(row["source"]))  # the JPEG input compares after decoding
        mask = np.asarray(Image.open(Path(row["mask_source"]))) > 127
        assert row["hole_fraction"] == pytest.approx(mask.mean())
        np.testing.assert_array_equal(result[~mask], source[~mask])
        assert not np.array_equal(result[mask], source[mask])
    # A picture of the run: one row per ok record (input with the hole | output), 160 px high
    # panels, 4 px gaps, a 16 px title line; named by the summary line.
    assert summary.preview == f"{out}/preview.png" and f"preview {out}/preview.png" in summary.line()
    sheet = np.asarray(Image.open(out / "preview.png").convert("RGB"))
    assert sheet.shape[0] == 16 + 4 * 160 + 3 * 4
    assert sheet[16 + 80, 2].tolist() != [128, 128, 128]  # a panel, not the grey padding

    again = run(model_uri, tmp_path / "in", out, preview=0)  # resume: nothing new, no picture
    assert again.preview == "" and (out / "preview.png").exists()  # the earlier run's picture stays
    assert (again.ok, again.failed, again.skipped) == (0, 0, 4)
    write(tmp_path / "in" / "new.png", encode(rng_image(9, 32, 32)))
    write(tmp_path / "in" / "new_mask000.png", encode(box_mask(32, 32)))
    third = run(model_uri, tmp_path / "in", out)  # resume: only the new record
    assert (third.ok, third.failed, third.skipped) == (1, 0, 4)
    assert set(records(out)) == set(inputs) | {"new_mask000"}

    redo = run(model_uri, tmp_path / "in", out, overwrite=True)
    assert (redo.ok, redo.skipped) == (5, 0)
    rows = records(out)
    assert len(rows) == 5 and {r["run"] for r in rows.values()} == {redo.run_id}


def test_parquet_shards_with_and_without_masks(ray_local, model_uri, tmp_path):
    images = parquet_shards(tmp_path / "shards")
    out = tmp_path / "out"
    summary = run(model_uri, tmp_path / "shards", out, mask_kind="thick_256", mask_seed=3)
    assert (summary.ok, summary.failed) == (5, 0)
    rows = records(out)
    assert set(rows) == set(images)
    for rid, image in images.items():
        row = rows[rid]
        generated = rid in ("img2", "img3", "img4")  # null mask, or a shard without a mask column
        assert row["status"] == "ok" and row["mask_generated"] is generated
        assert row["source"].endswith("with_masks.parquet" if rid < "img3" else "no_masks.parquet")
        h, w = image.shape[:2]
        if generated:
            assert row["mask_index"] == mask_index_for(rid)
            assert row["mask_source"] == f"thick_256:seed=3:index={row['mask_index']}"  # which mask was drawn
            hole = generate_mask("thick_256", 3, row["mask_index"], h, w) > 0.5
            for metric in ("psnr", "ssim", "psnr_hole", "ssim_hole"):
                assert row[metric] is not None and np.isfinite(row[metric]), metric
            assert row["psnr"] > row["psnr_hole"]  # known pixels are exact, only the hole differs
        else:
            assert row["mask_index"] is None and row["psnr"] is None
            hole = box_mask(h, w, top=20 if rid == "img1" else 8) > 0
        assert row["hole_fraction"] == pytest.approx(hole.mean())
        result = decoded(Path(row["output"]))
        np.testing.assert_array_equal(result[~hole], image[~hole])

    # A shard that gained a row: only the new row is read and written (some batches of the
    # rerun hold only rows already done, and come out empty).
    shard = pq.read_table(tmp_path / "shards" / "with_masks.parquet")
    new = rng_image(99, 32, 40)
    extra = pa.table({"id": ["img9"], "image": [encode(new)], "mask": pa.array([None], pa.binary())})
    pq.write_table(pa.concat_tables([shard, extra]), tmp_path / "shards" / "with_masks.parquet")
    again = run(model_uri, tmp_path / "shards", out, mask_kind="thick_256", mask_seed=3, codec_batch_size=2)
    assert (again.ok, again.failed, again.skipped) == (1, 0, 5)
    assert set(records(out)) == set(images) | {"img9"}


def test_mask_dir_matches_masks_by_image_name(ray_local, model_uri, tmp_path):
    x, y = rng_image(4, 40, 48), rng_image(5, 32, 32)
    write(tmp_path / "in" / "x.jpg", encode(x, "JPEG", quality=95))
    write(tmp_path / "in" / "sub" / "y.png", encode(y))
    write(tmp_path / "in" / "z.png", encode(rng_image(6, 32, 32)))  # no mask
    write(tmp_path / "masks" / "x.png", encode(box_mask(40, 48)))
    write(tmp_path / "masks" / "sub" / "y.png", encode(box_mask(32, 32)))
    write(tmp_path / "masks" / "unused.png", encode(box_mask(8, 8)))
    out = tmp_path / "out"
    summary = run(model_uri, tmp_path / "in", out, mask_dir=str(tmp_path / "masks"), output_format="jpg")
    assert (summary.ok, summary.failed, summary.ignored) == (2, 1, 1)
    rows = records(out)
    assert set(rows) == {"x", "sub/y", "z"}
    assert rows["sub/y"]["mask_source"] == f"{tmp_path}/masks/sub/y.png"
    assert rows["x"]["output"] == f"{out}/images/x.jpg" and Path(rows["x"]["output"]).exists()
    assert rows["z"]["status"] == "error" and f"{tmp_path}/in/z.png" in rows["z"]["error"]


def test_s3_input_and_output_on_local_endpoint(ray_local, model_uri, tmp_path, s3_bucket):
    import fsspec

    inputs = lama_folder(tmp_path / "in")
    s3 = fsspec.filesystem("s3", client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    s3.put(str(tmp_path / "in") + "/", f"{s3_bucket[5:]}/data/", recursive=True)
    # The output lies inside the input prefix: its files must never be listed as inputs.
    output = f"{s3_bucket}/data/results"
    summary = run(model_uri, f"{s3_bucket}/data", output)
    assert (summary.ok, summary.failed, summary.ignored) == (4, 0, 1)
    rows = {r["id"]: r for r in pq.read_table(f"{output[5:]}/records", filesystem=s3).to_pylist()}
    assert set(rows) == set(inputs)
    assert rows["sub/b_mask000"]["source"] == f"{s3_bucket}/data/sub/b.png"
    assert rows["sub/b_mask000"]["output"] == f"{output}/images/sub/b_mask000.png"
    result = np.asarray(Image.open(io.BytesIO(s3.cat(rows["sub/b_mask000"]["output"]))))
    hole = box_mask(64, 56, top=30) > 0
    np.testing.assert_array_equal(result[~hole], inputs["sub/b_mask000"][~hole])
    resumed = run(model_uri, f"{s3_bucket}/data", output)
    assert (resumed.ok, resumed.failed, resumed.skipped, resumed.ignored) == (0, 0, 4, 1)


def test_bad_records_each_give_one_row_with_reason(ray_local, model_uri, tmp_path):
    d = tmp_path / "in"
    good = rng_image(20, 48, 48)
    write(d / "good.png", encode(good))
    write(d / "good_mask000.png", encode(box_mask(48, 48)))
    write(d / "corrupt.png", b"this is not a png at all")
    write(d / "corrupt_mask000.png", encode(box_mask(48, 48)))
    write(d / "trunc.png", encode(rng_image(21, 48, 48))[:300])
    write(d / "trunc_mask000.png", encode(box_mask(48, 48)))
    write(d / "nomask.png", encode(rng_image(22, 32, 32)))
    write(d / "orphan_mask000.png", encode(box_mask(32, 32)))
    write(d / "mismatch.png", encode(rng_image(23, 48, 64)))
    write(d / "mismatch_mask000.png", encode(box_mask(32, 32)))
    write(d / "badmask.png", encode(rng_image(24, 32, 32)))
    write(d / "badmask_mask000.png", b"\x89PNG\r\n\x1a\n garbage")
    soft = box_mask(48, 48)
    soft[8:24, 8:12] = 100  # below the 0.5 threshold: not a hole
    soft[30:34, 30:34] = 200  # above: hole
    write(d / "soft.png", encode(good))
    write(d / "soft_mask000.png", encode(soft))
    write(d / "rgba.png", encode(rng_image(25, 40, 40, channels=4)))
    write(d / "rgba_mask000.png", encode(box_mask(40, 40)))
    write(d / "gray.png", encode(rng_image(26, 40, 40)[:, :, 0]))
    write(d / "gray_mask000.png", encode(box_mask(40, 40)))
    gray16 = (rng_image(27, 40, 40)[:, :, 0].astype(np.uint16) * 257)
    write(d / "gray16.png", encode(gray16))
    write(d / "gray16_mask000.png", encode(box_mask(40, 40)))
    write(d / "rgb16.png", png16_rgb(rng_image(28, 40, 40).astype(np.uint16) * 257))
    write(d / "rgb16_mask000.png", encode(box_mask(40, 40)))
    big = rng_image(29, 96, 96)
    write(d / "big.png", encode(big))
    write(d / "big_mask000.png", encode(box_mask(96, 96, size=40)))
    write(d / "dup.png", encode(rng_image(30, 32, 32)))
    write(d / "dup.jpg", encode(rng_image(30, 32, 32), "JPEG"))
    write(d / "dup_mask000.png", encode(box_mask(32, 32)))

    out = tmp_path / "out"
    summary = run(model_uri, d, out, max_pixels=64 * 64)
    rows = records(out)
    expected_errors = {
        "corrupt_mask000": ("cannot decode image", "corrupt.png"),
        "trunc_mask000": ("cannot decode image", "trunc.png"),
        "nomask": ("no mask for image", "nomask.png"),
        "orphan_mask000": ("no image for mask", "orphan_mask000.png"),
        "mismatch_mask000": ("size mismatch", "mismatch_mask000.png"),
        "badmask_mask000": ("cannot decode mask", "badmask_mask000.png"),
        "dup_mask000": ("ambiguous", "dup.jpg"),
    }
    flags = {"good_mask000": (), "soft_mask000": ("mask_binarized",), "rgba_mask000": ("converted",),
             "gray_mask000": ("converted",), "gray16_mask000": ("converted",), "rgb16_mask000": ("converted",),
             "big_mask000": ("resized",)}
    assert set(rows) == set(expected_errors) | set(flags)
    assert (summary.ok, summary.failed) == (len(flags), len(expected_errors))
    for rid, (reason, name) in expected_errors.items():
        row = rows[rid]
        assert row["status"] == "error" and row["output"] is None, rid
        assert all(row[f] is None for f in ("mask_binarized", "resized", "converted")), rid  # unknown, not false
        assert reason in row["error"] and f"{d}/" in row["error"] and name in row["error"], row["error"]
    for rid, set_flags in flags.items():
        row = rows[rid]
        assert row["status"] == "ok" and row["error"] is None, (rid, row["error"])
        for flag in ("mask_binarized", "resized", "converted", "mask_generated"):
            assert row[flag] is (flag in set_flags), (rid, flag)
    assert rows["soft_mask000"]["hole_fraction"] == pytest.approx((16 * 16 - 16 * 4 + 16) / 48**2)
    # The image over the pixel budget is inpainted downscaled but pasted back at the hole only.
    result = decoded(out / "images" / "big_mask000.png")
    hole = box_mask(96, 96, size=40) > 0
    assert result.shape == big.shape
    np.testing.assert_array_equal(result[~hole], big[~hole])
    assert not np.array_equal(result[hole], big[hole])
    gray16_out = decoded(out / "images" / "gray16_mask000.png")
    np.testing.assert_array_equal(gray16_out[:, :, 0][box_mask(40, 40) == 0],
                                  rng_image(27, 40, 40)[:, :, 0][box_mask(40, 40) == 0])


def test_jobs_that_cannot_run_raise_one_clear_error(tmp_path, model_uri, monkeypatch):
    with pytest.raises(JobError, match="input not found"):
        run(model_uri, tmp_path / "missing", tmp_path / "out")
    lama_folder(tmp_path / "in")
    with pytest.raises(JobError, match="cannot load model"):
        run(str(tmp_path / "nope.safetensors"), tmp_path / "in", tmp_path / "out")
    (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(JobError, match="cannot load model"):
        run(str(tmp_path / "broken.safetensors"), tmp_path / "in", tmp_path / "out")
    # Credentials present, endpoint down: botocore would retry for ~10 s without the cap.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(JobError, match="cannot reach input s3://no-bucket/data: EndpointConnectionError"):
        run(model_uri, "s3://no-bucket/data", tmp_path / "out", endpoint_url="http://127.0.0.1:9")


def _job(*args: str, ray_address: str | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    # cwd: Ray puts the driver's working directory on its workers' import path.
    return subprocess.run([sys.executable, "jobs/inpaint.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_joins_ray_address_runs_to_the_end_and_prints_the_summary(ray_local, tmp_path, model_uri):
    import ray

    # As under `ray job submit`: RAY_ADDRESS names the cluster (this session's), the job joins it.
    lama_folder(tmp_path / "in")
    done = _job(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", f"model={model_uri}", "num_workers=1",
                ray_address=ray.get_runtime_context().gcs_address)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("inpaint: 4 ok / 0 failed / 0 skipped (resumed) / 1 ignored files /"), last
    assert f"output {tmp_path / 'out'}" in last
    assert len(list((tmp_path / "out" / "images").rglob("*.png"))) == 4
    assert "joined the Ray cluster in RAY_ADDRESS" in done.stdout


def test_cli_fails_with_one_line_on_stderr(tmp_path, model_uri):
    failed = _job("input=/definitely/not/here", f"output={tmp_path / 'out'}", f"model={model_uri}", timeout=120)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == "error: input not found: /definitely/not/here", failed.stderr


def test_ctrl_c_is_one_line_and_status_130_and_a_rerun_finishes(model_uri, tmp_path):
    """SIGINT while the job runs: one line on stderr (no traceback), exit status 130, and the
    output stays valid: the same command again ends with every record exactly once."""
    import signal
    import threading
    import time

    lama_folder(tmp_path / "in")
    command = [sys.executable, "-u", str(REPO / "jobs" / "inpaint.py"), f"input={tmp_path / 'in'}",
               f"output={tmp_path / 'out'}", f"model={model_uri}", "batch_size=1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    for line in proc.stdout:  # interrupt once the pipeline runs
        if "model actor(s)" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=180)
    reader.join(10)
    assert proc.returncode == 130, "".join(err)
    ours = [line for line in err if "core_worker.cc" not in line and not line.startswith("inpaint: ")]
    assert ours == ["interrupted: rerun the same command to continue\n"], "".join(err)
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert set(records(tmp_path / "out")) == {"a_mask000", "a_mask001", "sub/b_mask000", "sub/deeper/c_mask000"}


def test_onnxruntime_backend_runs_the_exported_graph_once_per_model(ray_local, model_uri, tmp_path):
    """backend=onnxruntime: the driver exports the model's graph once into OUTPUT/_models/,
    every actor runs it, the records say which backend and precision ran, and the pixels
    agree with the torch backend's (within one level: the graph matches torch to ~1e-7)."""
    from lama_core.inpainter import resolve_precision

    lama_folder(tmp_path / "in")
    torch_run = run(model_uri, tmp_path / "in", tmp_path / "torch", precision="fp32")
    onnx_run = run(model_uri, tmp_path / "in", tmp_path / "onnx", backend="onnxruntime")  # precision=auto: fp32 here
    assert (torch_run.ok, onnx_run.ok) == (4, 4)
    graphs = list((tmp_path / "onnx" / "_models").glob("*.onnx"))
    assert len(graphs) == 1
    for rid, row in records(tmp_path / "onnx").items():
        assert (row["backend"], row["precision"], row["precision_fallback"]) == ("onnxruntime", "fp32", False)
        ours, theirs = decoded(Path(row["output"])), decoded(tmp_path / "torch" / "images" / f"{rid}.png")
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1, rid
    assert {r["backend"] for r in records(tmp_path / "torch").values()} == {"torch"}
    # precision=auto (the default) records what it resolved to on this machine's hardware.
    auto = run(model_uri, tmp_path / "in", tmp_path / "auto")
    assert auto.ok == 4 and {r["precision"] for r in records(tmp_path / "auto").values()} == {resolve_precision("auto")}
    exported = graphs[0].stat().st_mtime_ns
    again = run(model_uri, tmp_path / "in", tmp_path / "onnx", backend="onnxruntime", overwrite=True)
    assert again.ok == 4 and graphs[0].stat().st_mtime_ns == exported  # the graph is reused, not exported again
    with pytest.raises(JobError, match="backend: 'onnxruntime' in the output vs 'torch' now"):
        run(model_uri, tmp_path / "in", tmp_path / "onnx", precision="auto")  # other pixels: remembered
