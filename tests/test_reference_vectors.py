"""Our generator computes the official function: the reference vectors produced by the
official LaMa implementation are reproduced in fp32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lama_core import Inpainter

from reference_vectors import CONFIGS, load_reference

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_generator_output_matches_official(reference_dir, name):
    generator, data = load_reference(reference_dir, name)
    with torch.no_grad():
        out = generator(torch.from_numpy(data["generator_input"])).numpy()
    assert out.shape == data["generator_output"].shape
    assert np.abs(out - data["generator_output"]).max() <= 1e-5


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_inpainter_reproduces_official_inpainted(reference_dir, name):
    generator, data = load_reference(reference_dir, name)
    inpainter = Inpainter(generator, batch_size=2)
    out = inpainter.predict(torch.from_numpy(data["image"]), torch.from_numpy(data["mask"])).numpy()
    assert np.abs(out - data["inpainted"]).max() <= 1e-5


def test_inpainter_uint8_path_matches_official(reference_dir):
    """The uint8 API against the official ``inpainted`` vectors: known pixels are the input's
    own bytes; hole pixels are the official values within the effect of quantising the
    input to uint8 (a few levels of 255)."""
    generator, data = load_reference(reference_dir, "ffc_small")
    images = [np.rint(im.transpose(1, 2, 0) * 255).astype(np.uint8) for im in data["image"]]
    masks = [(m[0] * 255).astype(np.uint8) for m in data["mask"]]
    official = np.rint(data["inpainted"].transpose(0, 2, 3, 1) * 255).astype(int)
    results = Inpainter(generator)(images, masks)
    for i, result in enumerate(results):
        hole = masks[i] > 0
        assert hole.any()
        assert np.array_equal(result[~hole], images[i][~hole])
        diff = np.abs(result[hole].astype(int) - official[i][hole])
        assert diff.max() <= 3 and diff.mean() < 0.5, (diff.max(), diff.mean())
