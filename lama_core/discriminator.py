"""PatchGAN N-layer discriminator (pix2pixHD style), as LaMa trains it.

Submodules are ``model0 .. model{n_layers+1}`` so the official ``discriminator.*`` keys of a
LaMa checkpoint load unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DiscriminatorConfig:
    """``NLayerDiscriminator`` hyper-parameters (official big-lama: 3 inputs, ndf 64, 4 layers)."""

    input_nc: int = 3
    ndf: int = 64
    n_layers: int = 4


class NLayerDiscriminator(nn.Module):
    """PatchGAN: stride-2 4×4 convs (LeakyReLU 0.2, BatchNorm after the first), one stride-1
    conv, then a 1-channel 4×4 conv giving per-patch logits.

    ``forward(x)``: ``N x input_nc x H x W`` in [0, 1] -> ``(logits N x 1 x h x w,
    [feature maps of every layer but the last])``; the features feed the feature-matching loss.
    """

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        kw, padw = 4, 2
        nf = config.ndf
        blocks: list[list[nn.Module]] = [[nn.Conv2d(config.input_nc, nf, kw, stride=2, padding=padw),
                                          nn.LeakyReLU(0.2, True)]]
        for _ in range(1, config.n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            blocks.append([nn.Conv2d(nf_prev, nf, kw, stride=2, padding=padw), nn.BatchNorm2d(nf),
                           nn.LeakyReLU(0.2, True)])
        nf_prev, nf = nf, min(nf * 2, 512)
        blocks.append([nn.Conv2d(nf_prev, nf, kw, stride=1, padding=padw), nn.BatchNorm2d(nf), nn.LeakyReLU(0.2, True)])
        blocks.append([nn.Conv2d(nf, 1, kw, stride=1, padding=padw)])
        self.num_blocks = len(blocks)
        for i, block in enumerate(blocks):
            setattr(self, f"model{i}", nn.Sequential(*block))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for i in range(self.num_blocks):
            x = getattr(self, f"model{i}")(x)
            feats.append(x)
        return feats[-1], feats[:-1]
