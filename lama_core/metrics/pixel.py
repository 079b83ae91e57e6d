"""Per-image pixel metrics: PSNR, SSIM and L1, over the whole image or over the hole only.

Conventions for every function here: ``pred`` and ``target`` are float tensors
``N x 3 x H x W`` with values in [0, 1] (data range 1); ``mask``, when given, is
``N x 1 x H x W`` with 1 = hole (values > 0.5 count as hole), and restricts the metric to
hole pixels. Results are float64 tensors of shape ``(N,)`` on the input device; a hole
metric of an image without hole pixels is NaN. Arithmetic runs in float64 so the values
match scikit-image's (which computes in float64 for float64 input) to ~1e-10.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# scikit-image's structural_similarity(gaussian_weights=True): sigma 1.5, truncate 3.5
# -> radius int(3.5 * 1.5 + 0.5) = 5, an 11-tap window; K1, K2 of Wang et al. 2004.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(f"pred and target must both be N x C x H x W, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if mask is not None and (mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != pred.shape[0]
                             or mask.shape[2:] != pred.shape[2:]):
        raise ValueError(f"mask must be N x 1 x H x W matching {tuple(pred.shape)}, got {tuple(mask.shape)}")


def _mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-image mean of ``values`` (N x C x H x W) over everything, or over hole pixels of
    all channels. 0/0 gives NaN for an image without hole pixels, on purpose."""
    if mask is None:
        return values.mean(dim=(1, 2, 3))
    weight = (mask > 0.5).to(values.dtype).expand_as(values)
    return (values * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3))


def l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error per image, (N,) float64; over hole pixels only when ``mask`` is given."""
    _check(pred, target, mask)
    return _mean((pred.double() - target.double()).abs(), mask)


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, data range 1: ``10 log10(1 / MSE)``, (N,)
    float64, as ``skimage.metrics.peak_signal_noise_ratio(data_range=1)``. With ``mask``,
    the MSE is over hole pixels only. Identical images give +inf."""
    _check(pred, target, mask)
    mse = _mean((pred.double() - target.double()) ** 2, mask)
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window(device: torch.device) -> torch.Tensor:
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    w = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return w / w.sum()


def _pad_symmetric(x: torch.Tensor, p: int) -> torch.Tensor:
    """Pad H and W by ``p`` with edge-inclusive mirroring (``d c b a | a b c d``): scipy.ndimage's
    'reflect' mode, which scikit-image's Gaussian filter uses. torch's own 'reflect' mode
    excludes the edge, so we build it from flipped slices."""
    x = torch.cat([x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :p].flip(-1), x, x[..., -p:].flip(-1)], dim=-1)


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The SSIM map averaged over channels, ``N x 1 x H x W`` float64: per pixel what
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1, channel_axis=..., full=True)`` returns as ``S``, including the border
    pixels (computed on mirrored padding). H and W must be at least 11."""
    _check(pred, target, None)
    n, c, h, w = pred.shape
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1}x{2 * SSIM_RADIUS + 1}, got {h}x{w}")
    x, y = pred.double(), target.double()
    # One grouped separable convolution filters all five moments of all channels at once.
    stack = _pad_symmetric(torch.cat([x, y, x * x, y * y, x * y], dim=1), SSIM_RADIUS)
    g = _gaussian_window(pred.device)
    groups = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    ux, uy, uxx, uyy, uxy = stack.split(c, dim=1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy  # population covariance
    s = ((2 * ux * uy + SSIM_C1) * (2 * vxy + SSIM_C2)) / ((ux ** 2 + uy ** 2 + SSIM_C1) * (vx + vy + SSIM_C2))
    return s.mean(dim=1, keepdim=True)


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Structural similarity per image, (N,) float64, in [-1, 1].

    Whole image: scikit-image's ``structural_similarity`` with ``gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis``; like it, the mean
    leaves out a 5-pixel border, where the window would leave the image. With ``mask``: the
    mean of the full SSIM map (``ssim_map``) over hole pixels, border included, because
    holes touch the border often.
    """
    _check(pred, target, mask)
    s = ssim_map(pred, target)
    if mask is None:
        r = SSIM_RADIUS
        return s[..., r:-r, r:-r].mean(dim=(1, 2, 3))
    return _mean(s, mask)

