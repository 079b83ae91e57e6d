"""Weights the tests generate in place of pretrained files that cannot be downloaded here."""
from __future__ import annotations

import math

import torch


def random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A seeded state dict for ``module``: He-scaled conv/linear weights, non-trivial
    BatchNorm statistics and affine parameters, small biases; float32 on the CPU."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(value)
        elif key.endswith("running_var") or (key.endswith(".weight") and value.ndim == 1):
            state[key] = 0.5 + torch.rand(value.shape, generator=g)
        elif value.ndim == 1:  # biases, running means
            state[key] = 0.1 * torch.randn(value.shape, generator=g)
        else:
            state[key] = torch.randn(value.shape, generator=g) * math.sqrt(2.0 / value[0].numel())
    return state
