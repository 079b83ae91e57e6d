"""Winograd F(2×2, 3×3) convolution for CPU inference (fp32; bf16 works the same way).

A 3×3, stride-1 convolution spends 9 multiply-adds per output pixel and channel pair.
Winograd's minimal filtering algorithm computes each 2×2 output tile from a 4×4 input
tile with 16 products instead of 36: 2.25× fewer multiplications. Here the 16 products per
tile become one grouped 1×1 convolution (16 groups, one per tile position), which oneDNN
runs near the machine's peak, and the two small transforms around it are additions and
subtractions only (F(2×2, 3×3) uses the points 0, ±1, ∞), so fp32 results stay as
accurate as a direct convolution (max abs error ~1e-6 on unit-scale activations).

Layouts: activations are channels-last throughout. ``winograd_input`` takes the *padded*
input ``N x C x (H+2) x (W+2)`` and returns ``N x 16C x H/2 x W/2`` whose channel
``k*C + c`` holds tile position ``k`` of input channel ``c``; ``winograd_output`` takes the
grouped product ``N x 16C' x H/2 x W/2`` back to ``N x C' x H x W``. H and W must be even.

Why hand-written: PyTorch's CPU convolutions ask oneDNN for its direct algorithm and offer
no switch to a Winograd one; the transforms are 40 lines of tensor arithmetic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Filter transform G (4×3) of F(2×2, 3×3) with interpolation points 0, 1, -1 and ∞.
_FILTER_TRANSFORM = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
                                 dtype=torch.float64)
# Index of the tile position whose product carries the bias: A^T e_5 A is all ones on the
# 2×2 output tile (row and column 1 of A^T are [1, 1]), so a bias added there reaches
# every output pixel exactly once.
BIAS_POSITION = 5


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """Transform 3×3 conv weights for ``F.conv2d(winograd_input(x), w, groups=16)``.

    ``weight``: ``C_out x C_in x 3 x 3`` (any float dtype). Returns ``16*C_out x C_in x 1 x 1``
    float32, channels-last, group ``k = 4i + j`` holding ``(G g G^T)[i, j]``; computed in
    float64 so the transform adds no rounding of its own.
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"Winograd F(2x2,3x3) needs 3x3 weights, got {tuple(weight.shape)}")
    c_out, c_in = weight.shape[:2]
    # vec(G g G^T) = (G kron G) vec(g): one (C_out*C_in x 9) @ (9 x 16) product; the same
    # float64 sums as G g G^T per kernel, without einsum's slow batched 3x3 products
    # (2 s of a big-lama actor's start-up).
    g = _FILTER_TRANSFORM.to(weight.device)
    u = weight.detach().double().reshape(c_out * c_in, 9) @ torch.kron(g, g).T
    return u.T.reshape(16 * c_out, c_in, 1, 1).float().contiguous(memory_format=torch.channels_last)


def winograd_bias(bias: torch.Tensor | None) -> torch.Tensor | None:
    """The grouped conv's bias: ``bias`` (``C_out``) at tile position ``BIAS_POSITION``, zero
    elsewhere (``16*C_out`` float32, on ``bias``'s device); None stays None."""
    if bias is None:
        return None
    full = torch.zeros(16, bias.shape[0], device=bias.device)
    full[BIAS_POSITION] = bias.detach().float()
    return full.reshape(-1)


def winograd_input(padded: torch.Tensor) -> torch.Tensor:
    """``B^T d B`` for every 4×4 tile (stride 2) of ``padded`` (``N x C x H+2 x W+2``, fp32).

    Returns ``N x 16C x H/2 x W/2`` in channels-last memory (see module docstring).
    """
    n, c, hp, wp = padded.shape
    h, w = hp - 2, wp - 2
    if h % 2 or w % 2:
        raise ValueError(f"Winograd F(2x2,3x3) needs an even output size, got {h}x{w}")
    xh = padded.permute(0, 2, 3, 1)  # N x H+2 x W+2 x C; a view when channels-last
    rows = [xh[:, k:k + h:2] for k in range(4)]
    # B^T applied along the tile rows, then along the tile columns.
    by_row = (rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3])
    out = torch.empty(n, h // 2, w // 2, 16, c, dtype=padded.dtype, device=padded.device)
    for i, d in enumerate(by_row):
        cols = [d[:, :, k:k + w:2] for k in range(4)]
        torch.sub(cols[0], cols[2], out=out[..., 4 * i, :])
        torch.add(cols[1], cols[2], out=out[..., 4 * i + 1, :])
        torch.sub(cols[2], cols[1], out=out[..., 4 * i + 2, :])
        torch.sub(cols[1], cols[3], out=out[..., 4 * i + 3, :])
    return out.view(n, h // 2, w // 2, 16 * c).permute(0, 3, 1, 2)


def winograd_output(products: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``A^T m A`` for every tile: ``N x 16C x H/2 x W/2`` -> ``N x C x H x W`` (channels-last).

    ``out``: optional ``N x C x H x W`` destination whose ``permute(0, 2, 3, 1)`` has unit
    stride on channels (a channels-last tensor or a row slice of one); returned filled.
    """
    n, c16, h2, w2 = products.shape
    c = c16 // 16
    m = products.permute(0, 2, 3, 1).reshape(n, h2, w2, 4, 4, c)
    # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] along the tile rows ...
    top = m[:, :, :, 0] + m[:, :, :, 1]
    top += m[:, :, :, 2]
    bottom = m[:, :, :, 1] - m[:, :, :, 2]
    bottom -= m[:, :, :, 3]
    if out is None:
        out = torch.empty(n, 2 * h2, 2 * w2, c, dtype=products.dtype, device=products.device)
    else:
        out = out.permute(0, 2, 3, 1)
    # ... then along the tile columns, written straight into the interleaved output pixels.
    for a, s in enumerate((top, bottom)):
        left, right = out[:, a::2, 0::2], out[:, a::2, 1::2]
        torch.add(s[..., 0, :], s[..., 1, :], out=left)
        left += s[..., 2, :]
        torch.sub(s[..., 1, :], s[..., 2, :], out=right)
        right -= s[..., 3, :]
    return out.permute(0, 3, 1, 2)


def winograd_products(tiles: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The 16 per-position matrix products as one grouped 1×1 conv: ``N x 16C x h x w`` ->
    ``N x 16C' x h x w`` with ``weight``/``bias`` from ``winograd_weight``/``winograd_bias``."""
    return F.conv2d(tiles, weight, bias, groups=16)
