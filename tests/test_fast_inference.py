"""The fast inference path computes the reference function: BatchNorm folding,
channels-last and Winograd convolutions agree with the plain module within 1e-4 (here far
tighter) on the official reference vectors and on random inputs and weights."""
from __future__ import annotations

import copy
import platform

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from lama_core import Inpainter, build_generator, load_generator
from lama_core.cpu_allocator import keep_freed_memory
from lama_core.fast_inference import SpaceToDepthConv, WinogradFFC, fold_batchnorm, optimize_for_inference
from lama_core.masks import generate_mask
from lama_core.winograd import F2X2, F4X4, tile_for, winograd_input, winograd_output, winograd_products, winograd_weight

from reference_vectors import CONFIGS, load_reference


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


@pytest.fixture
def winograd_always(monkeypatch):
    """Winograd on every map size (the fixtures' maps are below its production cut-off)."""
    monkeypatch.setattr(WinogradFFC, "MIN_PIXELS", 0)


@pytest.mark.parametrize("cpu_kernels", [False, True])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_path_reproduces_official_vectors(reference_dir, name, cpu_kernels, winograd_always):
    generator, data = load_reference(reference_dir, name)
    fast = optimize_for_inference(generator, channels_last=True, cpu_kernels=cpu_kernels)
    x = torch.from_numpy(data["generator_input"]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = fast(x).numpy()
    assert np.abs(out - data["generator_output"]).max() <= 1e-5
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    n_winograd = sum(isinstance(m, WinogradFFC) for m in fast.modules())
    assert n_winograd == (2 * generator.config.n_blocks if cpu_kernels else 0)
    assert sum(isinstance(m, SpaceToDepthConv) for m in fast.modules()) == int(cpu_kernels)


@pytest.mark.parametrize("preset,size", [("small", (72, 96)), ("big-lama", (64, 64)), ("big-lama", (40, 56))])
def test_fast_path_matches_the_plain_generator_on_random_inputs(preset, size, winograd_always):
    plain = perturbed(preset)
    x = torch.rand(2, 4, *size)
    x[:, 3:] = (x[:, 3:] > 0.6).float()
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = plain(x)
        folded = fold_batchnorm(plain)(x)
        fast = optimize_for_inference(plain)(x_cl)
        winograd = optimize_for_inference(plain, cpu_kernels=True)(x_cl)
    assert (folded - expected).abs().max().item() <= 1e-4
    assert (fast - expected).abs().max().item() <= 1e-4
    # (40, 56) puts an odd 5x7 map through the blocks: the padded-tile path.
    assert (winograd - expected).abs().max().item() <= 1e-4


def test_small_maps_take_the_direct_convolutions(monkeypatch):
    reference = perturbed("small", seed=4)
    folded = optimize_for_inference(reference)
    winograd = optimize_for_inference(reference, cpu_kernels=True)
    x = torch.rand(1, 4, 64, 64).contiguous(memory_format=torch.channels_last)  # 8x8 bottleneck
    calls = []
    monkeypatch.setattr("lama_core.fast_inference.winograd_input", lambda *a: calls.append(a) or winograd_input(*a))
    with torch.inference_mode():
        assert (winograd(x) - folded(x)).abs().max().item() <= 1e-5 and not calls
        monkeypatch.setattr(WinogradFFC, "MIN_PIXELS", 64)
        assert (winograd(x) - folded(x)).abs().max().item() <= 1e-5 and calls


@pytest.mark.parametrize("band_pixels", [48, 96])
def test_winograd_bands_tile_the_whole_map(monkeypatch, winograd_always, band_pixels):
    """Band by band (one 4-pixel tile row of the 12-pixel-wide map, then uneven bands of two)
    over a batch and a map whose height (9) is no multiple of the tile gives the direct
    convolutions' result."""
    monkeypatch.setattr(WinogradFFC, "BAND_PIXELS", band_pixels)
    reference = perturbed("small", seed=5)
    x = torch.rand(2, 4, 72, 96).contiguous(memory_format=torch.channels_last)  # 9x12 bottleneck
    with torch.inference_mode():
        expected = optimize_for_inference(reference)(x)
        got = optimize_for_inference(reference, cpu_kernels=True)(x)
    assert (got - expected).abs().max().item() <= 1e-5


def test_keep_freed_memory_applies_once_where_malloc_is_glibc():
    first = keep_freed_memory()
    assert first is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    assert keep_freed_memory() is first


@pytest.mark.parametrize("k,size", [(7, (18, 22)), (7, (13, 10)), (3, (5, 4)), (5, (9, 9))])
def test_space_to_depth_conv_equals_the_conv_it_replaces(k, size):
    torch.manual_seed(6)
    conv = torch.nn.Conv2d(6, 3, k).double()
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    s2d = SpaceToDepthConv(copy.deepcopy(conv).float())
    got = s2d(x.float().contiguous(memory_format=torch.channels_last))
    with torch.no_grad():
        expected = conv(x)
    assert got.shape == expected.shape
    assert (got.double() - expected).abs().max().item() <= 1e-5
    assert SpaceToDepthConv.eligible(conv)
    assert not SpaceToDepthConv.eligible(torch.nn.Conv2d(6, 16, k))
    assert not SpaceToDepthConv.eligible(torch.nn.Conv2d(6, 3, k, padding=1))


@pytest.mark.parametrize("tile", [F2X2, F4X4], ids=["F2x2", "F4x4"])
@pytest.mark.parametrize("size", [(8, 8), (12, 20), (7, 9), (1, 1)])
def test_winograd_convolution_equals_direct_convolution(size, tile):
    """Transforms, batched products, their accumulation and bias placement against F.conv2d
    in float64 terms, for both tiles."""
    torch.manual_seed(3)
    c_in, c_out = 5, 6
    x = torch.randn(2, c_in, *size, dtype=torch.float64)
    weight, bias = torch.randn(c_out, c_in, 3, 3, dtype=torch.float64), torch.randn(c_out, dtype=torch.float64)
    padded = F.pad(x, (1, 1, 1, 1))
    expected = F.conv2d(padded, weight, bias)
    h, w = size
    m = tile.m
    even = F.pad(padded, (0, -w % m, 0, -h % m)).float().contiguous(memory_format=torch.channels_last)
    products = winograd_products(winograd_input(even, tile), winograd_weight(weight, tile), bias.float(), tile=tile)
    out = winograd_output(products, tile)[..., :h, :w]
    assert out.shape == expected.shape
    assert (out.double() - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
    # Accumulating into earlier products is the sum of the two convolutions.
    tiles, other = winograd_input(even, tile), torch.randn(c_out, c_in, 3, 3, dtype=torch.float64)
    summed = winograd_products(tiles, winograd_weight(weight, tile),
                               out=winograd_products(tiles, winograd_weight(other, tile), tile=tile), tile=tile)
    both = winograd_output(summed, tile)[..., :h, :w].double()
    assert (both - F.conv2d(padded, weight + other)).abs().max().item() <= 1e-5 * expected.abs().max().item()
    with pytest.raises(ValueError, match=f"divisible by {m}"):
        winograd_input(torch.zeros(1, 1, m + 3, m + 4), tile)
    with pytest.raises(ValueError, match="3x3"):
        winograd_weight(torch.zeros(2, 2, 5, 5), tile)


def test_each_precision_gets_its_winograd_tile():
    """F(4x4) in fp32; bf16 keeps F(2x2), whose smaller coefficients round less."""
    assert tile_for(torch.float32) is F4X4 and tile_for(torch.bfloat16) is F2X2
    generator = perturbed("small", seed=2)
    for precision, tile in (("fp32", F4X4), ("bf16", F2X2)):
        inpainter = Inpainter(generator, device="cpu", precision=precision)
        tiles = {m.tile for m in inpainter.generator.modules() if isinstance(m, WinogradFFC)}
        assert tiles == {tile}


def test_inpainter_fast_and_plain_agree():
    generator = perturbed("small", seed=1)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    masks = [np.zeros((40, 56), np.uint8) for _ in range(3)]
    for m in masks:
        m[10:30, 5:40] = 255
    generator.train()
    state = {k: v.clone() for k, v in generator.state_dict().items()}
    fast_inpainter = Inpainter(generator, fold_batchnorm=True, channels_last=True)
    assert any(isinstance(m, WinogradFFC) for m in fast_inpainter.generator.modules())  # on by default on CPU
    fast = fast_inpainter(images, masks)
    plain = Inpainter(generator, fold_batchnorm=False, channels_last=True, cpu_kernels=False)(images, masks)
    for a, b in zip(fast, plain):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # Neither path changes the caller's module: mode, layout, weights.
    assert generator.training
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules())
    assert all(p.is_contiguous() for p in generator.parameters())
    assert all(torch.equal(v, state[k]) for k, v in generator.state_dict().items())
    with pytest.raises(ValueError, match="fold_batchnorm"):
        Inpainter(generator, fold_batchnorm=False, cpu_kernels=True)


def test_bf16_mode_stays_within_40_db_of_fp32():
    """The reduced-precision mode's quality bound (its speed is a benchmark's business), on
    the shipped trained checkpoint and a real photo: random weights give near-constant
    outputs that flatter any PSNR. Measured over the holes only (the known pixels are
    copied from the input either way)."""
    generator = load_generator(str(Path(__file__).resolve().parents[1] / "assets" / "lama-small-demo"))
    photo = np.array(Image.fromarray(skimage.data.astronaut()).resize((192, 192)))
    image = torch.from_numpy(photo).permute(2, 0, 1).float()[None] / 255
    mask = torch.from_numpy(generate_mask("thick_512", 0, 0, 192, 192).astype(np.float32))[None, None]
    fp32 = Inpainter(generator).predict(image, mask)
    bf16 = Inpainter(generator, precision="bf16").predict(image, mask)
    assert bf16.dtype == torch.float32
    hole = mask.bool().expand_as(fp32)
    assert hole.float().mean() > 0.1
    mse = torch.mean((bf16[hole] - fp32[hole]) ** 2).item()
    assert 10 * np.log10(1 / mse) >= 40
