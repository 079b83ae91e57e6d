"""Inference-only rewrites of a trained generator that keep its function.

``fold_batchnorm`` folds every eval-mode BatchNorm into the linear layer that feeds it:
in an FFC the local output ``bn_l(convl2l(x_l) + convg2l(x_g))`` is linear in both convs,
and the global output ``bn_g(convl2g(x_l) + SpectralTransform(x_g))`` ends in the
transform's 1×1 ``conv2``, so both BNs fold into conv weights plus one bias. The
transform's own conv+BN and the Fourier unit's conv+BN fold likewise, and so do the
upsampling transposed convs. What remains per layer is conv (+bias) and ReLU: fewer
passes over memory, identical arithmetic up to float rounding (max abs diff ~1e-6).

``optimize_for_inference`` applies the folding and, optionally, channels-last layout.
The result is for inference only: its BatchNorms are gone, so it cannot be trained.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .ffc import FFC_BN_ACT, FFCResNetGenerator, FourierUnit, SpectralTransform


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _with_bias(conv: nn.Conv2d, bias: torch.Tensor) -> nn.Conv2d:
    """A copy of ``conv`` carrying ``bias`` (added to any bias it had)."""
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, bias=True, padding_mode=conv.padding_mode)
    new.weight.data.copy_(conv.weight.data)
    new.bias.data.copy_(bias if conv.bias is None else conv.bias.data + bias)
    return new


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


def optimize_for_inference(generator: FFCResNetGenerator, channels_last: bool = True) -> FFCResNetGenerator:
    """``fold_batchnorm`` plus channels-last weights (oneDNN and cuDNN pick faster kernels
    for NHWC). Feed it ``x.contiguous(memory_format=torch.channels_last)`` for full effect;
    the ``Inpainter`` does when built with ``channels_last=True``."""
    fast = fold_batchnorm(generator)
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast
