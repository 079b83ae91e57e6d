"""Quality metrics: agreement with the reference implementations (scikit-image, scipy,
the ``lpips`` package, pytorch-fid), weight lookup, hole-area bins and summaries.

No pretrained weights exist here: every network gets seeded random weights, written under
the standard file names into a temporary ``weights_dir``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lama_core.metrics import (METRICS, FeatureStats, FIDInceptionV3, MetricContext, cached_stats, compute_metrics,
                               content_hash, default_weights_dir, fid_from_features, frechet_distance, hole_area_bin,
                               hole_fraction, l1, load_inception, load_lpips, psnr, register_metric, resolve_weight,
                               ssim, ssim_map, summarize_by_hole_area)
from lama_core.metrics.lpips import BACKBONES
from lama_core.metrics.weights import STANDARD_WEIGHT_FILES
from lama_core.storage import write_bytes
from generated_weights import random_state


# ----------------------------------------------------------------------------- helpers

def _images(seed: int, n: int = 2, h: int = 64, w: int = 64, smooth: bool = False) -> torch.Tensor:
    """float64 N x 3 x H x W in [0, 1]; ``smooth``: upsampled 8x8 noise (large flat regions)."""
    g = torch.Generator().manual_seed(seed)
    if not smooth:
        return torch.rand(n, 3, h, w, generator=g, dtype=torch.float64)
    coarse = torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def _pair(seed: int, smooth: bool, h: int = 64, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    target = _images(seed, h=h, w=w, smooth=smooth)
    noise = 0.1 * (_images(seed + 1, h=h, w=w) - 0.5)
    return (target + noise).clamp(0, 1), target


def _mask(seed: int, n: int = 2, h: int = 64, w: int = 64) -> torch.Tensor:
    """A box hole per image, touching the border in image 0 (border handling matters for SSIM)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, 1, h, w)
    mask[0, :, : h // 2, : w // 3] = 1
    for i in range(1, n):
        top, left = (int(v) for v in torch.randint(8, h // 2, (2,), generator=g))
        mask[i, :, top: top + h // 3, left: left + w // 4] = 1
    return mask


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy()




@pytest.fixture(scope="session")
def inception_state() -> dict[str, torch.Tensor]:
    return random_state(FIDInceptionV3(), seed=3)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory, inception_state) -> str:
    """A weights folder with generated files under the standard names (LPIPS heads come
    from the installed lpips package, which ships them)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.save(inception_state, folder / STANDARD_WEIGHT_FILES["inception"])
    for net, seed in (("vgg", 11), ("alex", 12)):
        torch.save(_torchvision_features_state(net, seed), folder / STANDARD_WEIGHT_FILES[BACKBONES[net].weights])
    return str(folder)


def _torchvision_features_state(net: str, seed: int) -> dict[str, torch.Tensor]:
    """Random ``features.N.weight/bias`` in the torchvision file layout (classifier left out:
    it is unused and would make the files hundreds of MB)."""
    from lama_core.metrics.lpips import LPIPS
    state = random_state(LPIPS(net).features, seed)
    return {f"features.{k}": v for k, v in state.items()}


# ----------------------------------------------------------------------------- pixel metrics

@pytest.mark.parametrize("smooth", [False, True])
def test_psnr_matches_skimage(smooth):
    pred, target = _pair(0, smooth)
    ours = psnr(pred, target)
    for i in range(len(pred)):
        ref = peak_signal_noise_ratio(_hwc(target[i]), _hwc(pred[i]), data_range=1)
        assert ours[i].item() == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("smooth", [False, True])
def test_ssim_matches_skimage(smooth):
    pred, target = _pair(1, smooth, h=48, w=64)
    ours = ssim(pred, target)
    ours32 = ssim(pred.float(), target.float())
    for i in range(len(pred)):
        ref = structural_similarity(_hwc(target[i]), _hwc(pred[i]), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1, channel_axis=2)
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)
        assert ours32[i].item() == pytest.approx(ref, abs=1e-4)


def test_ssim_map_and_hole_ssim_match_skimage_full_map():
    pred, target = _pair(2, smooth=True)
    mask = _mask(2)
    ours_map = ssim_map(pred, target)
    ours_hole = ssim(pred, target, mask)
    for i in range(len(pred)):
        _, full = structural_similarity(_hwc(target[i]), _hwc(pred[i]), gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1, channel_axis=2, full=True)
        full = full.mean(axis=2)
        np.testing.assert_allclose(ours_map[i, 0].numpy(), full, atol=1e-10)
        hole = mask[i, 0].numpy() > 0.5
        assert ours_hole[i].item() == pytest.approx(full[hole].mean(), abs=1e-10)


def test_hole_metrics_see_only_hole_pixels():
    target = _images(4)
    mask = _mask(4)
    pred = torch.where(mask.bool(), target, 1 - target)  # wrong everywhere except inside the hole
    assert torch.all(l1(pred, target, mask) == 0)
    assert torch.all(torch.isinf(psnr(pred, target, mask)))
    assert torch.all(l1(pred, target) > 0.1)
    black_hole = torch.where(mask.bool(), 0, target)  # now wrong only inside the hole
    expected = torch.stack([(target[i] * mask[i]).sum() / (3 * mask[i].sum()) for i in range(2)])
    np.testing.assert_allclose(l1(black_hole, target, mask).numpy(), expected.numpy(), rtol=1e-12)


def test_hole_metric_of_image_without_hole_is_nan():
    pred, target = _pair(5, smooth=False)
    no_hole = torch.zeros(2, 1, 64, 64)
    for metric in (psnr, ssim, l1):
        assert torch.all(torch.isnan(metric(pred, target, no_hole)))


# ----------------------------------------------------------------------------- FID

def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Independent reference: pytorch-fid's formula with scipy.linalg.sqrtm, float64."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _gaussian_features(seed: int, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / math.sqrt(d)
    return rng.standard_normal((n, d)) @ mixing + shift + rng.standard_normal(d) * 0.1


@pytest.mark.parametrize("d", [64, 128])
def test_frechet_distance_matches_scipy_sqrtm(d):
    a = _gaussian_features(0, 2 * d, d)
    b = _gaussian_features(1, 3 * d, d, shift=0.3)
    ours = fid_from_features(a, b)
    assert ours == pytest.approx(_scipy_fid(a, b), rel=1e-6)
    assert fid_from_features(b, a) == pytest.approx(ours, rel=1e-9)


@pytest.mark.parametrize("d, n", [(64, 200), (256, 100)])
def test_frechet_distance_of_a_set_with_itself_is_zero(d, n):
    # n < d: singular covariance, as in a small hole-area bin; must stay ~0 and finite.
    a = _gaussian_features(2, n, d)
    stats = FeatureStats.from_features(a)
    assert 0 <= frechet_distance(stats.mean, stats.cov, stats.mean, stats.cov) < 1e-6


@pytest.mark.parametrize("n1, n2", [(100, 120), (40, 900)])
def test_frechet_distance_with_fewer_samples_than_dimensions(n1, n2):
    # fid_from_features switches to the sample-space formula here; check it against the
    # covariance-space one (eigendecompositions), an independent computation.
    a = _gaussian_features(4, n1, 256)
    b = _gaussian_features(5, n2, 256, shift=0.2)
    sa, sb = FeatureStats.from_features(a), FeatureStats.from_features(b)
    assert fid_from_features(a, b) == pytest.approx(frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov), rel=1e-6)
    assert 0 <= fid_from_features(a, a) < 1e-6


def test_feature_stats_stream_and_merge_like_np_cov():
    a = _gaussian_features(3, 90, 16).astype(np.float32)
    streamed = FeatureStats.empty(16).update(a[:40]).update(torch.from_numpy(a[40:70]))
    merged = streamed.merge(FeatureStats.from_features(a[70:]))
    np.testing.assert_allclose(merged.mean, a.astype(np.float64).mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.cov, np.cov(a.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12)
    assert merged.n == 90
    assert math.isnan(fid_from_features(a[:1], a))  # one image: no covariance, as LaMa's NaN


def test_cached_stats_are_computed_once_per_content_and_model(tmp_path):
    images = _images(6).float()
    calls = []

    def compute():
        calls.append(1)
        return FeatureStats.from_features(images.flatten(1)[:, :8])

    key = content_hash(images, model_id="inception:abc")
    first = cached_stats(str(tmp_path), key, compute)
    second = cached_stats(str(tmp_path), key, compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.cov, second.cov)
    assert content_hash(images, model_id="inception:other") != key
    assert content_hash(images.clone(), model_id="inception:abc") == key
    assert content_hash(images[:1], model_id="inception:abc") != key


# ----------------------------------------------------------------------------- Inception

def _pytorch_fid_model(monkeypatch, state):
    """pytorch-fid's InceptionV3 for FID, with ``state`` served instead of the download
    (its fid_inception_v3 loads it with strict=True: that also checks our key names)."""
    from pytorch_fid import inception  # the test reference (a test dependency)
    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *a, **k: dict(state))
    model = inception.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
    return inception, model.eval()


def test_inception_state_dict_matches_pytorch_fid(monkeypatch, inception_state):
    inception, _ = _pytorch_fid_model(monkeypatch, inception_state)
    reference = inception.fid_inception_v3()
    ours = FIDInceptionV3()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in reference.state_dict().items()}


def test_inception_features_match_pytorch_fid(monkeypatch, inception_state, weights_dir):
    _, reference = _pytorch_fid_model(monkeypatch, inception_state)
    ours = load_inception(weights_dir=weights_dir)
    images = _images(7, n=2, h=64, w=80).float()
    with torch.no_grad():
        expected = reference(images)[0].flatten(1)
        got = ours(images)
    assert got.shape == (2, 2048) and got.dtype == torch.float32
    assert expected.abs().max() > 1e-3  # random weights still give non-trivial features
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert ours.model_id.startswith(STANDARD_WEIGHT_FILES["inception"])


# ----------------------------------------------------------------------------- LPIPS

@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_matches_lpips_package(net, weights_dir):
    import lpips  # the test reference (a test dependency)
    reference = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    backbone = torch.load(f"{weights_dir}/{STANDARD_WEIGHT_FILES[BACKBONES[net].weights]}", weights_only=True)
    # lpips keeps torchvision's indices inside its slices: net.sliceK.N.weight <- features.N.weight
    ref_state = reference.net.state_dict()
    reference.net.load_state_dict({k: backbone["features." + k.split(".", 1)[1]] for k in ref_state}, strict=True)
    ours = load_lpips(net, weights_dir=weights_dir)  # heads: the lpips package's own v0.1 files
    target = _images(8, n=3).float()
    pred = torch.cat([_images(9, n=2).float(), target[2:] * 0.9 + 0.05])
    with torch.no_grad():
        expected = reference(pred, target, normalize=True).flatten()
        got = ours(pred, target)
    assert got.shape == (3,)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert torch.all(ours(target, target) == 0)


# ----------------------------------------------------------------------------- weights

def test_missing_weight_file_names_file_folder_and_overrides(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        resolve_weight("inception", weights_dir=str(tmp_path))
    message = str(info.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message and str(tmp_path) in message
    assert "weights_dir" in message and "path" in message
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        load_lpips("vgg", weights_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        resolve_weight("vgg16", path=str(tmp_path / "nowhere.pth"))


def test_weights_found_by_standard_name_default_dir_and_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert default_weights_dir() == str(tmp_path / "hub" / "checkpoints")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(b"x")
    assert resolve_weight("alexnet").endswith("hub/checkpoints/alexnet-owt-7be5be79.pth")
    write_bytes("memory://metric-weights/vgg16-397923af.pth", b"x")
    assert resolve_weight("vgg16", weights_dir="memory://metric-weights") == "memory://metric-weights/vgg16-397923af.pth"
    assert resolve_weight("vgg16", path="memory://metric-weights/vgg16-397923af.pth").startswith("memory://")


# ----------------------------------------------------------------------------- bins, registry, summaries

def test_hole_area_bins_are_ten_equal_bins_lower_edge_inclusive():
    assert hole_area_bin(0.0) == "0-10%"
    assert hole_area_bin(0.0999) == "0-10%"
    assert hole_area_bin(0.1) == "10-20%"
    assert hole_area_bin(0.3) == "30-40%"
    assert hole_area_bin(float(np.float32(0.7))) == "70-80%"  # float32 means land on the edge they mean
    assert hole_area_bin(0.4999) == "40-50%"
    assert hole_area_bin(1.0) == "90-100%"
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError):
            hole_area_bin(bad)
    mask = torch.zeros(1, 1, 10, 10)
    mask[..., :3, :] = 1
    assert hole_area_bin(hole_fraction(mask)[0]) == "30-40%"


def test_summary_per_bin_means_and_fid():
    rng = np.random.default_rng(0)
    fractions = np.array([0.05, 0.07, 0.08, 0.15, 0.12, 0.45, 0.10])
    n = len(fractions)
    table = {
        "hole_fraction": fractions,
        "psnr": rng.uniform(20, 30, n), "psnr_hole": rng.uniform(10, 20, n),
        "lpips": rng.uniform(0, 1, n),
        "fid_features_fake": list(rng.standard_normal((n, 8)).astype(np.float32)),  # Parquet-style rows
        "fid_features_real": rng.standard_normal((n, 8)).astype(np.float32),
    }
    table["psnr_hole"][0] = np.nan  # an image without hole pixels does not count
    summary = {row["hole_area_bin"]: row for row in summarize_by_hole_area(table, ["psnr", "lpips", "fid"])}
    assert list(summary) == ["0-10%", "10-20%", "40-50%", "all"]
    assert [summary[b]["n"] for b in summary] == [3, 3, 1, 7]
    low = fractions < 0.1
    assert summary["0-10%"]["psnr"] == pytest.approx(table["psnr"][low].mean())
    assert summary["0-10%"]["psnr_hole"] == pytest.approx(np.nanmean(table["psnr_hole"][low]))
    assert summary["all"]["lpips"] == pytest.approx(table["lpips"].mean())
    fake, real = np.stack(table["fid_features_fake"]), table["fid_features_real"]
    mid = (fractions >= 0.1) & (fractions < 0.2)
    assert summary["10-20%"]["fid"] == pytest.approx(fid_from_features(fake[mid], real[mid]))
    assert summary["all"]["fid"] == pytest.approx(fid_from_features(fake, real))
    assert math.isnan(summary["40-50%"]["fid"])
    rows = [{k: v[i] for k, v in table.items()} for i in range(n)]  # list-of-rows input: same result
    assert summarize_by_hole_area(rows, ["psnr"])[0]["psnr"] == pytest.approx(summary["0-10%"]["psnr"])


def test_register_metric_plugs_into_compute_and_summary():
    @register_metric("max_abs_error")
    def _max_abs_error(pred, target, mask, ctx):
        return {"max_abs_error": (pred - target).abs().amax(dim=(1, 2, 3)).double().numpy()}

    try:
        pred, target = _pair(10, smooth=False)
        cols = compute_metrics(["max_abs_error"], pred, target, _mask(10), MetricContext())
        cols["hole_fraction"] = np.array([0.2, 0.25])
        (row_bin, row_all) = summarize_by_hole_area(cols, ["max_abs_error"])
        assert row_bin["hole_area_bin"] == "20-30%" and row_all["max_abs_error"] == pytest.approx(cols["max_abs_error"].mean())
        with pytest.raises(ValueError):
            register_metric("max_abs_error")(_max_abs_error)
    finally:
        METRICS.pop("max_abs_error")


def test_compute_metrics_all_registered_end_to_end(weights_dir, tmp_path):
    # AlexNet LPIPS keeps this fast; the VGG path is checked against the lpips package above.
    ctx = MetricContext(weights_dir=weights_dir, lpips_net="alex", cache_dir=str(tmp_path / "cache"))
    pred, target = _pair(11, smooth=True)
    mask = _mask(11)
    cols = compute_metrics(["psnr", "ssim", "l1", "lpips", "fid"], pred.float(), target.float(), mask, ctx)
    for name in ("psnr", "psnr_hole", "ssim", "ssim_hole", "l1", "l1_hole", "lpips"):
        assert cols[name].shape == (2,) and cols[name].dtype == np.float64, name
    assert cols["fid_features_fake"].shape == cols["fid_features_real"].shape == (2, 2048)
    (cached,) = (tmp_path / "cache").iterdir()  # ground-truth features, for the next checkpoint of a sweep
    np.testing.assert_array_equal(np.load(cached)["features"], cols["fid_features_real"])
    cols["hole_fraction"] = hole_fraction(mask).numpy()
    summary = summarize_by_hole_area(cols, ["psnr", "ssim", "l1", "lpips", "fid"])
    assert summary[-1]["hole_area_bin"] == "all" and summary[-1]["n"] == 2 and np.isfinite(summary[-1]["fid"])
    with pytest.raises(KeyError, match="unknown metric"):
        compute_metrics(["nope"], pred, target, mask, ctx)
