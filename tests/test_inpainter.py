"""The Inpainter on arbitrary sizes and input kinds, with exact known pixels and clear errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from lama_core import Inpainter, InpaintInputError, build_generator


@pytest.fixture(scope="module")
def inpainter():
    torch.manual_seed(0)
    return Inpainter(build_generator("small"), batch_size=3)


def random_case(rng, h, w):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4: h // 2, w // 3: w // 2 + 1] = 255
    return image, mask


def test_known_pixels_are_bit_exact_and_hole_changes(inpainter):
    rng = np.random.default_rng(0)
    cases = [random_case(rng, h, w) for h, w in [(37, 53), (64, 64), (37, 53), (20, 130)]]
    results = inpainter.inpaint([c[0] for c in cases], [c[1] for c in cases])
    for (image, mask), result in zip(cases, results):
        assert result.image.shape == image.shape and result.image.dtype == np.uint8
        assert not result.resized
        known = mask == 0
        assert np.array_equal(result.image[known], image[known])
        assert not np.array_equal(result.image[~known], image[~known])


def test_batched_equals_one_by_one(inpainter):
    rng = np.random.default_rng(1)
    cases = [random_case(rng, 40, 48) for _ in range(4)]
    together = inpainter([c[0] for c in cases], [c[1] for c in cases])
    alone = [inpainter([c[0]], [c[1]])[0] for c in cases]
    for a, b in zip(together, alone):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_input_kinds_grayscale_rgba_16bit_pil_tensor(inpainter):
    rng = np.random.default_rng(2)
    image, mask = random_case(rng, 32, 40)
    gray = image[:, :, 0]
    rgba = np.dstack([image, np.full(image.shape[:2], 7, np.uint8)])
    deep = image.astype(np.uint16) * 257
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    outs = inpainter([gray, rgba, deep, Image.fromarray(image), tensor],
                     [mask, mask > 0, mask.astype(np.float32) / 255, Image.fromarray(mask), torch.from_numpy(mask > 0)])
    known = mask == 0
    assert np.array_equal(outs[0][known], np.repeat(gray[:, :, None], 3, 2)[known])
    for out in outs[1:]:
        assert np.array_equal(out[known], image[known])


def test_mask_threshold_binarizes(inpainter):
    rng = np.random.default_rng(3)
    image, _ = random_case(rng, 24, 24)
    soft = np.full((24, 24), 100, np.uint8)  # below 128: no hole at all
    assert np.array_equal(inpainter([image], [soft])[0], image)
    zero_one = np.zeros((24, 24), np.uint8)
    zero_one[5:10, 5:10] = 1  # a 0/1 mask is read as such
    out = inpainter([image], [zero_one])[0]
    assert not np.array_equal(out[5:10, 5:10], image[5:10, 5:10])


def test_size_mismatch_and_bad_types_are_clear_errors(inpainter):
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InpaintInputError, match="image 0 is 32x32 but its mask is 16x32"):
        inpainter([image], [np.zeros((32, 16), np.uint8)])
    with pytest.raises(InpaintInputError, match="dtype int8"):
        inpainter([image.astype(np.int8)], [np.zeros((32, 32), np.uint8)])
    with pytest.raises(InpaintInputError, match="shape"):
        inpainter([np.zeros((32, 32, 5), np.uint8)], [np.zeros((32, 32), np.uint8)])
    with pytest.raises(InpaintInputError, match="1 images but 2 masks"):
        inpainter([image], [np.zeros((32, 32), np.uint8)] * 2)


def test_pixel_budget_resizes_and_pastes_back():
    torch.manual_seed(0)
    inpainter = Inpainter(build_generator("small"), max_pixels=64 * 64)
    rng = np.random.default_rng(4)
    image, mask = random_case(rng, 200, 150)
    result = inpainter.inpaint([image], [mask])[0]
    assert result.resized and result.image.shape == image.shape
    known = mask == 0
    assert np.array_equal(result.image[known], image[known])


def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch):
    import lama_core.inpainter as inpainter_module

    generator = build_generator("small")
    monkeypatch.setattr(inpainter_module, "native_bf16_cpu", lambda: False)
    with pytest.warns(RuntimeWarning, match="precision='fp32'"):
        Inpainter(generator, precision="bf16")
    monkeypatch.setattr(inpainter_module, "native_bf16_cpu", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Inpainter(generator, precision="bf16")


def test_precision_auto_is_bf16_only_where_the_hardware_computes_it():
    """precision='auto': bf16 on a CPU with native bf16 (and torch/OpenVINO), else fp32; the
    ONNX Runtime graph is fp32; the Inpainter reports what it resolved to."""
    from lama_core.inpainter import native_bf16_cpu, resolve_precision

    native = "bf16" if native_bf16_cpu() else "fp32"
    assert resolve_precision("auto") == native == Inpainter(build_generator("small"), precision="auto").precision
    assert resolve_precision("auto", "cpu", "openvino") == native
    assert resolve_precision("auto", "cpu", "onnxruntime") == "fp32"
    assert resolve_precision("fp32") == "fp32" and resolve_precision("fp16", "cuda") == "fp16"
