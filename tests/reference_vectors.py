"""The official reference vectors (``tests/data/reference``): the generator configs they were
made with and a loader. A helper module, imported by the tests that use the vectors."""
from __future__ import annotations

import numpy as np
import torch

from lama_core import build_generator
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
