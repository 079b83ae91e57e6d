"""Evaluation sweeps (``jobs/evaluate.py``, ``pipelines/evaluate/job.py``) on the session's local
Ray: small seeded checkpoints, 64-96 px images, generated metric weights (no downloads)."""
from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from inpaint_fixtures import encode, rng_image, write
from lama_core import Inpainter, build_generator, load_generator, save_generator
from lama_core.masks import MaskGenerator, generate_mask, mask_png
from lama_core.metrics import FIDInceptionV3, fid_from_features, hole_area_bin, load_inception, psnr
from lama_core.metrics.lpips import LPIPS
from lama_core.metrics.weights import STANDARD_WEIGHT_FILES
from pipelines.evaluate.config import EvaluateConfig
from lama_core.training_checkpoint import checkpoint_step
from pipelines.evaluate.checkpoints import expand_checkpoints
from pipelines.evaluate.job import run_evaluation
from pipelines.common.cli import JobError
from generated_weights import random_state

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Distinct sizes: every image is its own model batch in the actors, as in the direct checks.
SIZES = {"img0": (64, 64), "img1": (72, 96), "img2": (64, 80)}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- fixtures



@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Direct computations here run on one thread: on a busy 2-core machine, two OpenMP
    threads make a small Inception forward pass ~10x slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> str:
    """Inception and AlexNet weights under their standard names (LPIPS heads: the lpips package's)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.save(random_state(FIDInceptionV3(), 3), folder / STANDARD_WEIGHT_FILES["inception"])
    alex = {f"features.{k}": v for k, v in random_state(LPIPS("alex").features, 12).items()}
    torch.save(alex, folder / STANDARD_WEIGHT_FILES["alexnet"])
    return str(folder)


def make_checkpoint(folder: Path, seed: int, step: int | None) -> str:
    torch.manual_seed(seed)
    return save_generator(build_generator("small"), str(folder),
                          metadata=None if step is None else {"step": str(step)}).rsplit("/", 1)[0]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, ray_local, weights_dir):
    """Two checkpoints × (a kind, a frozen folder) over three images and one corrupt file."""
    root = tmp_path_factory.mktemp("sweep")
    for seed, (name, (h, w)) in enumerate(SIZES.items()):
        write(root / "data" / f"{name}.png", encode(rng_image(seed, h, w)))
    write(root / "data" / "broken.png", b"\x89PNG\r\n\x1a\n not really a png")
    frozen = root / "frozen_thin"
    frozen.mkdir()
    masks = MaskGenerator("thin_256", seed=5)  # 256 px masks: resized (nearest) to each image
    for i in range(len(SIZES) + 1):
        (frozen / f"{i:06d}_mask000.png").write_bytes(mask_png(masks(i)))
    for step in (1, 2):
        make_checkpoint(root / "ckpts" / f"checkpoint_{step:06d}", seed=step, step=step)
    (root / "ckpts" / "checkpoint_manager_snapshot.json").write_text("{}")  # not a checkpoint
    cfg = config(root, weights_dir, mask_kind=["thick_512", str(frozen)])
    reports = run_evaluation(cfg)
    return root, cfg, reports


def config(root: Path, weights_dir: str, **overrides) -> EvaluateConfig:
    settings = dict(model=str(root / "ckpts" / "checkpoint_*"), input=str(root / "data"),
                    output=str(root / "out"), weights_dir=weights_dir, lpips_net="alex",
                    num_workers=1, gpus_per_worker=0, batch_size=4, codec_batch_size=4, grid_images=2)
    settings.update(overrides)
    return EvaluateConfig(**settings)


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def image(root: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(root / "data" / f"{name}.png").convert("RGB"))


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].float() / 255


# ----------------------------------------------------------------------------- the sweep

def test_sweep_writes_per_image_rows_summaries_plots_and_grids(sweep):
    root, cfg, (report,) = sweep
    out = root / "out"
    assert [p.status for p in report.evaluated] == ["ok"] * 4
    assert report.ignored == [str(root / "ckpts" / "checkpoint_manager_snapshot.json")]
    per_image = pq.read_table(out / "per_image").to_pylist()
    assert len(per_image) == 4 * 2 * 2  # images (one corrupt) × checkpoints × mask sets
    assert {(r["checkpoint"].rsplit("/", 1)[-1], r["step"], r["mask_set"]) for r in per_image} == {
        (f"checkpoint_{s:06d}", s, m) for s in (1, 2) for m in ("thick_512", "frozen_thin")}
    broken = [r for r in per_image if r["id"] == "broken"]
    assert len(broken) == 4 and all(r["status"] == "error" and "broken.png" in r["error"] for r in broken)
    ok = [r for r in per_image if r["status"] == "ok"]
    assert len(ok) == 12 and all(r["lpips"] is not None and r["psnr"] > 0 for r in ok)
    assert all(r["hole_area_bin"] == hole_area_bin(r["hole_fraction"]) for r in ok)
    assert all(r["mask_resized"] == (r["mask_set"] == "frozen_thin") for r in ok)

    summary = pq.read_table(out / "summary").to_pylist()
    for (ckpt, mask_set) in {(r["checkpoint"], r["mask_set"]) for r in per_image}:
        rows = [r for r in summary if (r["checkpoint"], r["mask_set"]) == (ckpt, mask_set)]
        images = [r for r in ok if (r["checkpoint"], r["mask_set"]) == (ckpt, mask_set)]
        assert [r["hole_area_bin"] for r in rows] == sorted({r["hole_area_bin"] for r in images}) + ["all"]
        everything = rows[-1]
        assert everything["n"] == 3 and everything["n_error"] == 1 and everything["status"] == "ok"
        assert everything["psnr"] == pytest.approx(np.mean([r["psnr"] for r in images]))
        assert math.isfinite(everything["fid"]) and everything["step"] in (1, 2)
        assert sum(r["n"] for r in rows[:-1]) == 3

    for name in ("thick_512", "frozen_thin"):
        assert (out / "plots" / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    grids = sorted((out / "samples").glob("*.png"))
    assert len(grids) == 4 and all(g.read_bytes().startswith(PNG_MAGIC) for g in grids)
    assert len(list((out / "cache").glob("real-features-*.npz"))) == 1  # ground truth: once per data


def test_per_image_numbers_match_direct_computation(sweep, weights_dir):
    root, cfg, _ = sweep
    rows = pq.read_table(root / "out" / "per_image").to_pylist()
    summary = pq.read_table(root / "out" / "summary").to_pylist()
    ckpt = str(root / "ckpts" / "checkpoint_000002")
    inpainter = Inpainter(load_generator(ckpt))
    inception = load_inception(weights_dir)
    for mask_set in ("thick_512", "frozen_thin"):
        results, targets = [], []
        for row in (r for r in rows if r["checkpoint"] == ckpt and r["mask_set"] == mask_set and r["status"] == "ok"):
            target = image(root, row["id"])
            h, w = target.shape[:2]
            if mask_set == "thick_512":  # image i (sorted ids; "broken" is 0) gets mask i, drawn at its size
                mask = generate_mask("thick_512", cfg.mask_seed, row["index"], h, w)
            else:
                frozen = Image.open(root / "frozen_thin" / f"{row['index']:06d}_mask000.png")
                mask = (np.asarray(frozen.resize((w, h), Image.NEAREST)) > 127).astype(np.float32)
            assert row["hole_fraction"] == pytest.approx(float(mask.mean()))
            result = inpainter([target], [mask])[0]
            assert np.array_equal(result[mask == 0], target[mask == 0])  # known pixels pasted back
            assert row["psnr"] == pytest.approx(float(psnr(to_tensor(result), to_tensor(target))[0]), abs=1e-4)
            results.append(to_tensor(result))
            targets.append(to_tensor(target))
        if mask_set != "thick_512":
            continue  # FID once is enough (Inception on a busy CPU is the slow part here)
        with torch.no_grad():
            fake = torch.cat([inception(x) for x in results])
            real = torch.cat([inception(x) for x in targets])
        (everything,) = [r for r in summary if r["checkpoint"] == ckpt and r["mask_set"] == mask_set
                         and r["hole_area_bin"] == "all"]
        assert everything["fid"] == pytest.approx(fid_from_features(fake, real), rel=1e-3)


def test_rerun_skips_every_evaluated_pair(sweep, capsys):
    root, cfg, _ = sweep
    before = files(root / "out")
    (report,) = run_evaluation(cfg)
    assert report.evaluated == [] and report.skipped == len(list((root / "out" / "summary").glob("*.parquet")))
    assert files(root / "out") == before  # no new or rewritten file
    assert "nothing new" in capsys.readouterr().out


def test_rerun_with_other_data_or_metrics_is_refused(sweep, tmp_path):
    root, cfg, _ = sweep
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.png").write_bytes((root / "data" / "img0.png").read_bytes())
    with pytest.raises(JobError, match=r"other settings \(input: .* in the output vs .*other' now\)"):
        run_evaluation(config(root, cfg.weights_dir, mask_kind=list(cfg.mask_kind), input=str(tmp_path / "other")))
    with pytest.raises(JobError, match=r"metrics: \[.*\] in the output vs \['psnr'\] now.*another output"):
        run_evaluation(config(root, cfg.weights_dir, mask_kind=list(cfg.mask_kind), metrics=["psnr"]))


def test_new_checkpoint_is_the_only_one_evaluated(sweep, tmp_path, capsys):
    # On a copy of the sweep's output, with the new checkpoint outside its folder: the
    # module's sweep stays as every other test expects it, in any order.
    root, cfg, _ = sweep
    shutil.copytree(root / "out", tmp_path / "out")
    new = make_checkpoint(tmp_path / "ckpts" / "checkpoint_000003", seed=3, step=3)
    cfg = dataclasses.replace(cfg, output=str(tmp_path / "out"), model=[cfg.model, new])
    (report,) = run_evaluation(cfg)
    assert {(p.checkpoint, p.mask_set) for p in report.evaluated} == {(new, "thick_512"), (new, "frozen_thin")}
    assert report.skipped == 4
    per_image = pq.read_table(tmp_path / "out" / "per_image").to_pylist()
    assert len(per_image) == 4 * 3 * 2
    assert len(list((tmp_path / "out" / "summary").glob("*.parquet"))) == 6
    # The pass shows its progress (4 images x 2 mask sets scored), ending on the full count once.
    err = capsys.readouterr().err.splitlines()
    assert sum(line.startswith("evaluate: 8/8 images (100%)") for line in err) == 1, err


def test_a_mask_folder_rewritten_with_other_masks_is_scored_again(sweep, tmp_path):
    """Pairs are keyed by the mask set's content, not only its name: the same masks in
    another folder of the same name are skipped, other masks under that name are scored
    again (the earlier scores were of other holes)."""
    root, cfg, _ = sweep
    shutil.copytree(root / "out", tmp_path / "out")
    shutil.copytree(root / "frozen_thin", tmp_path / "frozen_thin")
    cfg = dataclasses.replace(cfg, output=str(tmp_path / "out"), mask_kind=["thick_512", str(tmp_path / "frozen_thin")])
    (same,) = run_evaluation(cfg)
    assert same.evaluated == [] and same.skipped == 4
    before = {r["mask_set_id"] for r in pq.read_table(tmp_path / "out" / "summary").to_pylist()
              if r["mask_set"] == "frozen_thin"}
    masks = MaskGenerator("thin_256", seed=6)  # other holes under the same name
    for i in range(len(SIZES) + 1):
        (tmp_path / "frozen_thin" / f"{i:06d}_mask000.png").write_bytes(mask_png(masks(i)))
    (changed,) = run_evaluation(cfg)
    assert sorted(p.mask_set for p in changed.evaluated) == ["frozen_thin", "frozen_thin"] and changed.skipped == 2
    after = {r["mask_set_id"] for r in pq.read_table(tmp_path / "out" / "summary").to_pylist()
             if r["mask_set"] == "frozen_thin"}
    assert len(before) == len(after) == 1 and before != after  # the pair's files now hold the new scores


def test_reference_cache_of_the_wrong_shape_is_recomputed(sweep, tmp_path, capsys):
    # Same copy-of-the-output pattern: a cache entry with 2 feature rows for 3 ids, of 7
    # features each, must not crash the pass that uses it; it is recomputed and replaced.
    root, cfg, _ = sweep
    shutil.copytree(root / "out", tmp_path / "out")
    (entry,) = (tmp_path / "out" / "cache").glob("real-features-*.npz")
    with np.load(entry) as good:
        ids = good["ids"]
        assert good["fid_features_real"].shape == (len(ids), 2048)
    np.savez(entry, ids=ids, fid_features_real=np.zeros((len(ids) - 1, 7), np.float32))
    new = make_checkpoint(tmp_path / "ckpts" / "checkpoint_000003", seed=3, step=3)
    cfg = dataclasses.replace(cfg, output=str(tmp_path / "out"), model=[cfg.model, new])
    (report,) = run_evaluation(cfg)
    assert [p.status for p in report.evaluated] == ["ok", "ok"]
    assert f"reference cache {entry.name}" in capsys.readouterr().err
    with np.load(entry) as fixed:
        assert fixed["fid_features_real"].shape == (len(fixed["ids"]), 2048) and len(fixed["ids"]) == len(ids)


# ----------------------------------------------------------------------------- watch, errors, config

def test_watch_picks_up_new_checkpoints_and_pixel_metrics_need_no_weights(tmp_path, ray_local, monkeypatch,
                                                                           capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no weights anywhere
    ids = ["b", "a", "c"]
    images = [encode(rng_image(k, 64, 64 + 8 * k)) for k in range(3)]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"id": ids, "image": pa.array(images, pa.binary())}), tmp_path / "data" / "x.parquet")
    make_checkpoint(tmp_path / "ckpts" / "checkpoint_a", seed=1, step=None)
    broken = tmp_path / "ckpts" / "checkpoint_broken"
    write(broken / "generator.safetensors", b"truncated")
    added = []

    def between_polls(seconds: float) -> None:
        assert seconds == 0
        added.append(make_checkpoint(tmp_path / "ckpts" / "checkpoint_b", seed=2, step=7))

    cfg = config(tmp_path, str(tmp_path / "no_weights"), metrics=["psnr", "ssim"], mask_kind=["thick_512"],
                 watch=True, max_polls=2, poll_seconds=0)
    first, second = run_evaluation(cfg, sleep=between_polls)
    assert [p.checkpoint.rsplit("/", 1)[-1] for p in first.evaluated] == ["checkpoint_a", "checkpoint_broken"]
    assert [p.checkpoint for p in second.evaluated if p.status == "ok"] == added
    assert [p.status for p in second.evaluated] == ["ok", "error"]  # a failed checkpoint is retried
    assert "cannot load checkpoint" in capsys.readouterr().err

    rows = pq.read_table(tmp_path / "out" / "per_image").to_pylist()
    assert len(rows) == 3 * 2 and all(r["status"] == "ok" for r in rows)
    assert all(r["lpips"] is None and r["l1"] is None and r["psnr"] > 0 for r in rows)
    assert sorted({(r["id"], r["index"]) for r in rows}) == [("a", 0), ("b", 1), ("c", 2)]
    assert all(r["source"] == str(tmp_path / "data" / "x.parquet") for r in rows)
    assert {r["step"] for r in rows} == {None, 7}
    summary = pq.read_table(tmp_path / "out" / "summary").to_pylist()
    failed = [r for r in summary if r["status"] == "error"]
    assert len(failed) == 1 and "checkpoint_broken" in failed[0]["error"] and failed[0]["hole_area_bin"] == "all"


def test_huge_ground_truth_image_is_an_error_row_refused_from_its_header(tmp_path, ray_local, monkeypatch):
    from inpaint_fixtures import blank_png

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # pixel metrics only
    for k in range(2):
        write(tmp_path / "data" / f"img{k}.png", encode(rng_image(k, 64, 64)))
    write(tmp_path / "data" / "huge.png", blank_png(12000, 12000))  # 432 MB decoded, 0.4 MB on disk
    make_checkpoint(tmp_path / "ckpts" / "checkpoint_a", seed=1, step=None)
    cfg = config(tmp_path, str(tmp_path / "no_weights"), metrics=["psnr"], mask_kind=["thick_512"])
    (report,) = run_evaluation(cfg)
    assert [p.status for p in report.evaluated] == ["ok"]
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "per_image").to_pylist()}
    assert rows["img0"]["status"] == rows["img1"]["status"] == "ok"
    assert rows["huge"]["status"] == "error" and "12000x12000" in rows["huge"]["error"]
    assert "max_input_pixels=67108864" in rows["huge"]["error"] and "huge.png" in rows["huge"]["error"]


def test_metrics_without_weights_are_skipped_naming_every_missing_file(tmp_path, capsys):
    make_checkpoint(tmp_path / "ckpt", seed=1, step=1)
    cfg = EvaluateConfig(model=str(tmp_path / "ckpt"), input=str(tmp_path / "nowhere"), output=str(tmp_path / "out"),
                         metrics=["psnr", "fid", "lpips"], weights_dir=str(tmp_path / "weights"))
    with pytest.raises(JobError, match="input not found"):  # the weights are checked first, then the data
        run_evaluation(cfg)
    err = capsys.readouterr().err
    assert "skipping metrics" in err and STANDARD_WEIGHT_FILES["inception"] in err
    assert STANDARD_WEIGHT_FILES["vgg16"] in err  # every missing file named, at once


def test_missing_inception_weights_fail_fast_naming_the_file(tmp_path):
    make_checkpoint(tmp_path / "ckpt", seed=1, step=1)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TORCH_HOME": str(tmp_path / "torch_home"),
           "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "evaluate.py"), f"model={tmp_path / 'ckpt'}",
                           "metrics=[fid]", f"weights_dir={tmp_path / 'weights'}", f"input={tmp_path}",
                           f"output={tmp_path / 'out'}"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and STANDARD_WEIGHT_FILES["inception"] in lines[0] and "weights_dir" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing was done


def test_unreachable_data_and_unknown_mask_set_are_job_errors(tmp_path):
    make_checkpoint(tmp_path / "ckpt", seed=1, step=1)
    base = dict(model=str(tmp_path / "ckpt"), output=str(tmp_path / "out"), metrics=["psnr"])
    with pytest.raises(JobError, match="input not found"):
        run_evaluation(EvaluateConfig(input=str(tmp_path / "nowhere"), **base))
    with pytest.raises(JobError, match="neither a mask kind"):
        run_evaluation(EvaluateConfig(input=str(tmp_path), mask_kind=["thick_999"], **base))


def test_checkpoint_step_and_glob_resolution(tmp_path):
    with_meta = make_checkpoint(tmp_path / "checkpoint_1", seed=1, step=42)
    without = make_checkpoint(tmp_path / "checkpoint_2", seed=1, step=None)
    torch.save({"step": torch.tensor(9)}, Path(without) / "training_state.pt")
    bare = make_checkpoint(tmp_path / "checkpoint_3", seed=1, step=None)
    assert checkpoint_step(with_meta) == 42
    assert checkpoint_step(with_meta + "/generator.safetensors") == 42
    assert checkpoint_step(without) == 9
    assert checkpoint_step(bare) is None
    (tmp_path / "checkpoint_notes.txt").write_text("x")
    found, skipped = expand_checkpoints([str(tmp_path / "checkpoint_*"), with_meta])
    assert found == [with_meta, without, bare] and skipped == [str(tmp_path / "checkpoint_notes.txt")]
    with pytest.raises(JobError, match="checkpoint not found"):
        expand_checkpoints(str(tmp_path / "missing"))


def test_checkpoint_glob_and_step_on_s3(s3_bucket):
    for step in (10, 20):
        torch.manual_seed(step)
        save_generator(build_generator("small"), f"{s3_bucket}/runs/exp/checkpoint_{step:06d}",
                       metadata={"step": str(step)})
    found, _ = expand_checkpoints(f"{s3_bucket}/runs/exp/checkpoint_*")
    assert found == [f"{s3_bucket}/runs/exp/checkpoint_000010", f"{s3_bucket}/runs/exp/checkpoint_000020"]
    assert [checkpoint_step(uri) for uri in found] == [10, 20]
