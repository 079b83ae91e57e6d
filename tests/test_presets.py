"""Presets build exactly the official architectures (key names, shapes, parameter counts)."""
from __future__ import annotations

import json

import pytest

from lama_core import build_discriminator, build_generator, count_parameters


@pytest.fixture(scope="module")
def manifest(reference_dir):
    return json.loads((reference_dir / "official_state_dict_manifest.json").read_text())


@pytest.mark.parametrize("preset,params", [("big-lama", 50_975_875), ("lama-fourier", 27_048_835)])
def test_generator_preset_matches_official_state_dict(manifest, preset, params):
    state = build_generator(preset).state_dict()
    expected = [(k, list(shape)) for k, shape in manifest[preset]["generator"]]
    assert [(k, list(v.shape)) for k, v in state.items()] == expected
    assert count_parameters(build_generator(preset)) == params


def test_discriminator_matches_official_state_dict(manifest):
    disc = build_discriminator("big-lama")
    expected = [(k, list(shape)) for k, shape in manifest["discriminator_pix2pixhd_nlayer"]["state_dict"]]
    assert [(k, list(v.shape)) for k, v in disc.state_dict().items()] == expected
    assert count_parameters(disc) == 6_962_369


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown generator preset 'huge-lama'.*big-lama"):
        build_generator("huge-lama")


def test_small_preset_runs_on_odd_free_sizes():
    import torch

    gen = build_generator("small").eval()
    with torch.no_grad():
        out = gen(torch.rand(1, 4, 64, 40))
    assert out.shape == (1, 3, 64, 40)
    assert 0 <= out.min() and out.max() <= 1
