"""Inference-only rewrites of a trained generator that keep its function.

``fold_batchnorm`` folds every eval-mode BatchNorm into the linear layer that feeds it:
in an FFC the local output ``bn_l(convl2l(x_l) + convg2l(x_g))`` is linear in both convs,
and the global output ``bn_g(convl2g(x_l) + SpectralTransform(x_g))`` ends in the
transform's 1×1 ``conv2``, so both BNs fold into conv weights plus one bias. The
transform's own conv+BN and the Fourier unit's conv+BN fold likewise, and so do the
upsampling transposed convs. What remains per layer is conv (+bias) and ReLU: fewer
passes over memory, identical arithmetic up to float rounding (max abs diff ~1e-6).

``optimize_for_inference`` applies the folding and, optionally, channels-last layout and
the CPU kernels (``cpu_kernels=True``): Winograd convolutions for the 3×3 FFCs of the
ResNet blocks (``WinogradFFC``: ~85% of big-lama's multiply-adds, 2.25× fewer
multiplications) and a space-to-depth form of the 3-channel output convolution
(``SpaceToDepthConv``), the one layer oneDNN runs at a fifth of its speed.
The result is for inference only: its BatchNorms are gone, so it cannot be trained.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .ffc import FFC_BN_ACT, FFCResNetGenerator, FourierUnit, SpectralTransform
from .winograd import F4X4, WinogradTile, tile_for, winograd_input, winograd_output, winograd_products, winograd_weight


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _with_bias(conv: nn.Conv2d, bias: torch.Tensor) -> nn.Conv2d:
    """``conv`` (changed in place: it belongs to the folded copy) carrying ``bias``, added to
    any bias it had. In place rather than a new ``nn.Conv2d``, whose random initialisation
    of a weight about to be overwritten cost ~1 s of a big-lama actor's start-up."""
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.detach().clone())
    else:
        conv.bias.data.add_(bias)
    return conv


def _fold_into_conv(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor | None) -> nn.Conv2d:
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    if conv.bias is not None:
        conv.bias.data.mul_(scale)
    return _with_bias(conv, shift) if shift is not None else conv


def _fold_sequential_conv_bn(seq: nn.Sequential) -> None:
    """In-place: ``Sequential(Conv2d, BatchNorm2d, act)`` -> ``Sequential(Conv2d+bias, Identity, act)``."""
    scale, shift = _bn_scale_shift(seq[1])
    seq[0] = _fold_into_conv(seq[0], scale, shift)
    seq[1] = nn.Identity()


def _fold_fourier_unit(fu: FourierUnit) -> None:
    scale, shift = _bn_scale_shift(fu.bn)
    fu.conv_layer = _fold_into_conv(fu.conv_layer, scale, shift)
    fu.bn = nn.Identity()


def _fold_spectral_transform(st: SpectralTransform) -> None:
    _fold_sequential_conv_bn(st.conv1)
    _fold_fourier_unit(st.fu)
    if st.enable_lfu:
        _fold_fourier_unit(st.lfu)


def _fold_branch(layer: FFC_BN_ACT, branch: str) -> None:
    """Fold ``bn_l`` (branch 'l') or ``bn_g`` (branch 'g') into the convs that sum into it."""
    bn = getattr(layer, f"bn_{branch}")
    if not isinstance(bn, nn.BatchNorm2d):
        return
    scale, shift = _bn_scale_shift(bn)
    ffc = layer.ffc
    names = ("convl2l", "convg2l") if branch == "l" else ("convl2g", "convg2g")
    bias_placed = False
    for name in names:
        module = getattr(ffc, name)
        if isinstance(module, nn.Conv2d):
            setattr(ffc, name, _fold_into_conv(module, scale, None if bias_placed else shift))
            bias_placed = True
        elif isinstance(module, SpectralTransform):
            module.conv2 = _fold_into_conv(module.conv2, scale, None if bias_placed else shift)
            bias_placed = True
    if not bias_placed:
        return  # nothing linear feeds this BN (cannot happen in LaMa presets); keep it
    setattr(layer, f"bn_{branch}", nn.Identity())


def _fold_transposed(conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> nn.ConvTranspose2d:
    scale, shift = _bn_scale_shift(bn)
    conv.weight.data.mul_(scale.view(1, -1, 1, 1))  # ConvTranspose2d weight: in x out x k x k
    bias = shift if conv.bias is None else conv.bias.data * scale + shift
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.clone())
    else:
        conv.bias.data.copy_(bias)
    return conv


@torch.no_grad()
def fold_batchnorm(generator: FFCResNetGenerator) -> FFCResNetGenerator:
    """Return an eval-mode copy of ``generator`` with every BatchNorm folded away.

    Input and output as the generator's; the original is left untouched.
    """
    folded = copy.deepcopy(generator).eval()
    for module in list(folded.modules()):
        if isinstance(module, FFC_BN_ACT):
            if isinstance(module.ffc.convg2g, SpectralTransform):
                _fold_spectral_transform(module.ffc.convg2g)
            _fold_branch(module, "l")
            _fold_branch(module, "g")
    layers = list(folded.model)
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.ConvTranspose2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
            _fold_transposed(layers[i], layers[i + 1])
            folded.model[i + 1] = nn.Identity()
    return folded


class WinogradFFC(nn.Module):
    """A folded 3×3 stride-1 ``FFC_BN_ACT`` (reflect padding, ReLU) computed with Winograd
    F(m×m, 3×3) convolutions (``tile``: F(4×4) for fp32, F(2×2) for bf16, see
    ``lama_core.winograd``); same inputs and outputs as the layer it replaces.

    ``(x_l, x_g)``: ``N x C_l x H x W`` and ``N x C_g x H x W`` float (fp32 or bf16),
    channels-last ->
    ``(relu(l2l(x_l) + g2l(x_g) + b_l), relu(l2g(x_l) + spectral(x_g) + b_g))``.
    Each input is transformed once and shared by the convs that read it; the local output's
    two convs are summed in the transformed domain, so one output transform serves both.
    H or W not divisible by m: zero rows/columns are added before the transform and cropped
    after (they only reach the cropped output pixels). Maps under ``MIN_PIXELS``
    (``N*H*W``) run the folded layer's direct convolutions instead, which it keeps for them.
    """

    # Measured crossover (benchmarks/RESULTS.md): with F(2×2) the transforms cost what the
    # saved products gain at a 16×16 bottleneck (128² images), 1.15x faster at 24×24; F(4×4)
    # measured 1.38-1.58x faster from 20×20 up, so the cut-off stayed.
    MIN_PIXELS = 400
    # Output pixels per band: 4096 = a 64x64 map, where the batched products still run at
    # full speed and a band's tiles (36 x 256 x 384 fp32 = 14 MB at most) are reused from
    # the allocator's free memory.
    BAND_PIXELS = 4096

    def __init__(self, layer: FFC_BN_ACT, tile: WinogradTile = F4X4):
        super().__init__()
        self.direct = layer
        self.tile = tile
        ffc = layer.ffc
        self.register_buffer("l2l", winograd_weight(ffc.convl2l.weight, tile))
        self.register_buffer("g2l", winograd_weight(ffc.convg2l.weight, tile))
        self.register_buffer("l2g", winograd_weight(ffc.convl2g.weight, tile))
        self.register_buffer("bias_l", _combined_bias(ffc.convl2l, ffc.convg2l))
        self.register_buffer("bias_g", None if ffc.convl2g.bias is None else ffc.convl2g.bias.detach().float().clone())
        self.spectral = ffc.convg2g  # shared with self.direct

    @staticmethod
    def eligible(layer: nn.Module) -> bool:
        """True for a folded FFC_BN_ACT with 3×3/stride 1/dilation 1 reflect-padded convs on
        both branches, a spectral global→global path and ReLU activations (LaMa's blocks)."""
        if not isinstance(layer, FFC_BN_ACT):
            return False
        ffc = layer.ffc
        convs = (ffc.convl2l, ffc.convg2l, ffc.convl2g)
        return (all(isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3) and c.stride == (1, 1)
                    and c.dilation == (1, 1) and c.padding == (1, 1) and c.groups == 1
                    and c.padding_mode == "reflect" for c in convs)
                and isinstance(ffc.convg2g, SpectralTransform)
                and isinstance(layer.bn_l, nn.Identity) and isinstance(layer.bn_g, nn.Identity)
                and isinstance(layer.act_l, nn.ReLU) and isinstance(layer.act_g, nn.ReLU))

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x_l, x_g = x
        n, _, h, w = x_l.shape
        if n * h * w < self.MIN_PIXELS:
            return self.direct(x)
        m, tile = self.tile.m, self.tile
        padded_l, padded_g = _padded_tiles(x_l, m), _padded_tiles(x_g, m)
        he, we = padded_l.shape[-2] - 2, padded_l.shape[-1] - 2
        out_l = _channels_last_empty(n, self.l2l.shape[-1], he, we, x_l)
        out_g = _channels_last_empty(n, self.l2g.shape[-1], he, we, x_g)
        # A band of tile rows at a time: the transformed tiles (2.25-4x the input) stay in
        # cache, and no buffer grows with the image, so none comes fresh from the OS (page
        # faults on new large allocations cost as much as Winograd saves).
        rows = max(1, self.BAND_PIXELS // (m * we))
        for i in range(n):
            for top in range(0, he // m, rows):
                bottom = min(he // m, top + rows)
                band = (slice(i, i + 1), slice(None), slice(m * top, m * bottom + 2))
                tiles_l, tiles_g = winograd_input(padded_l[band], tile), winograd_input(padded_g[band], tile)
                # Both local convs summed inside one GEMM pass (the second accumulates).
                local = winograd_products(tiles_l, self.l2l, self.bias_l,
                                          out=winograd_products(tiles_g, self.g2l, tile=tile), tile=tile)
                rows_out = (slice(i, i + 1), slice(None), slice(m * top, m * bottom))
                winograd_output(local, tile, out=out_l[rows_out])
                winograd_output(winograd_products(tiles_l, self.l2g, self.bias_g, tile=tile), tile,
                                out=out_g[rows_out])
        out_l, out_g = out_l[..., :h, :w], out_g[..., :h, :w]
        out_g += self.spectral(x_g)
        return out_l.relu_(), out_g.relu_()


def _combined_bias(first: nn.Conv2d, second: nn.Conv2d) -> torch.Tensor | None:
    biases = [c.bias.detach().float() for c in (first, second) if c.bias is not None]
    return sum(biases) if biases else None


def _padded_tiles(x: torch.Tensor, m: int) -> torch.Tensor:
    """Reflect-pad by 1, plus zero rows/columns up to a multiple of ``m`` (cropped from the output)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    h, w = x.shape[-2:]
    if h % m or w % m:
        padded = F.pad(padded, (0, -w % m, 0, -h % m))
    return padded


def _channels_last_empty(n: int, c: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(n, h, w, c, dtype=like.dtype, device=like.device).permute(0, 3, 1, 2)


class SpaceToDepthConv(nn.Module):
    """A stride-1, unpadded, odd-k×k convolution with few outputs (LaMa's 7×7 conv to RGB),
    computed on the 2×2 space-to-depth rearrangement of its input.

    oneDNN computes output channels in blocks of 16, so a 3-output conv runs at 3/16 of
    its speed. Folding each 2×2 output block into channels gives 4× the outputs, 4× the
    inputs and a ⌈(k+1)/2⌉² kernel: the same products plus some zeros, at full speed
    (big-lama at 512²: 118 -> 50 ms fp32). Input ``N x C x H x W`` (any H, W ≥ k; an odd
    one gets a zero row/column that only reaches cropped outputs) -> ``N x C_out x
    (H-k+1) x (W-k+1)``, as the wrapped conv.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.kernel_size = conv.kernel_size[0]
        self.register_buffer("weight", _space_to_depth_weight(conv.weight.detach()))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().repeat_interleave(4))

    @staticmethod
    def eligible(module: nn.Module) -> bool:
        """True for a plain Conv2d worth it: odd square kernel ≥ 3, stride 1, no padding,
        dilation 1, one group, fewer than 16 outputs."""
        return (type(module) is nn.Conv2d and module.kernel_size[0] == module.kernel_size[1]
                and module.kernel_size[0] % 2 == 1 and module.kernel_size[0] >= 3
                and module.stride == (1, 1) and module.padding == (0, 0) and module.dilation == (1, 1)
                and module.groups == 1 and module.out_channels < 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2))
        hp, wp = x.shape[-2:]
        # Space to depth, channel order (row phase, column phase, channel) so the copy moves
        # whole channel vectors of the channels-last input.
        cells = x.permute(0, 2, 3, 1).reshape(n, hp // 2, 2, wp // 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        cells = cells.reshape(n, hp // 2, wp // 2, 4 * c).permute(0, 3, 1, 2)
        out = F.pixel_shuffle(F.conv2d(cells, self.weight, self.bias), 2)
        return out[..., : h - self.kernel_size + 1, : w - self.kernel_size + 1]


def _space_to_depth_weight(weight: torch.Tensor) -> torch.Tensor:
    """``C_out x C x k x k`` -> ``4C_out x 4C x kk x kk`` with kk = (k+1)/2: output channel
    ``4o + 2a + b`` is output ``o`` at offset (a, b) of a 2×2 block, input channel
    ``(2p + q)C + c`` is input ``c`` at offset (p, q); tap (I, J) reads kernel position
    (2I + p - a, 2J + q - b), zero where that falls outside the kernel."""
    c_out, c_in, k, _ = weight.shape
    kk = (k + 1) // 2
    out = weight.new_zeros(c_out, 2, 2, 2, 2, c_in, kk, kk)  # o, a, b, p, q, c, I, J
    for a in range(2):
        for b in range(2):
            for p in range(2):
                for q in range(2):
                    for i in range(kk):
                        for j in range(kk):
                            ky, kx = 2 * i + p - a, 2 * j + q - b
                            if 0 <= ky < k and 0 <= kx < k:
                                out[:, a, b, p, q, :, i, j] = weight[:, :, ky, kx]
    return out.reshape(4 * c_out, 4 * c_in, kk, kk).contiguous(memory_format=torch.channels_last)


def use_cpu_kernels(generator: FFCResNetGenerator, dtype: torch.dtype = torch.float32) -> FFCResNetGenerator:
    """In place: every eligible folded FFC layer of the ResNet blocks becomes a
    ``WinogradFFC`` (its tile chosen for ``dtype``, the dtype the generator will run in:
    ``winograd.tile_for``) and the output conv a ``SpaceToDepthConv``; returns
    ``generator``. For CPU inference (fp32 or bf16) through oneDNN, whose convolutions here
    are direct ones; cuDNN chooses Winograd itself, so GPUs gain nothing from this."""
    tile = tile_for(dtype)
    for module in list(generator.modules()):
        for name, child in list(module.named_children()):
            if WinogradFFC.eligible(child):
                setattr(module, name, WinogradFFC(child, tile))
            elif SpaceToDepthConv.eligible(child):
                setattr(module, name, SpaceToDepthConv(child))
    return generator


def optimize_for_inference(generator: FFCResNetGenerator, channels_last: bool = True,
                           cpu_kernels: bool = False, dtype: torch.dtype = torch.float32) -> FFCResNetGenerator:
    """``fold_batchnorm`` plus channels-last weights (oneDNN and cuDNN pick faster kernels
    for NHWC) and, with ``cpu_kernels=True``, ``use_cpu_kernels`` (CPU inference; implies
    channels-last; ``dtype``: what the caller will run it in, which picks the Winograd
    tile). Feed it ``x.contiguous(memory_format=torch.channels_last)`` for full effect; the
    ``Inpainter`` does when built with ``channels_last=True``."""
    fast = fold_batchnorm(generator)
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last or cpu_kernels:
        fast = fast.to(memory_format=torch.channels_last)
    if cpu_kernels:
        use_cpu_kernels(fast, dtype)
    return fast
