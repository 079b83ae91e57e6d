"""LPIPS v0.1 (Zhang et al. 2018), reimplemented to give the ``lpips`` package's numbers.

Backbone: torchvision's VGG16 or AlexNet ``features`` up to the fifth tapped ReLU,
loaded from the standard torchvision files (``vgg16-397923af.pth``,
``alexnet-owt-7be5be79.pth``). On each tapped activation: unit-normalise over channels,
squared difference, a learned 1x1 head ``lin{i}`` (the v0.1 heads ``vgg.pth`` /
``alex.pth``, same key names), spatial mean, sum over layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torchvision
from torch import nn

from ..checkpoint import load_state_checked
from .weights import read_weights, resolve_weight


@dataclass(frozen=True)
class _Backbone:
    build: Callable[..., nn.Module]  # torchvision constructor
    taps: tuple[int, ...]  # indices in ``features`` whose outputs LPIPS compares (ReLUs)
    channels: tuple[int, ...]
    weights: str  # resolve_weight names: backbone, heads
    heads: str


BACKBONES = {
    # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    "vgg": _Backbone(torchvision.models.vgg16, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512), "vgg16", "lpips_vgg"),
    # relu1..relu5
    "alex": _Backbone(torchvision.models.alexnet, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256), "alexnet", "lpips_alex"),
}


def _features(backbone: _Backbone) -> nn.Sequential:
    """torchvision's ``features`` up to the last tap, keeping torchvision's layer indices
    (so ``features.N.weight`` keys of the standard files load as they are)."""
    # Built on the meta device: the classifier (100 M+ parameters for VGG) is never allocated.
    with torch.device("meta"):
        features = backbone.build(weights=None).features[: backbone.taps[-1] + 1]
    features.to_empty(device="cpu")
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()  # defined values until real weights are loaded
    return features


class _Head(nn.Module):
    """1x1 conv, no bias, C -> 1. Index 0 stands where the lpips package has a Dropout
    (only active while training heads), so the weight's key is ``model.1.weight`` as in the v0.1 files."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit_normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS distance. ``forward(pred, target)``: two float ``N x 3 x H x W`` tensors in
    [0, 1] (converted to [-1, 1] inside), at least 32 x 32 (AlexNet's pooling) -> ``(N,)`` float32,
    lower = more similar. Weights come from ``load_lpips``; a bare ``LPIPS(net)`` is randomly
    initialised."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"LPIPS net must be one of {sorted(BACKBONES)}, got {net!r}")
        self.net = net
        backbone = BACKBONES[net]
        self.taps = backbone.taps
        self.features = _features(backbone)
        for i, channels in enumerate(backbone.channels):
            self.add_module(f"lin{i}", _Head(channels))
        # The lpips package's ScalingLayer (ImageNet statistics in [-1, 1] units); not in any file.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.ndim != 4 or pred.shape[1] != 3 or pred.shape != target.shape:
            raise ValueError(f"expected two N x 3 x H x W images, got {tuple(pred.shape)} and {tuple(target.shape)}")
        feats0 = self._taps(((2 * pred.float() - 1) - self.shift) / self.scale)
        feats1 = self._taps(((2 * target.float() - 1) - self.shift) / self.scale)
        total = 0
        for i, (f0, f1) in enumerate(zip(feats0, feats1)):
            diff = (_unit_normalize(f0) - _unit_normalize(f1)) ** 2
            total = total + getattr(self, f"lin{i}")(diff).mean(dim=(2, 3), keepdim=True)
        return total.flatten()


def load_lpips(net: str = "vgg", weights_dir: str | None = None, backbone_path: str | None = None,
               heads_path: str | None = None, device: str | torch.device = "cpu") -> LPIPS:
    """Build LPIPS v0.1 for ``net`` (``"vgg"``, the paper's protocol, or ``"alex"``): the
    backbone from the torchvision file (``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``,
    only its ``features.*`` weights are used) and the heads (``vgg.pth`` / ``alex.pth``),
    each found by ``resolve_weight`` in ``weights_dir`` or at the explicit path. Eval mode,
    no gradients, on ``device``. Raises ``FileNotFoundError`` for a missing file and
    ``CheckpointError`` when keys or shapes do not fit."""
    model = LPIPS(net)
    backbone = BACKBONES[net]
    backbone_uri = resolve_weight(backbone.weights, weights_dir, backbone_path)
    heads_uri = resolve_weight(backbone.heads, weights_dir, heads_path)
    state = {k: v for k, v in read_weights(backbone_uri)[0].items() if k.startswith("features.")}
    heads = read_weights(heads_uri)[0]
    load_state_checked(model, {**state, **heads}, f"{backbone_uri} + {heads_uri}", f"LPIPS-{net}")
    return model.to(device)
