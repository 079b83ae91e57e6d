"""The fast inference path computes the reference function: BatchNorm folding and
channels-last agree with the plain module within 1e-4 (here far tighter) on the official
reference vectors and on random inputs and weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lama_core import Inpainter, build_generator
from lama_core.fast_inference import fold_batchnorm, optimize_for_inference

from test_reference_vectors import CONFIGS, load_reference


def perturbed(preset: str, seed: int = 0):
    """Random weights with non-trivial BatchNorm statistics and affine parameters."""
    torch.manual_seed(seed)
    gen = build_generator(preset)
    with torch.no_grad():
        for name, tensor in gen.state_dict().items():
            if name.endswith("running_mean"):
                tensor.uniform_(-0.3, 0.3)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif tensor.is_floating_point() and (".bn" in name or name.endswith(("conv1.1.weight", "conv1.1.bias"))):
                tensor.add_(torch.randn_like(tensor) * 0.1)
    return gen.eval()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_path_reproduces_official_vectors(reference_dir, name):
    generator, data = load_reference(reference_dir, name)
    fast = optimize_for_inference(generator, channels_last=True)
    x = torch.from_numpy(data["generator_input"]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = fast(x).numpy()
    assert np.abs(out - data["generator_output"]).max() <= 1e-5
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())


@pytest.mark.parametrize("preset,size", [("small", (72, 96)), ("big-lama", (64, 64))])
def test_fast_path_matches_reference_on_random_inputs(preset, size):
    reference = perturbed(preset)
    x = torch.rand(2, 4, *size)
    x[:, 3:] = (x[:, 3:] > 0.6).float()
    with torch.inference_mode():
        expected = reference(x)
        folded = fold_batchnorm(reference)(x)
        fast = optimize_for_inference(reference)(x.contiguous(memory_format=torch.channels_last))
    assert (folded - expected).abs().max().item() <= 1e-4
    assert (fast - expected).abs().max().item() <= 1e-4


def test_inpainter_fast_and_plain_agree():
    generator = perturbed("small", seed=1)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    masks = [np.zeros((40, 56), np.uint8) for _ in range(3)]
    for m in masks:
        m[10:30, 5:40] = 255
    fast = Inpainter(generator, fold_batchnorm=True, channels_last=True)(images, masks)
    plain = Inpainter(generator, fold_batchnorm=False)(images, masks)
    for a, b in zip(fast, plain):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # The original module is untouched by the folding.
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules())


def test_bf16_mode_stays_within_40_db_of_fp32():
    """The reduced-precision mode's quality bound (its speed is a benchmark's business)."""
    generator = perturbed("small", seed=2)
    image = torch.rand(2, 3, 64, 80)
    mask = (torch.rand(2, 1, 64, 80) > 0.5).float()
    fp32 = Inpainter(generator).predict(image, mask)
    bf16 = Inpainter(generator, precision="bf16", channels_last=True).predict(image, mask)
    assert bf16.dtype == torch.float32
    mse = torch.mean((bf16 - fp32) ** 2).item()
    assert 10 * np.log10(1 / mse) >= 40
