"""Winograd F(2×2, 3×3) convolution for CPU inference (fp32; bf16 works the same way).

A 3×3, stride-1 convolution spends 9 multiply-adds per output pixel and channel pair.
Winograd's minimal filtering algorithm computes each 2×2 output tile from a 4×4 input
tile with 16 products instead of 36: 2.25× fewer multiplications. Here the 16 products per
tile become one batched matrix product (16 tile positions, each ``tiles x C_in`` @
``C_in x C_out``), which oneDNN runs near the machine's peak, and the two small transforms
around it are additions and subtractions only (F(2×2, 3×3) uses the points 0, ±1, ∞), so
fp32 results stay as accurate as a direct convolution (max abs error ~1e-6 on unit-scale
activations).

Layouts: ``winograd_input`` takes the *padded* channels-last input ``N x C x (H+2) x (W+2)``
and returns the transformed tiles position-major, ``16 x N x H/2 x W/2 x C`` (contiguous),
so that each position's tiles are one plain row-major matrix for the product and each
transform writes or reads whole contiguous slices; ``winograd_products`` keeps that layout
(``C`` -> ``C'``), and ``winograd_output`` returns ``N x C' x H x W`` channels-last. H and W
must be even. (A grouped 1×1 convolution over tiles interleaved by position measured 8%
slower per big-lama block: its channel-strided reads and writes.)

Why hand-written: PyTorch's CPU convolutions ask oneDNN for its direct algorithm and offer
no switch to a Winograd one; the transforms are 40 lines of tensor arithmetic.
"""
from __future__ import annotations

import torch

# Filter transform G (4×3) of F(2×2, 3×3) with interpolation points 0, 1, -1 and ∞.
_FILTER_TRANSFORM = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
                                 dtype=torch.float64)
# Index of the tile position whose product carries the bias: A^T e_5 A is all ones on the
# 2×2 output tile (row and column 1 of A^T are [1, 1]), so a bias added there reaches
# every output pixel exactly once.
BIAS_POSITION = 5


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """Transform 3×3 conv weights for ``winograd_products``.

    ``weight``: ``C_out x C_in x 3 x 3`` (any float dtype). Returns ``16 x C_in x C_out``
    float32 (contiguous), matrix ``k = 4i + j`` holding ``(G g G^T)[i, j]`` for every
    channel pair; computed in float64 so the transform adds no rounding of its own.
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"Winograd F(2x2,3x3) needs 3x3 weights, got {tuple(weight.shape)}")
    c_out, c_in = weight.shape[:2]
    # vec(G g G^T) = (G kron G) vec(g): one (C_out*C_in x 9) @ (9 x 16) product; the same
    # float64 sums as G g G^T per kernel, without einsum's slow batched 3x3 products
    # (2 s of a big-lama actor's start-up).
    g = _FILTER_TRANSFORM.to(weight.device)
    u = weight.detach().double().reshape(c_out * c_in, 9) @ torch.kron(g, g).T
    return u.reshape(c_out, c_in, 16).permute(2, 1, 0).float().contiguous()


def winograd_input(padded: torch.Tensor) -> torch.Tensor:
    """``B^T d B`` for every 4×4 tile (stride 2) of ``padded`` (``N x C x H+2 x W+2``,
    float, channels-last for speed). Returns ``16 x N x H/2 x W/2 x C`` (contiguous)."""
    n, c, hp, wp = padded.shape
    h, w = hp - 2, wp - 2
    if h % 2 or w % 2:
        raise ValueError(f"Winograd F(2x2,3x3) needs an even output size, got {h}x{w}")
    xh = padded.permute(0, 2, 3, 1)  # N x H+2 x W+2 x C; a view when channels-last
    rows = [xh[:, k:k + h:2] for k in range(4)]
    # B^T applied along the tile rows, then along the tile columns.
    by_row = (rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3])
    out = torch.empty(16, n, h // 2, w // 2, c, dtype=padded.dtype, device=padded.device)
    for i, d in enumerate(by_row):
        cols = [d[:, :, k:k + w:2] for k in range(4)]
        torch.sub(cols[0], cols[2], out=out[4 * i])
        torch.add(cols[1], cols[2], out=out[4 * i + 1])
        torch.sub(cols[2], cols[1], out=out[4 * i + 2])
        torch.sub(cols[1], cols[3], out=out[4 * i + 3])
    return out


def winograd_output(products: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``A^T m A`` for every tile: ``16 x N x H/2 x W/2 x C`` -> ``N x C x H x W`` (channels-last).

    ``out``: optional ``N x C x H x W`` destination whose ``permute(0, 2, 3, 1)`` has unit
    stride on channels (a channels-last tensor or a row slice of one); returned filled.
    """
    _, n, h2, w2, c = products.shape
    m = products  # m[4i + j]: row i, column j of every tile
    # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] along the tile rows ...
    top = m[0:4] + m[4:8]
    top += m[8:12]
    bottom = m[4:8] - m[8:12]
    bottom -= m[12:16]
    if out is None:
        out = torch.empty(n, 2 * h2, 2 * w2, c, dtype=products.dtype, device=products.device)
    else:
        out = out.permute(0, 2, 3, 1)
    # ... then along the tile columns, written straight into the interleaved output pixels.
    for a, s in enumerate((top, bottom)):
        left, right = out[:, a::2, 0::2], out[:, a::2, 1::2]
        torch.add(s[0], s[1], out=left)
        left += s[2]
        torch.sub(s[1], s[2], out=right)
        right -= s[3]
    return out.permute(0, 3, 1, 2)


def winograd_products(tiles: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """The 16 per-position matrix products: ``tiles`` ``16 x N x h x w x C`` (from
    ``winograd_input``) -> ``16 x N x h x w x C'`` with ``weight`` from ``winograd_weight``
    (``16 x C x C'``) and ``bias`` the conv's own (``C'``; added at ``BIAS_POSITION``).
    ``out``: a contiguous ``16 x N x h x w x C'`` the products are added to (one GEMM pass,
    no separate sum); returned."""
    positions, c = tiles.shape[0], tiles.shape[-1]
    a = tiles.reshape(positions, -1, c)
    if out is None:
        out = torch.bmm(a, weight).view(*tiles.shape[:-1], weight.shape[-1])
    else:
        out.view(positions, -1, weight.shape[-1]).baddbmm_(a, weight)
    if bias is not None:
        out[BIAS_POSITION] += bias
    return out
