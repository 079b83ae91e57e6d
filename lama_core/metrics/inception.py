"""The FID InceptionV3: pytorch-fid's port of the TensorFlow Inception graph.

FID numbers are only comparable with the paper's (and everyone else's) when computed with
this exact network: torchvision's Inception3 layout, with four blocks patched the way the
TF graph differs (``FIDInceptionA/C/E_1/E_2`` in pytorch-fid), and the weights
``pt_inception-2015-12-05-6726825d.pth``. Module names equal torchvision's, so that file
loads with ``strict=True``; the 1008-way ``fc`` is unused but kept for that reason.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE

from ..checkpoint import load_state_checked
from .weights import STANDARD_WEIGHT_FILES, read_weights, resolve_weight

FEATURE_DIM = 2048
INPUT_SIZE = 299


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's 3x3 average pool leaves the zero padding out of the average.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(InceptionA):
    """torchvision's InceptionA with TF's average pooling (padding excluded)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class FIDInceptionC(InceptionC):
    """torchvision's InceptionC with TF's average pooling (padding excluded)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class FIDInceptionE(InceptionE):
    """torchvision's InceptionE with the TF graph's pooling: ``pool="avg"`` (padding
    excluded) is pytorch-fid's ``FIDInceptionE_1`` (Mixed_7b); ``pool="max"`` is
    ``FIDInceptionE_2`` (Mixed_7c), where the TF graph has a max pool, likely by mistake,
    but the published FID numbers depend on it."""

    def __init__(self, in_channels: int, pool: str):
        super().__init__(in_channels)
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        if self.pool == "avg":
            pooled = _tf_avg_pool(x)
        else:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(pooled)
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)


class FIDInceptionV3(nn.Module):
    """pool3 features of the FID InceptionV3.

    ``forward``: ``N x 3 x H x W`` float in [0, 1] (any size) -> ``N x 2048`` float32.
    Like pytorch-fid's ``InceptionV3([3], resize_input=True, normalize_input=True)``, the
    input is resized bilinearly (no antialiasing) to 299 x 299, then mapped to [-1, 1].
    ``model_id`` names the weights (file and hash) for feature caches.
    """

    def __init__(self) -> None:
        super().__init__()
        self.model_id = "fid-inception-untrained"
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, 1008)  # the TF graph's 1008 classes; unused for FID
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W images in [0, 1], got {tuple(images.shape)}")
        # Resize first, then normalise: the order pytorch-fid uses (equal in exact arithmetic,
        # not bit for bit).
        x = F.interpolate(images.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                      self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2,
                      self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c, self.avgpool):
            x = layer(x)
        return x.flatten(1)


def load_inception(weights_dir: str | None = None, path: str | None = None,
                   device: str | torch.device = "cpu") -> FIDInceptionV3:
    """Build the FID InceptionV3 from ``pt_inception-2015-12-05-6726825d.pth`` found by
    ``resolve_weight("inception", weights_dir, path)``; eval mode, no gradients, on
    ``device``. Raises ``FileNotFoundError`` when the file is absent and
    ``CheckpointError`` when its keys or shapes do not fit."""
    uri = resolve_weight("inception", weights_dir, path)
    state, digest = read_weights(uri)
    model = FIDInceptionV3()
    # Files written before BatchNorm counted its batches lack these buffers; they are unused in eval.
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    load_state_checked(model, state, uri, "FID InceptionV3")
    model.model_id = f"{STANDARD_WEIGHT_FILES['inception']}:{digest[:16]}"
    return model.to(device)
