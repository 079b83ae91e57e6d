"""Quality metrics of inpainting results, as LaMa's evaluation protocol computes them.

Images are float tensors ``N x 3 x H x W`` in [0, 1]; masks ``N x 1 x H x W`` with
1 = hole. Pixel metrics (``psnr``, ``ssim``, ``l1``) over the whole image or the hole;
``LPIPS`` (v0.1, VGG or AlexNet); FID with pytorch-fid's InceptionV3 and a float64
Fréchet distance; metrics registered by name (``METRICS``, ``compute_metrics``) and
summarised per hole-area bin (``summarize_by_hole_area``). Weights are never downloaded:
``resolve_weight`` finds the standard files in ``weights_dir`` or at explicit paths.
"""
from ..lazy_exports import lazy_exports

# Each name's module loads on first use (lazy_exports.py): the networks subclass
# torchvision's, whose import takes seconds, and the jobs' record writers need
# ``hole_area_bin`` without torch at all.
__all__, __getattr__ = lazy_exports(__name__, {
    "fid": ("FeatureStats", "cached_arrays", "cached_stats", "content_hash", "fid_from_features", "fid_from_stats",
            "frechet_distance", "load_cached_arrays", "store_cached_arrays"),
    "pixel": ("l1", "psnr", "ssim", "ssim_map"),
    "registry": ("METRICS", "Metric", "MetricContext", "compute_metrics", "compute_references", "reference_columns",
                 "register_metric"),
    "summary": ("ALL", "hole_fraction", "summarize_by_hole_area"),
    "hole_area": ("HOLE_AREA_BINS", "hole_area_bin"),
    "weights": ("STANDARD_WEIGHT_FILES", "default_weights_dir", "read_weights", "resolve_weight"),
    "inception": ("FEATURE_DIM", "FIDInceptionV3", "load_inception"),
    "lpips": ("LPIPS", "load_lpips"),
})
