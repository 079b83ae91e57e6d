"""Winograd convolutions F(2×2, 3×3) and F(4×4, 3×3) for CPU inference.

A 3×3, stride-1 convolution spends 9 multiply-adds per output pixel and channel pair.
Winograd's minimal filtering algorithm computes each m×m output tile from a (m+2)×(m+2)
input tile with (m+2)² products: F(2×2, 3×3) needs 16 per 4 outputs (2.25× fewer
multiplications), F(4×4, 3×3) 36 per 16 (4× fewer). Here the products become one batched
matrix product per tile position (each ``tiles x C_in`` @ ``C_in x C_out``), which oneDNN
runs near the machine's peak, and both transforms around it are one matrix product each
over all tile positions (``kron(B^T, B^T)`` on the gathered input tiles, ``kron(A^T, A^T)``
on the products): a single pass over memory instead of one pass per addition.

Accuracy: the transforms' coefficients grow with the tile, and so does rounding. F(4×4)
uses the interpolation points 0, ±1, 2, -1/2 (3× less error than the textbook 0, ±1, ±2):
fp32 results stay within ~4e-6 of the largest output, against ~2e-6 for F(2×2). In bf16
F(4×4) loses ~15× more than F(2×2), so reduced precisions use F(2×2) (``tile_for``).

Layouts: ``winograd_input`` takes the *padded* channels-last input ``N x C x (H+2) x (W+2)``
(H and W multiples of m) and returns the transformed tiles position-major,
``t² x N x H/m x W/m x C`` (contiguous, t = m+2), so each position's tiles are one plain
row-major matrix for the product; ``winograd_products`` keeps that layout (``C`` -> ``C'``),
and ``winograd_output`` returns ``N x C' x H x W`` channels-last.

Why hand-written: PyTorch's CPU convolutions ask oneDNN for its direct algorithm and offer
no switch to a Winograd one.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch


@dataclass(frozen=True)
class WinogradTile:
    """The matrices of F(m×m, 3×3) (float64): ``input_matrix`` ``t² x t²`` = kron(B^T, B^T),
    ``filter_matrix`` ``t² x 9`` = kron(G, G), ``output_matrix`` ``m² x t²`` = kron(A^T, A^T)
    (t = m + 2); ``bias_position``: the tile position whose product reaches every output
    pixel of the tile exactly once (``A^T e_p A`` all ones), where a bias is added."""

    m: int
    input_matrix: torch.Tensor
    filter_matrix: torch.Tensor
    output_matrix: torch.Tensor
    bias_position: int

    @property
    def t(self) -> int:
        return self.m + 2


def toom_cook_tile(m: int, points: tuple[Fraction | int, ...]) -> WinogradTile:
    """F(m×m, 3×3) from its m+1 finite interpolation points (plus the point at infinity),
    by the Toom-Cook construction in exact fractions: ``A^T[i, j] = a_j^i``; ``G[j, k] =
    a_j^k / prod_{l != j}(a_j - a_l)``; row j of ``B^T`` the coefficients of
    ``prod_{l != j}(x - a_l)``, its last row those of ``prod_l (x - a_l)``. One of the
    points must be 1 (its ``A^T`` column is all ones: the bias position)."""
    a = [Fraction(p) for p in points]
    n = m + 2
    if len(a) != n - 1 or len(set(a)) != len(a) or 1 not in a:
        raise ValueError(f"F({m}x{m},3x3) needs {n - 1} distinct points including 1, got {points}")

    def poly(roots: list[Fraction]) -> list[Fraction]:  # ascending coefficients of prod (x - r)
        coeffs = [Fraction(1)]
        for r in roots:
            coeffs = [Fraction(0)] + coeffs
            for i in range(len(coeffs) - 1):
                coeffs[i] -= r * coeffs[i + 1]
        return coeffs + [Fraction(0)] * (n - len(coeffs))

    at = [[a[j] ** i for j in range(n - 1)] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = []
    for j in range(n - 1):
        norm = Fraction(1)
        for l in range(n - 1):
            if l != j:
                norm *= a[j] - a[l]
        g.append([a[j] ** k / norm for k in range(3)])
    g.append([Fraction(0), Fraction(0), Fraction(1)])
    bt = [poly([a[l] for l in range(n - 1) if l != j]) for j in range(n - 1)] + [poly(a)]

    def tensor(rows: list[list[Fraction]]) -> torch.Tensor:
        return torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)

    bt_t, g_t, at_t = tensor(bt), tensor(g), tensor(at)
    one = a.index(1)
    return WinogradTile(m, torch.kron(bt_t, bt_t), torch.kron(g_t, g_t), torch.kron(at_t, at_t), one * n + one)


F2X2 = toom_cook_tile(2, (0, 1, -1))
F4X4 = toom_cook_tile(4, (0, 1, -1, 2, Fraction(-1, 2)))


def tile_for(dtype: torch.dtype) -> WinogradTile:
    """The tile to run in ``dtype``: F(4×4) in fp32 (and fp64), F(2×2) in bf16/fp16,
    where F(4×4)'s larger transform coefficients would amplify the rounding."""
    return F4X4 if dtype in (torch.float32, torch.float64) else F2X2


def winograd_weight(weight: torch.Tensor, tile: WinogradTile = F2X2) -> torch.Tensor:
    """Transform 3×3 conv weights for ``winograd_products``.

    ``weight``: ``C_out x C_in x 3 x 3`` (any float dtype). Returns ``t² x C_in x C_out``
    float32 (contiguous), matrix ``k = t i + j`` holding ``(G g G^T)[i, j]`` for every
    channel pair; computed in float64 so the transform adds no rounding of its own.
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"Winograd F(mxm,3x3) needs 3x3 weights, got {tuple(weight.shape)}")
    c_out, c_in = weight.shape[:2]
    # vec(G g G^T) = (G kron G) vec(g): one (t² x 9) @ (9 x C_in*C_out) product whose
    # result is already in the output layout (a transposing copy of the t²-times larger
    # result took most of a big-lama actor's start-up).
    taps = weight.detach().permute(2, 3, 1, 0).reshape(9, c_in * c_out).double()
    u = tile.filter_matrix.to(weight.device) @ taps
    return u.view(tile.t ** 2, c_in, c_out).float()


def winograd_input(padded: torch.Tensor, tile: WinogradTile = F2X2) -> torch.Tensor:
    """``B^T d B`` for every t×t tile (stride m) of ``padded`` (``N x C x H+2 x W+2``, float,
    channels-last for speed). Returns ``t² x N x H/m x W/m x C`` (contiguous)."""
    n, c, hp, wp = padded.shape
    h, w, m, t = hp - 2, wp - 2, tile.m, tile.t
    if h % m or w % m:
        raise ValueError(f"Winograd F({m}x{m},3x3) needs an output size divisible by {m}, got {h}x{w}")
    x = padded.permute(0, 2, 3, 1)  # N x H+2 x W+2 x C; a view when channels-last
    sn, sh, sw, sc = x.stride()
    # Every tile, position-major: one gathering copy, then one product with kron(B^T, B^T).
    tiles = x.as_strided((t, t, n, h // m, w // m, c), (sh, sw, sn, m * sh, m * sw, sc)).reshape(t * t, -1)
    out = torch.mm(tile.input_matrix.to(padded.device, padded.dtype), tiles)
    return out.view(t * t, n, h // m, w // m, c)


def winograd_output(products: torch.Tensor, tile: WinogradTile = F2X2,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """``A^T M A`` for every tile: ``t² x N x H/m x W/m x C`` -> ``N x C x H x W`` (channels-last).

    ``out``: optional ``N x C x H x W`` destination whose ``permute(0, 2, 3, 1)`` has unit
    stride on channels (a channels-last tensor or a row slice of one); returned filled.
    """
    positions, n, hm, wm, c = products.shape
    m = tile.m
    pixels = torch.mm(tile.output_matrix.to(products.device, products.dtype), products.reshape(positions, -1))
    if out is None:
        out = torch.empty(n, m * hm, m * wm, c, dtype=products.dtype, device=products.device).permute(0, 3, 1, 2)
    # (row in tile, column in tile, N, tile row, tile column, C) -> N x H x W x C.
    target = out.permute(0, 2, 3, 1).unflatten(1, (hm, m)).unflatten(3, (wm, m))
    target.copy_(pixels.view(m, m, n, hm, wm, c).permute(2, 3, 0, 4, 1, 5))
    return out


def winograd_products(tiles: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                      out: torch.Tensor | None = None, tile: WinogradTile = F2X2) -> torch.Tensor:
    """The per-position matrix products: ``tiles`` ``t² x N x h x w x C`` (from
    ``winograd_input``) -> ``t² x N x h x w x C'`` with ``weight`` from ``winograd_weight``
    (``t² x C x C'``) and ``bias`` the conv's own (``C'``; added at the tile's bias position).
    ``out``: a contiguous ``t² x N x h x w x C'`` the products are added to (one GEMM pass,
    no separate sum); returned."""
    positions, c = tiles.shape[0], tiles.shape[-1]
    a = tiles.reshape(positions, -1, c)
    if out is None:
        out = torch.bmm(a, weight).view(*tiles.shape[:-1], weight.shape[-1])
    else:
        out.view(positions, -1, weight.shape[-1]).baddbmm_(a, weight)
    if bias is not None:
        out[tile.bias_position] += bias
    return out
