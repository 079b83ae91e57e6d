"""Mask generators: determinism, the official hole-area distributions, and the make_masks job."""
from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_core.masks import MASK_SETS, MaskGenerator, generate_mask, hole_fraction, mask_grid_png
from pipelines.common.errors import JobError

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "jobs" / "make_masks.py"

# Hole-area quartiles (25/50/75%) of the official generators (docs/DESIGN.md, "Training recipe").
OFFICIAL_QUARTILES = {
    "thick_512": (0.15, 0.26, 0.37),
    "medium_512": (0.14, 0.29, 0.39),
    "thin_512": (0.17, 0.30, 0.41),
    "wide_256": (0.20, 0.33, 0.49),
}


def test_same_seed_and_index_give_the_same_mask():
    a, b = MaskGenerator("thick_512", seed=3), MaskGenerator("thick_512", seed=3)
    np.testing.assert_array_equal(a(7), b(7))
    # Mask i must not depend on which masks were drawn before it (parallel generation).
    b(0), b(1)
    np.testing.assert_array_equal(a(8), b(8))


def test_different_index_or_seed_gives_a_different_mask():
    gen = MaskGenerator("medium_256", seed=0)
    assert not np.array_equal(gen(0), gen(1))
    assert not np.array_equal(gen(0), MaskGenerator("medium_256", seed=1)(0))


@pytest.mark.parametrize("kind", sorted(MASK_SETS))
def test_masks_are_float32_zero_one_of_the_set_size(kind):
    size = MASK_SETS[kind].size
    for index in range(3):
        mask = MaskGenerator(kind, seed=0)(index)
        assert mask.shape == (size, size) and mask.dtype == np.float32
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert 0 < hole_fraction(mask) < 1


@pytest.mark.parametrize("kind", sorted(OFFICIAL_QUARTILES))
def test_hole_area_quartiles_match_the_official_generators(kind):
    gen = MaskGenerator(kind, seed=0)
    fractions = np.array([hole_fraction(gen(i)) for i in range(1000)])
    measured = np.percentile(fractions, [25, 50, 75])
    np.testing.assert_allclose(measured, OFFICIAL_QUARTILES[kind], atol=0.05,
                               err_msg=f"{kind} hole-area quartiles {np.round(measured, 3)}")
    if MASK_SETS[kind].max_hole_fraction is not None:
        assert fractions.max() <= 0.5  # evaluation sets reject holes over 50%


def test_generate_mask_fits_any_image_size_and_keeps_the_set_at_its_own_size():
    mask = generate_mask("thick_512", seed=0, index=4, height=300, width=700)
    assert mask.shape == (300, 700) and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(generate_mask("thick_512", 0, 4, 512, 512), MaskGenerator("thick_512", 0)(4))
    # Pixel parameters scale with the image, so the hole area stays about the same.
    small = np.mean([hole_fraction(generate_mask("thick_512", 0, i, 256, 256)) for i in range(200)])
    full = np.mean([hole_fraction(MaskGenerator("thick_512", 0)(i)) for i in range(200)])
    assert abs(small - full) < 0.05


def test_unknown_kind_names_the_valid_kinds():
    with pytest.raises(ValueError, match="thick_512"):
        MaskGenerator("huge_1024")


def test_mask_grid_png_is_a_png_of_all_tiles():
    masks = [MaskGenerator("thin_256", 0)(i) for i in range(5)]
    grid = Image.open(io.BytesIO(mask_grid_png(masks, ncols=4, pad=2)))
    assert grid.mode == "L" and grid.size == (4 * 258 + 2, 2 * 258 + 2)


# --- jobs/make_masks.py -------------------------------------------------------------------

def _load_job():
    spec = importlib.util.spec_from_file_location("make_masks_job", JOB)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_make_masks_job_writes_the_same_bytes_twice(tmp_path, capsys):
    job = _load_job()
    outputs = [tmp_path / "a", tmp_path / "b"]
    for out in outputs:
        job.main(job.MakeMasksConfig(mask_kind="medium_256", n=5, mask_seed=11, output=str(out)))
    # A frozen set is not changed in place by accident (evaluations are keyed by it) ...
    with pytest.raises(JobError, match="already holds 5 files .*pass overwrite=true"):
        job.main(job.MakeMasksConfig(mask_kind="medium_256", n=3, mask_seed=12, output=str(outputs[1])))
    # ... only on purpose, and then the folder holds exactly the new set.
    job.main(job.MakeMasksConfig(mask_kind="medium_256", n=3, mask_seed=12, output=str(outputs[1]), overwrite=True,
                                 preview=0))
    assert sorted(p.name for p in outputs[1].iterdir()) == [f"{i:06d}_mask000.png" for i in range(3)]
    job.main(job.MakeMasksConfig(mask_kind="medium_256", n=5, mask_seed=11, output=str(outputs[1]), overwrite=True))
    expected = [f"{i:06d}_mask000.png" for i in range(5)]
    assert sorted(p.name for p in outputs[0].iterdir()) == expected  # masks only: the preview sits beside
    for name in expected:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes()
    assert Image.open(tmp_path / "a_preview.png").mode == "L"
    first = Image.open(outputs[0] / "000000_mask000.png")
    assert first.mode == "L" and first.size == (256, 256)
    assert set(np.unique(np.asarray(first))) <= {0, 255}
    np.testing.assert_array_equal(np.asarray(first) / 255, MaskGenerator("medium_256", 11)(0))
    assert "mean hole fraction" in capsys.readouterr().out


def test_make_masks_job_rejects_an_unknown_kind(tmp_path):
    result = subprocess.run([sys.executable, str(JOB), "mask_kind=huge_1024", f"output={tmp_path / 'x'}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "unknown mask_kind 'huge_1024'" in result.stderr and "thick_512" in result.stderr
    assert not (tmp_path / "x").exists()
