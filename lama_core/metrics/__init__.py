"""Quality metrics of inpainting results, as LaMa's evaluation protocol computes them.

Images are float tensors ``N x 3 x H x W`` in [0, 1]; masks ``N x 1 x H x W`` with
1 = hole. Pixel metrics (``psnr``, ``ssim``, ``l1``) over the whole image or the hole;
``LPIPS`` (v0.1, VGG or AlexNet); FID with pytorch-fid's InceptionV3 and a float64
Fréchet distance; metrics registered by name (``METRICS``, ``compute_metrics``) and
summarised per hole-area bin (``summarize_by_hole_area``). Weights are never downloaded:
``resolve_weight`` finds the standard files in ``weights_dir`` or at explicit paths.
"""
__all__ = [
    "FeatureStats", "cached_arrays", "cached_stats", "content_hash", "fid_from_features", "fid_from_stats",
    "frechet_distance", "load_cached_arrays", "store_cached_arrays", "FEATURE_DIM", "FIDInceptionV3",
    "load_inception", "LPIPS", "load_lpips",
    "l1", "psnr", "ssim", "ssim_map", "METRICS", "Metric", "MetricContext", "compute_metrics",
    "compute_references", "reference_columns",
    "register_metric", "ALL", "HOLE_AREA_BINS", "hole_area_bin", "hole_fraction", "summarize_by_hole_area",
    "STANDARD_WEIGHT_FILES", "default_weights_dir", "read_weights", "resolve_weight",
]

# Every name loads its module on first use (PEP 562): the networks subclass torchvision's,
# whose import takes seconds, and the jobs' record writers need ``hole_area_bin`` without
# torch at all.
_EXPORTS = {
    ".fid": ("FeatureStats", "cached_arrays", "cached_stats", "content_hash", "fid_from_features", "fid_from_stats",
             "frechet_distance", "load_cached_arrays", "store_cached_arrays"),
    ".pixel": ("l1", "psnr", "ssim", "ssim_map"),
    ".registry": ("METRICS", "Metric", "MetricContext", "compute_metrics", "compute_references", "reference_columns",
                  "register_metric"),
    ".summary": ("ALL", "hole_fraction", "summarize_by_hole_area"),
    ".hole_area": ("HOLE_AREA_BINS", "hole_area_bin"),
    ".weights": ("STANDARD_WEIGHT_FILES", "default_weights_dir", "read_weights", "resolve_weight"),
    ".inception": ("FEATURE_DIM", "FIDInceptionV3", "load_inception"),
    ".lpips": ("LPIPS", "load_lpips"),
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
