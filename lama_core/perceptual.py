"""LaMa's high-receptive-field (HRF) perceptual loss and its frozen encoder.

The loss is the official ``ResNetPL`` (advimman/lama ``saicinpainting/training/losses/
perceptual.py``): both images are normalised with ImageNet mean/std, passed through the
encoder of the MIT CSAIL ADE20k segmentation model ``resnet50dilated``, and the loss is the
sum over the encoder's four stages of ``mse(pred_feat, target_feat)``, times the weight
(30 for big-lama).

The encoder is the semantic-segmentation-pytorch ``ResnetDilated(resnet50, dilate_scale=8)``:
a deep stem (three 3×3 convs: 3→64 stride 2, 64→64, 64→128, each BN + ReLU), a 3×3/2
max-pool, then ResNet-50's Bottleneck stages ``layer1..layer4`` (3, 4, 6, 3 blocks), with
``layer3`` and ``layer4`` turned from stride 2 into dilation 2 and 4 (the ``_nostride_dilate``
trick), so the output stride is 8 and the receptive field is large.

Weights file: the official ``ade20k/ade20k-resnet50dilated-ppm/encoder_epoch_20.pth``
(``ENCODER_FILE``). semantic-segmentation-pytorch saves it as ``net_encoder.state_dict()``
of the ``ResnetDilated`` module, which copies the ResNet's submodules onto itself, so its
keys carry no prefix and match ``ResNet50DilatedEncoder().state_dict()`` exactly::

    conv1.weight, bn1.{weight,bias,running_mean,running_var[,num_batches_tracked]},
    conv2.weight, bn2.*, conv3.weight, bn3.*,
    layer1.0.conv1.weight, layer1.0.bn1.*, ... layer1.0.conv3.weight, layer1.0.bn3.*,
    layer1.0.downsample.0.weight, layer1.0.downsample.1.*, ... layer4.2.bn3.*

(``ENCODER_KEY_EXAMPLES`` lists some; there is no ``fc``/``avgpool`` and no ``encoder.``
prefix). ``num_batches_tracked`` is optional (files saved by PyTorch < 0.4.1 lack it, and eval
mode never reads it); a ``module.`` prefix from a ``DataParallel`` save is stripped.
"""
from __future__ import annotations

import io
import pickle

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, load_state_checked
from .storage import filesystem_for, join_uri, read_bytes

#: Where the official encoder weights live under a ``weights_dir`` (LaMa's ``TORCH_HOME`` layout).
ENCODER_FILE = "ade20k/ade20k-resnet50dilated-ppm/encoder_epoch_20.pth"
#: A few of the official file's keys, as documentation and for tests.
ENCODER_KEY_EXAMPLES = ("conv1.weight", "bn1.running_var", "conv3.weight", "bn3.bias", "layer1.0.conv1.weight",
                        "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_mean",
                        "layer3.5.conv2.weight", "layer4.2.bn3.weight")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck (1×1, 3×3, 1×1 convs; stride on the 3×3), as in semseg's resnet.py."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def _conv3x3_bn_relu(cin: int, cout: int, stride: int = 1) -> tuple[nn.Module, nn.Module, nn.Module]:
    return (nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True))


def _nostride_dilate(module: nn.Module, dilate: int) -> None:
    """semseg's ``ResnetDilated._nostride_dilate``: strided convs lose their stride (3×3 ones
    get dilation ``dilate // 2``), other 3×3 convs get dilation ``dilate``; padding follows."""
    if not isinstance(module, nn.Conv2d):
        return
    if module.stride == (2, 2):
        module.stride = (1, 1)
        if module.kernel_size == (3, 3):
            module.dilation = module.padding = (dilate // 2, dilate // 2)
    elif module.kernel_size == (3, 3):
        module.dilation = module.padding = (dilate, dilate)


class ResNet50DilatedEncoder(nn.Module):
    """The ADE20k ``resnet50dilated`` encoder (see the module docstring).

    ``forward(x)``: ``N x 3 x H x W`` float, ImageNet-normalised -> list of the four stage
    outputs ``[N x 256 x H/4 x W/4, N x 512 x H/8 x W/8, N x 1024 x H/8 x W/8,
    N x 2048 x H/8 x W/8]`` (sizes rounded up for H, W not multiples of 8).
    """

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3)):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = _conv3x3_bn_relu(3, 64, stride=2)
        self.conv2, self.bn2, self.relu2 = _conv3x3_bn_relu(64, 64)
        self.conv3, self.bn3, self.relu3 = _conv3x3_bn_relu(64, 128)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = 128  # the deep stem ends with 128 channels, not ResNet's usual 64
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        # dilate_scale=8: output stride 8 instead of 32, same weights.
        self.layer3.apply(lambda m: _nostride_dilate(m, 2))
        self.layer4.apply(lambda m: _nostride_dilate(m, 4))

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


def encoder_weights_uri(path_or_weights_dir: str, endpoint_url: str | None = None) -> str:
    """The encoder file for a path/URI: the file itself, or ``DIR/ENCODER_FILE`` when it is a
    directory (a ``weights_dir``)."""
    fs, path = filesystem_for(path_or_weights_dir, endpoint_url)
    if fs.isdir(path):
        return join_uri(path_or_weights_dir, ENCODER_FILE)
    return path_or_weights_dir


def _clean_state(state: dict, model: nn.Module) -> dict[str, torch.Tensor]:
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    state = dict(state)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value  # never read in eval mode; absent from very old files
    return state


def load_ade20k_encoder(path_or_weights_dir: str, endpoint_url: str | None = None) -> ResNet50DilatedEncoder:
    """Build the ADE20k ResNet-50-dilated encoder and load the official weights.

    ``path_or_weights_dir``: the ``encoder_epoch_20.pth`` file itself, or a ``weights_dir``
    holding ``ENCODER_FILE``; a local path or fsspec URI. Read with ``torch.load(...,
    weights_only=True)`` (the file is a plain state dict: no code runs). Returns the encoder
    frozen (``requires_grad=False``) in eval mode on the CPU.

    Raises ``FileNotFoundError`` naming the expected file, or ``CheckpointError`` when the
    file is not a state dict of this encoder (missing/unexpected keys, wrong shapes).
    """
    uri = encoder_weights_uri(path_or_weights_dir, endpoint_url)
    try:
        data = read_bytes(uri, endpoint_url)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"HRF perceptual loss: encoder weights not found at {uri}. It needs the official LaMa/ADE20k file "
            f"'{ENCODER_FILE}' (semantic-segmentation-pytorch resnet50dilated-ppm, encoder_epoch_20.pth) under "
            "weights_dir (default $TORCH_HOME/hub/checkpoints), or its explicit path in the perceptual weights "
            "setting; set that setting to None to train without the HRF loss.") from exc
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"cannot read HRF encoder weights {uri}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''} (not a PyTorch state dict?)") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{uri} is not a state dict (top level is {type(state).__name__})")
    encoder = ResNet50DilatedEncoder()
    load_state_checked(encoder, _clean_state(state, encoder), uri,
                       f"ADE20k resnet50dilated encoder (expected keys like {', '.join(ENCODER_KEY_EXAMPLES[:4])})")
    return encoder.eval().requires_grad_(False)


class HRFPerceptualLoss(nn.Module):
    """Official ``ResNetPL``: ``weight * sum_stages mse(E(norm(pred)), E(norm(target)))``.

    ``forward(pred, target)``: both ``N x 3 x H x W`` float in [0, 1] (``pred`` is the raw
    generator output) -> ``(loss scalar fp32, {"gen_resnet_pl": loss})``. Gradients flow to
    ``pred`` only; the encoder is frozen and stays in eval mode even when this module is
    switched to train mode (BatchNorm must use the ADE20k running statistics).
    """

    def __init__(self, encoder: ResNet50DilatedEncoder, weight: float = 30.0):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.weight = float(weight)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_weights(cls, path_or_weights_dir: str, weight: float = 30.0,
                     endpoint_url: str | None = None) -> HRFPerceptualLoss:
        """Load the official encoder (see ``load_ade20k_encoder``) and wrap it."""
        return cls(load_ade20k_encoder(path_or_weights_dir, endpoint_url), weight)

    def train(self, mode: bool = True) -> HRFPerceptualLoss:
        super().train(mode)
        self.encoder.eval()  # frozen statistics, whatever the surrounding mode
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pred_feats = self.encoder((pred - self.mean) / self.std)
        with torch.no_grad():  # same value as the official code; the target needs no graph
            target_feats = self.encoder((target - self.mean) / self.std)
        # fp32 reduction: under bf16 autocast the features are bf16 and their squared
        # differences would lose most of their precision in the mean.
        value = torch.stack([F.mse_loss(p.float(), t.float()) for p, t in zip(pred_feats, target_feats)]).sum()
        value = value * self.weight
        return value, {"gen_resnet_pl": value.detach()}


__all__ = ["ENCODER_FILE", "ENCODER_KEY_EXAMPLES", "ResNet50DilatedEncoder", "HRFPerceptualLoss",
           "load_ade20k_encoder", "encoder_weights_uri"]
