"""Our generator computes the official function: the reference vectors produced by the
official LaMa implementation are reproduced in fp32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lama_core import Inpainter, build_generator
from lama_core.ffc import FFCConvOptions, GeneratorConfig

CONFIGS = {
    "ffc_small": GeneratorConfig(ngf=16, n_blocks=2),
    "ffc_small_lfu": GeneratorConfig(ngf=16, n_downsampling=2, n_blocks=2,
                                     resnet_conv_kwargs=FFCConvOptions(0.5, 0.5, True)),
}


def load_reference(reference_dir, name):
    data = np.load(reference_dir / f"{name}.npz")
    generator = build_generator(CONFIGS[name])
    generator.load_state_dict({k[len("param/"):]: torch.from_numpy(data[k]) for k in data.files
                               if k.startswith("param/")}, strict=True)
    return generator.eval(), data


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
    """The uint8 API: hole pixels are the official inpainted values rounded, known pixels
    are the input's own bytes."""
    generator, data = load_reference(reference_dir, "ffc_small")
    images = [np.rint(im.transpose(1, 2, 0) * 255).astype(np.uint8) for im in data["image"]]
    masks = [(m[0] * 255).astype(np.uint8) for m in data["mask"]]
    # Feed exactly the uint8-quantised image so the official output applies.
    out = Inpainter(generator).predict(torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2) / 255.0).float(),
                                       torch.from_numpy(data["mask"]))
    expected = np.rint(out.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    results = Inpainter(generator)(images, masks)
    for i, result in enumerate(results):
        hole = masks[i] > 0
        assert np.array_equal(result[~hole], images[i][~hole])
        assert np.abs(result[hole].astype(int) - expected[i][hole].astype(int)).max() <= 1
