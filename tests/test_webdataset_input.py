"""WebDataset shards in and out of the bulk inpainting job, masks as geometry in shards
and Parquet, and folder input with drawn masks. Shards are written here with ``tarfile``."""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from inpaint_fixtures import box_mask, encode, rng_image, tar_bytes, write
from lama_core import build_generator, save_generator
from lama_core.mask_geometry import dilate_mask
from pipelines.inpaint.config import InpaintConfig
from pipelines.inpaint.job import run_inpaint
from pipelines.common.cli import JobError
from pipelines.records.webdataset import (expand_braces, is_webdataset_input, list_webdataset, sample_columns,
                                        split_member)
from pipelines.records.parquet_geometry import split_by_geometry
from pipelines.inpaint.webdataset_writer import reconcile_shards


def rect(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def read_tar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


def rle_string(mask: np.ndarray) -> str:
    from pycocotools import mask as coco_mask

    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


def geometry_shards(root: Path) -> dict[str, dict]:
    """Two shards of samples, each with what its record must come out as: ``image`` (the
    input pixels), ``hole`` (the expected mask before dilation) or ``error`` (a phrase of it)."""
    h, w = 40, 48
    img = {name: rng_image(seed, h, w) for seed, name in enumerate(
        ["sub/box", "poly", "rle", "maskimg", "plain", "clip", "badbox", "badrle", "norm"])}
    rle_hole = rect(h, w, 5, 15, 30, 44) | rect(h, w, 30, 40, 0, 6)
    jpg = encode(img["maskimg"], "JPEG", quality=95)
    img["maskimg"] = np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB"))
    js = lambda obj: json.dumps(obj).encode()  # noqa: E731
    shard0 = [
        ("sub/box.png", encode(img["sub/box"])), ("sub/box.json", js({"boxes": [[8, 6, 24, 20]], "caption": "x"})),
        ("poly.png", encode(img["poly"])), ("poly.json", js({"polygons": [[4, 4, 20, 4, 20, 12, 4, 12]]})),
        ("rle.png", encode(img["rle"])), ("rle.json", js({"rle": {"size": [h, w], "counts": rle_string(rle_hole)}})),
        ("maskimg.jpg", jpg), ("maskimg.mask.png", encode(box_mask(h, w, top=10, left=20, size=8))),
        ("maskimg.json", js({"boxes": [[0, 0, 4, 4]]})),  # union with the mask image
    ]
    shard1 = [
        ("plain.png", encode(img["plain"])), ("plain.json", js({"caption": "a photo", "url": "http://x"})),
        ("plain.txt", b"a photo"),
        ("clip.png", encode(img["clip"])), ("clip.json", js({"boxes": [[40, 30, 60, 50]]})),
        ("badbox.png", encode(img["badbox"])), ("badbox.json", js({"boxes": [[50, 0, 60, 10]]})),
        ("badrle.png", encode(img["badrle"])), ("badrle.json", js({"rle": {"size": [h + 1, w], "counts": [0]}})),
        ("noimage.json", js({"boxes": [[0, 0, 4, 4]]})),
        ("norm.webp", encode(img["norm"], "WEBP", lossless=True)),
        ("norm.json", js({"boxes": [[0.5, 0.5, 1.0, 1.0]], "normalized": True})),
    ]
    write(root / "shard-000000.tar", tar_bytes(shard0))
    write(root / "shard-000001.tar", tar_bytes(shard1))
    box = lambda y0, y1, x0, x1: rect(h, w, y0, y1, x0, x1)  # noqa: E731
    return {
        "sub/box": {"image": img["sub/box"], "hole": box(6, 20, 8, 24)},
        "poly": {"image": img["poly"], "hole": box(4, 12, 4, 20)},
        "rle": {"image": img["rle"], "hole": rle_hole},
        "maskimg": {"image": img["maskimg"], "hole": box(10, 18, 20, 28) | box(0, 4, 0, 4)},
        "plain": {"image": img["plain"], "hole": None},  # drawn from mask_kind
        "clip": {"image": img["clip"], "hole": box(30, 40, 40, 48), "clipped": True},
        "norm": {"image": img["norm"], "hole": box(20, 40, 24, 48)},
        "badbox": {"error": "box 0 [50, 0, 60, 10] lies outside the 48x40 image"},
        "badrle": {"error": "rle 0 size is 48x41 (WxH) but the image is 48x40"},
        "noimage": {"error": "no image in sample 'noimage'"},
    }


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory) -> str:
    torch.manual_seed(0)
    return save_generator(build_generator("small"), str(tmp_path_factory.mktemp("model")))


def run(model_uri: str, input: str, output: str, **overrides):
    settings = dict(batch_size=4, codec_batch_size=4, num_workers=1, gpus_per_worker=0)
    settings.update(overrides)
    return run_inpaint(InpaintConfig(input=input, output=output, model=model_uri, **settings))


def check_rows(rows: dict[str, dict], expected: dict[str, dict], results: dict[str, np.ndarray], dilate: int):
    """Every expected record once; ok ones keep every pixel outside the (dilated) hole."""
    assert set(rows) == set(expected)
    for rid, exp in expected.items():
        row = rows[rid]
        if "error" in exp:
            assert row["status"] == "error" and exp["error"] in row["error"], row["error"]
            continue
        assert row["status"] == "ok", row["error"]
        assert row["mask_clipped"] == exp.get("clipped", False)
        result = results[rid]
        if exp["hole"] is None:
            assert row["mask_generated"] and row["psnr"] is not None
            continue
        hole = dilate_mask(exp["hole"], dilate).astype(bool)
        assert not row["mask_generated"] and row["hole_fraction"] == pytest.approx(hole.mean())
        np.testing.assert_array_equal(result[~hole], exp["image"][~hole])
        assert not np.array_equal(result[hole], exp["image"][hole])


# ----------------------------------------------------------------------------- listing, no Ray

def test_brace_patterns_member_keys_and_format_detection():
    assert expand_braces("s3://b/shard-{008..011}.tar") == [f"s3://b/shard-{i:03d}.tar" for i in range(8, 12)]
    assert expand_braces("x/{a,b}-{0..1}.tar") == ["x/a-0.tar", "x/a-1.tar", "x/b-0.tar", "x/b-1.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    assert split_member("sub/0001.mask.png") == ("sub/0001", "mask.png")
    assert split_member("a.b/c.jpg") == ("a.b/c", "jpg") and split_member("README") == (None, None)
    assert split_member(".hidden") == (None, None) and split_member("x/._c.jpg") == ("x/", "_c.jpg")  # as Ray
    assert is_webdataset_input("auto", "/d", ["a.tar", "b.tar", "notes.txt"])
    assert not is_webdataset_input("auto", "/d", ["a.tar", "x.png"])
    assert is_webdataset_input("auto", "/d/shards-{0..3}.tar", [])
    assert not is_webdataset_input("parquet", "/d", ["a.tar"])


def test_listing_counts_samples_skips_done_and_turns_bad_shards_into_error_rows(tmp_path):
    geometry_shards(tmp_path / "in")
    fs = fsspec.filesystem("file")
    root = str(tmp_path / "in")
    files = ["shard-000000.tar", "shard-000001.tar"]
    listing = list_webdataset(fs, root, root, files, done={"sub/box", "poly", "rle", "maskimg"})
    assert (listing.total, listing.skipped) == (10, 4)
    assert listing.shards == [f"{root}/shard-000001.tar"]  # shard 0 is done: not read again
    pattern = f"{root}/shard-{{000000..000001}}.tar"
    assert list_webdataset(fs, pattern, pattern, [], set()).total == 10
    missing = f"{root}/shard-{{000000..000002}}.tar"
    with pytest.raises(JobError, match="1 shards of the pattern .* do not exist .*shard-000002.tar"):
        list_webdataset(fs, missing, missing, [], set())
    # A key in two shards: one error row, in the first shard that has it.
    write(tmp_path / "in" / "dup.tar", tar_bytes([("poly.png", b"x")]))
    dup = list_webdataset(fs, root, root, files + ["dup.tar"], set())
    assert dup.total == 10 and dup.bad_keys["poly"][0] == f"{root}/shard-000000.tar"
    assert "sample key 'poly' is in shards" in dup.bad_keys["poly"][1]
    write(tmp_path / "split" / "s.tar", tar_bytes([("a.png", b"x"), ("b.png", b"x"), ("a.json", b"{}")]))
    split = list_webdataset(fs, str(tmp_path / "split"), str(tmp_path / "split"), ["s.tar"], set())
    assert split.total == 2 and "the members of sample 'a' are not consecutive" in split.bad_keys["a"][1]
    write(tmp_path / "twice" / "s.tar", tar_bytes([("a.png", b"x"), ("a.png", b"y")]))
    twice = list_webdataset(fs, str(tmp_path / "twice"), str(tmp_path / "twice"), ["s.tar"], set())
    assert "sample 'a' has two members 'a.png'" in twice.bad_keys["a"][1]
    write(tmp_path / "bad" / "t.tar", b"not a tar file at all" * 40)
    bad = list_webdataset(fs, str(tmp_path / "bad"), str(tmp_path / "bad"), ["t.tar"], set())
    assert bad.total == 1 and bad.damaged[f"{tmp_path}/bad/t.tar"][0] == "t.tar"
    assert "not a readable tar" in bad.damaged[f"{tmp_path}/bad/t.tar"][1]


def test_sample_columns_give_every_sample_one_schema():
    got = sample_columns({"__key__": "k", "__url__": "/s.tar", "JPG": b"i", "mask.png": b"m", "txt": b"t"})
    assert got == {"key": "k", "shard": "/s.tar", "problem": "", "image": b"i", "image_name": "k.JPG",
                   "mask": b"m", "mask_name": "k.mask.png", "geometry": None}
    two = sample_columns({"__key__": "k", "png": b"a", "jpg": b"b"})
    assert "ambiguous sample 'k'" in two["problem"]


def test_parquet_shards_are_grouped_by_their_geometry_column(tmp_path):
    for name, columns in (("a", {"id": ["1"], "image": [b"x"], "geometry": ["{}"]}),
                          ("b", {"id": ["2"], "image": [b"x"]}),
                          ("c", {"id": ["3"], "image": [b"x"], "mask": [b"m"], "geometry": [None]})):
        pq.write_table(pa.table(columns), tmp_path / f"{name}.parquet")
    shard = lambda n: str(tmp_path / f"{n}.parquet")  # noqa: E731
    groups = split_by_geometry(fsspec.filesystem("file"), (([shard("c")], ["id", "image", "mask"]),
                                                           ([shard("a"), shard("b")], ["id", "image"])))
    assert groups == [([shard("c")], ["id", "image", "mask", "geometry"]),
                      ([shard("a")], ["id", "image", "geometry"]), ([shard("b")], ["id", "image"])]


def test_reconcile_keeps_named_shards_trims_partial_ones_and_drops_orphans(tmp_path):
    fs = fsspec.filesystem("file")
    out = tmp_path / "out"
    full, partial, orphan = (f"r_{n}_n2.tar" for n in ("full", "part", "orphan"))
    for name, ids in ((full, ["a", "b"]), (partial, ["c", "d"]), (orphan, ["e", "f"])):
        write(out / "shards" / name, tar_bytes([m for i in ids for m in ((f"{i}.png", b"p"), (f"{i}.json", b"{}"))]))
    (out / "records").mkdir()
    outputs = [f"{out}/shards/{full}#a", f"{out}/shards/{full}#b", f"{out}/shards/{partial}#c", None]
    pq.write_table(pa.table({"id": ["a", "b", "c", "x"], "status": ["ok"] * 4,
                             "output": pa.array(outputs, pa.string())}), out / "records" / "run.parquet")
    assert reconcile_shards(fs, str(out)) == (1, 1)
    assert sorted(p.name for p in (out / "shards").iterdir()) == [full, partial]
    assert set(read_tar((out / "shards" / partial).read_bytes())) == {"c.png", "c.json"}
    assert set(read_tar((out / "shards" / full).read_bytes())) == {"a.png", "a.json", "b.png", "b.json"}
    assert reconcile_shards(fs, str(out)) == (0, 0)


# ----------------------------------------------------------------------------- end to end on a local Ray

@pytest.mark.slow
def test_local_shards_in_webdataset_shards_out_and_resume(ray_local, model_uri, tmp_path):
    expected = geometry_shards(tmp_path / "in")
    out = tmp_path / "out"
    summary = run(model_uri, str(tmp_path / "in"), str(out), output_format="webdataset", records_per_shard=3,
                  mask_dilate=2, mask_kind="thick_256")
    assert (summary.ok, summary.failed, summary.skipped) == (7, 3, 0)
    rows = {r["id"]: r for r in pq.read_table(out / "records").to_pylist()}
    assert len(rows) == summary.ok + summary.failed
    samples: dict[str, bytes] = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        members = read_tar(shard.read_bytes())
        assert not set(members) & set(samples), "a sample is in two shards"
        samples.update(members)
    ok = {rid for rid, r in rows.items() if r["status"] == "ok"}
    assert set(samples) == {f"{rid}.{ext}" for rid in ok for ext in ("png", "json")}
    results = {rid: np.asarray(Image.open(io.BytesIO(samples[f"{rid}.png"]))) for rid in ok}
    check_rows(rows, expected, results, dilate=2)
    for rid in ok:
        record = json.loads(samples[f"{rid}.json"])
        assert record["id"] == rid and record["status"] == "ok" and rows[rid]["output"].endswith(f".tar#{rid}")
        assert record["hole_fraction"] == pytest.approx(rows[rid]["hole_fraction"])
        assert record["timestamp"].startswith(str(rows[rid]["timestamp"].year))
    assert rows["noimage"]["source"] == f"{tmp_path}/in/shard-000001.tar"
    assert rows["sub/box"]["source"] == f"{tmp_path}/in/shard-000000.tar/sub/box.png"

    again = run(model_uri, str(tmp_path / "in"), str(out), output_format="webdataset", mask_dilate=2,
                mask_kind="thick_256")
    assert (again.ok, again.failed, again.skipped) == (0, 0, 10)
    with pytest.raises(JobError, match="other settings .*mask_dilate"):  # a grown hole is another result
        run(model_uri, str(tmp_path / "in"), str(out), output_format="webdataset", mask_dilate=4, mask_kind="thick_256")


@pytest.mark.slow
def test_s3_brace_pattern_in_webdataset_shards_out(ray_local, model_uri, tmp_path, s3_bucket):
    expected = geometry_shards(tmp_path / "in")
    s3 = fsspec.filesystem("s3", client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    s3.put(str(tmp_path / "in") + "/", f"{s3_bucket[5:]}/wds/", recursive=True)
    pattern, output = f"{s3_bucket}/wds/shard-{{000000..000001}}.tar", f"{s3_bucket}/out"
    summary = run(model_uri, pattern, output, mask_kind="thick_256", output_format="webdataset")
    assert (summary.ok, summary.failed) == (7, 3)
    rows = {r["id"]: r for r in pq.read_table(f"{output[5:]}/records", filesystem=s3).to_pylist()}
    samples: dict[str, bytes] = {}
    for shard in s3.glob(f"{output[5:]}/shards/*.tar"):
        samples.update(read_tar(s3.cat(shard)))
    results = {rid: np.asarray(Image.open(io.BytesIO(samples[f"{rid}.png"]))) for rid, r in rows.items()
               if r["status"] == "ok"}
    assert len(samples) == 2 * len(results)
    assert rows["sub/box"]["source"] == f"{s3_bucket}/wds/shard-000000.tar/sub/box.png"
    assert rows["sub/box"]["output"].startswith(f"{output}/shards/") and rows["sub/box"]["output"].endswith("#sub/box")
    check_rows(rows, expected, results, dilate=0)
    resumed = run(model_uri, pattern, output, mask_kind="thick_256", output_format="webdataset")
    assert (resumed.ok, resumed.failed, resumed.skipped) == (0, 0, 10)


@pytest.mark.slow
def test_parquet_geometry_column_and_folder_with_drawn_masks(ray_local, model_uri, tmp_path):
    h, w = 40, 48
    images = {f"p{i}": rng_image(40 + i, h, w) for i in range(4)}
    geometry = [json.dumps({"boxes": [[8, 8, 20, 30]]}), None, json.dumps({"polygons": [[1, 1]]}),
                json.dumps({"rle": {"size": [h, w], "counts": rle_string(rect(h, w, 0, 10, 0, 48))}})]
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"id": list(images), "image": [encode(v) for v in images.values()],
                             "geometry": pa.array(geometry, pa.string())}), tmp_path / "pq" / "g.parquet")
    summary = run(model_uri, str(tmp_path / "pq"), str(tmp_path / "out"), mask_dilate=1)
    assert (summary.ok, summary.failed) == (3, 1)
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "records").to_pylist()}
    results = {rid: np.asarray(Image.open(r["output"])) for rid, r in rows.items() if r["status"] == "ok"}
    expected = {"p0": {"image": images["p0"], "hole": rect(h, w, 8, 30, 8, 20)},
                "p1": {"image": images["p1"], "hole": None},
                "p2": {"error": "bad mask geometry in"},
                "p3": {"image": images["p3"], "hole": rect(h, w, 0, 10, 0, 48)}}
    check_rows(rows, expected, results, dilate=1)
    assert "(id 'p2')" in rows["p2"]["error"] and "polygon 0 is empty or malformed" in rows["p2"]["error"]

    # A plain folder of photos: with mask_kind, images without a mask file get a drawn one.
    write(tmp_path / "photos" / "a.png", encode(rng_image(60, h, w)))
    write(tmp_path / "photos" / "sub" / "b.jpg", encode(rng_image(61, h, w), "JPEG"))
    write(tmp_path / "photos" / "c.png", encode(rng_image(62, h, w)))
    write(tmp_path / "photos" / "c_mask000.png", encode(box_mask(h, w)))
    drawn = run(model_uri, str(tmp_path / "photos"), str(tmp_path / "out2"), mask_kind="thick_256")
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "out2" / "records").to_pylist()}
    assert (drawn.ok, drawn.failed) == (3, 0) and set(rows) == {"a", "sub/b", "c_mask000"}
    assert rows["a"]["mask_generated"] and rows["sub/b"]["psnr"] is not None
    assert not rows["c_mask000"]["mask_generated"]


@pytest.mark.slow
def test_inpaint_the_faces_of_a_coco_detection_file(ray_local, model_uri, tmp_path):
    """The README example end to end: COCO-style detections -> geometry files -> inpaint."""
    import subprocess
    import sys

    h, w = 40, 48
    photos = {"a": rng_image(70, h, w), "sub/b": rng_image(71, h, w), "c": rng_image(72, h, w)}
    for name, image in photos.items():
        write(tmp_path / "photos" / f"{name}.png", encode(image))
    coco = {"images": [{"id": i, "file_name": f"{name}.png"} for i, name in enumerate(photos)],
            "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "person"}],
            "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 8, 12, 10], "score": 0.98},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [30, 20, 30, 30], "score": 0.91},
                            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 0, 20, 40], "score": 0.99},
                            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.1}]}
    write(tmp_path / "faces.json", json.dumps(coco).encode())
    repo = Path(__file__).resolve().parents[1]
    made = subprocess.run([sys.executable, str(repo / "jobs" / "coco_masks.py"), f"input={tmp_path}/faces.json",
                           f"output={tmp_path}/face_masks", "categories=[face]", "min_score=0.5"],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "2 shapes on 3 images" in made.stdout
    summary = run(model_uri, str(tmp_path / "photos"), str(tmp_path / "out"), mask_dir=str(tmp_path / "face_masks"),
                  mask_dilate=2)
    assert (summary.ok, summary.failed) == (3, 0)
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "records").to_pylist()}
    results = {rid: np.asarray(Image.open(r["output"])) for rid, r in rows.items()}
    expected = {"a": {"image": photos["a"], "hole": rect(h, w, 8, 18, 10, 22)},
                "sub/b": {"image": photos["sub/b"], "hole": rect(h, w, 20, 40, 30, 48), "clipped": True},
                "c": {"image": photos["c"], "hole": None}}
    for rid in ("a", "sub/b"):
        exp = expected[rid]
        hole = dilate_mask(exp["hole"], 2).astype(bool)
        assert rows[rid]["mask_clipped"] == exp.get("clipped", False)
        assert rows[rid]["hole_fraction"] == pytest.approx(hole.mean())
        assert rows[rid]["mask_source"] == f"{tmp_path}/face_masks/{rid}.json"
        np.testing.assert_array_equal(results[rid][~hole], exp["image"][~hole])
        assert not np.array_equal(results[rid][hole], exp["image"][hole])
    # No face kept in c: nothing to inpaint, the photo comes out unchanged.
    assert rows["c"]["hole_fraction"] == 0 and not rows["c"]["mask_generated"]
    np.testing.assert_array_equal(results["c"], photos["c"])
