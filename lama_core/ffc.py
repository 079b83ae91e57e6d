"""Fast Fourier Convolution layers and the FFC ResNet generator of LaMa.

Module names and parameter layout follow the official implementation exactly, so an
official ``state_dict`` (big-lama, lama-fourier) loads with ``strict=True``. A feature
map flows through the network as a pair ``(local, global)``; a branch with no channels
is the integer ``0`` (as in the official code), never an empty tensor.

Shapes: the generator takes ``N x 4 x H x W`` (RGB * (1 - mask) in [0, 1], then the mask
with 1 = hole), H and W multiples of ``2 ** n_downsampling``, and returns ``N x 3 x H x W``
in [0, 1] (sigmoid).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

FeaturePair = tuple[torch.Tensor | int, torch.Tensor | int]


class FourierUnit(nn.Module):
    """Global mixing in the frequency domain: real FFT over H×W, a 1×1 conv + BN + ReLU on
    the stacked real/imaginary parts, inverse FFT back to the input size.

    ``N x C_in x H x W`` -> ``N x C_out x H x W``. The FFT runs in float32 even under
    autocast, because half-precision FFTs lose too much accuracy (and only support
    power-of-two sizes on GPU).
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1):
        super().__init__()
        self.groups = groups
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        dtype = x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            ffted = torch.fft.rfftn(x.float(), dim=(-2, -1), norm="ortho")
        # (N, C, H, W/2+1) complex -> (N, 2C, H, W/2+1) real, channel order (c0.re, c0.im, c1.re, ...)
        ffted = torch.stack((ffted.real, ffted.imag), dim=2).reshape(n, -1, h, ffted.shape[-1])
        # Back to the module's own dtype (a bf16 inference copy); under autocast the conv casts itself.
        ffted = self.relu(self.bn(self.conv_layer(ffted.to(self.conv_layer.weight.dtype))))
        ffted = ffted.float().reshape(n, -1, 2, h, ffted.shape[-1])
        with torch.autocast(device_type=x.device.type, enabled=False):
            spatial = torch.fft.irfftn(torch.complex(ffted[:, :, 0], ffted[:, :, 1]), s=(h, w), dim=(-2, -1), norm="ortho")
        return spatial.to(dtype)


class SpectralTransform(nn.Module):
    """The global-to-global branch: 1×1 conv halving channels, a FourierUnit (plus the
    local Fourier unit on 2×2 quadrants when ``enable_lfu``), residual sum, 1×1 conv.

    ``N x C_in x H x W`` -> ``N x C_out x H/stride x W/stride``. With LFU, the (post-stride)
    height must be even and equal to the width: the official code's constraint.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1, enable_lfu: bool = True):
        super().__init__()
        self.enable_lfu = enable_lfu
        self.downsample = nn.AvgPool2d(kernel_size=(2, 2), stride=2) if stride == 2 else nn.Identity()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, out_channels // 2, kernel_size=1, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels // 2),
            nn.ReLU(inplace=True),
        )
        self.fu = FourierUnit(out_channels // 2, out_channels // 2, groups)
        if enable_lfu:
            self.lfu = FourierUnit(out_channels // 2, out_channels // 2, groups)
        self.conv2 = nn.Conv2d(out_channels // 2, out_channels, kernel_size=1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.downsample(x))
        output = self.fu(x)
        if self.enable_lfu:
            _, c, h, w = x.shape
            if h != w or h % 2:
                raise ValueError(f"LFU needs a square feature map of even size, got {h}x{w}")
            half = h // 2
            # A quarter of the channels, cut into 2×2 spatial quadrants stacked on channels.
            xs = torch.cat(torch.split(x[:, : c // 4], half, dim=-2), dim=1)
            xs = torch.cat(torch.split(xs, half, dim=-1), dim=1).contiguous()
            xs = self.lfu(xs).repeat(1, 1, 2, 2)
            output = output + xs
        return self.conv2(x + output)


def _conv_or_identity(in_ch: int, out_ch: int, **kwargs) -> nn.Module:
    return nn.Identity() if in_ch == 0 or out_ch == 0 else nn.Conv2d(in_ch, out_ch, **kwargs)


class FFC(nn.Module):
    """Fast Fourier Convolution: four paths local→local, local→global, global→local (plain
    convs) and global→global (``SpectralTransform``) over a channel split given by
    ``ratio_gin`` / ``ratio_gout``.

    Input and output are ``(local, global)`` pairs; the global share of ``C`` channels is
    ``int(C * ratio)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float,
        ratio_gout: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        enable_lfu: bool = True,
        padding_type: str = "reflect",
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FFC stride must be 1 or 2, got {stride}")
        in_cg = int(in_channels * ratio_gin)
        in_cl = in_channels - in_cg
        out_cg = int(out_channels * ratio_gout)
        out_cl = out_channels - out_cg
        self.ratio_gin = ratio_gin
        self.ratio_gout = ratio_gout
        conv = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups,
                    bias=bias, padding_mode=padding_type)
        self.convl2l = _conv_or_identity(in_cl, out_cl, **conv)
        self.convl2g = _conv_or_identity(in_cl, out_cg, **conv)
        self.convg2l = _conv_or_identity(in_cg, out_cl, **conv)
        self.convg2g = (nn.Identity() if in_cg == 0 or out_cg == 0 else
                        SpectralTransform(in_cg, out_cg, stride, 1 if groups == 1 else groups // 2, enable_lfu))

    def forward(self, x: torch.Tensor | FeaturePair) -> FeaturePair:
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        out_l: torch.Tensor | int = 0
        out_g: torch.Tensor | int = 0
        if self.ratio_gout != 1:
            out_l = self.convl2l(x_l) + self.convg2l(x_g)
        if self.ratio_gout != 0:
            out_g = self.convl2g(x_l) + self.convg2g(x_g)
        return out_l, out_g


class FFC_BN_ACT(nn.Module):
    """An ``FFC`` followed by BatchNorm and an activation on each branch that has channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float,
        ratio_gout: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        activation_layer: type[nn.Module] = nn.Identity,
        padding_type: str = "reflect",
        enable_lfu: bool = True,
    ):
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, kernel_size, ratio_gin, ratio_gout, stride, padding, dilation,
                       groups, bias, enable_lfu, padding_type=padding_type)
        global_channels = int(out_channels * ratio_gout)
        self.bn_l = nn.Identity() if ratio_gout == 1 else nn.BatchNorm2d(out_channels - global_channels)
        self.bn_g = nn.Identity() if ratio_gout == 0 else nn.BatchNorm2d(global_channels)
        self.act_l = nn.Identity() if ratio_gout == 1 else activation_layer(inplace=True)
        self.act_g = nn.Identity() if ratio_gout == 0 else activation_layer(inplace=True)

    def forward(self, x: torch.Tensor | FeaturePair) -> FeaturePair:
        x_l, x_g = self.ffc(x)
        return self.act_l(self.bn_l(x_l)), self.act_g(self.bn_g(x_g))


class FFCResnetBlock(nn.Module):
    """Two 3×3 ``FFC_BN_ACT`` layers with a residual connection on both branches."""

    def __init__(self, dim: int, ratio_gin: float, ratio_gout: float, enable_lfu: bool = False,
                 padding_type: str = "reflect", dilation: int = 1):
        super().__init__()
        kwargs = dict(kernel_size=3, padding=dilation, dilation=dilation, activation_layer=nn.ReLU,
                      padding_type=padding_type, ratio_gin=ratio_gin, ratio_gout=ratio_gout, enable_lfu=enable_lfu)
        self.conv1 = FFC_BN_ACT(dim, dim, **kwargs)
        self.conv2 = FFC_BN_ACT(dim, dim, **kwargs)

    def forward(self, x: torch.Tensor | FeaturePair) -> FeaturePair:
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        y_l, y_g = self.conv2(self.conv1((x_l, x_g)))
        return x_l + y_l, x_g + y_g


class ConcatTupleLayer(nn.Module):
    """Joins a ``(local, global)`` pair back into one tensor along channels."""

    def forward(self, x: FeaturePair) -> torch.Tensor:
        x_l, x_g = x
        if not torch.is_tensor(x_g):
            return x_l  # type: ignore[return-value]
        if not torch.is_tensor(x_l):
            return x_g
        return torch.cat((x_l, x_g), dim=1)


@dataclass
class FFCConvOptions:
    """Channel split of one group of FFC layers: global share of inputs and outputs, LFU."""

    ratio_gin: float = 0.0
    ratio_gout: float = 0.0
    enable_lfu: bool = False


@dataclass
class GeneratorConfig:
    """Hyper-parameters of ``FFCResNetGenerator`` (the official ``FFCResNetGenerator`` args
    that the released checkpoints use)."""

    input_nc: int = 4
    output_nc: int = 3
    ngf: int = 64
    n_downsampling: int = 3
    n_blocks: int = 18
    max_features: int = 1024
    add_out_act: str = "sigmoid"
    init_conv_kwargs: FFCConvOptions = field(default_factory=FFCConvOptions)
    downsample_conv_kwargs: FFCConvOptions = field(default_factory=FFCConvOptions)
    resnet_conv_kwargs: FFCConvOptions = field(default_factory=lambda: FFCConvOptions(0.75, 0.75, False))


class FFCResNetGenerator(nn.Module):
    """LaMa's generator: reflect-pad + 7×7 FFC, strided FFC downsamplings, FFC ResNet
    blocks at the bottleneck, transposed-conv upsamplings, 7×7 conv, sigmoid.

    ``forward(x)``: ``N x input_nc x H x W`` float -> ``N x output_nc x H x W`` in [0, 1];
    H, W multiples of ``2 ** n_downsampling`` (the ``Inpainter`` pads for you).
    Submodules sit in one ``nn.Sequential`` named ``model`` so state-dict keys match the
    official ``model.<index>...`` layout.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c = config
        init, down, res = c.init_conv_kwargs, c.downsample_conv_kwargs, c.resnet_conv_kwargs
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            FFC_BN_ACT(c.input_nc, c.ngf, kernel_size=7, padding=0, activation_layer=nn.ReLU,
                       ratio_gin=init.ratio_gin, ratio_gout=init.ratio_gout, enable_lfu=init.enable_lfu),
        ]
        for i in range(c.n_downsampling):
            mult = 2 ** i
            # The last downsampling already produces the bottleneck's global share.
            ratio_gout = res.ratio_gin if i == c.n_downsampling - 1 else down.ratio_gout
            layers.append(FFC_BN_ACT(min(c.max_features, c.ngf * mult), min(c.max_features, c.ngf * mult * 2),
                                     kernel_size=3, stride=2, padding=1, activation_layer=nn.ReLU,
                                     ratio_gin=down.ratio_gin, ratio_gout=ratio_gout, enable_lfu=down.enable_lfu))
        bottleneck = min(c.max_features, c.ngf * 2 ** c.n_downsampling)
        for _ in range(c.n_blocks):
            layers.append(FFCResnetBlock(bottleneck, res.ratio_gin, res.ratio_gout, res.enable_lfu))
        layers.append(ConcatTupleLayer())
        for i in range(c.n_downsampling):
            mult = 2 ** (c.n_downsampling - i)
            out_ch = min(c.max_features, int(c.ngf * mult / 2))
            layers += [
                nn.ConvTranspose2d(min(c.max_features, c.ngf * mult), out_ch, kernel_size=3, stride=2, padding=1,
                               output_padding=1),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c.ngf, c.output_nc, kernel_size=7, padding=0)]
        if c.add_out_act == "sigmoid":
            layers.append(nn.Sigmoid())
        elif c.add_out_act == "tanh":
            layers.append(nn.Tanh())
        elif c.add_out_act not in ("", "none"):
            raise ValueError(f"unknown output activation {c.add_out_act!r} (sigmoid, tanh or none)")
        self.model = nn.Sequential(*layers)

    @property
    def size_multiple(self) -> int:
        """H and W of the input must be multiples of this (8 for big-lama)."""
        return 2 ** self.config.n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
