"""Checkpoint I/O: official Lightning layout (directory and bare file, local and S3), our
safetensors format, and clear errors for bad files."""
from __future__ import annotations

import collections
import os

import pytest
import torch
from omegaconf import OmegaConf

from lama_core import CheckpointError, build_discriminator, build_generator, load_generator, save_generator
from lama_core.presets import generator_config_to_dict

SMALL_ARGS = {"kind": "ffc_resnet", "input_nc": 4, "output_nc": 3, "ngf": 16, "n_downsampling": 3, "n_blocks": 2,
              "add_out_act": "sigmoid",
              "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
              "downsample_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
              "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False}}

MARKER = "/tmp/lama_core_test_pickle_executed"


class Exploit:
    """Pickles to a call of os.system: loading it unsafely would create MARKER."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


class LightningLikeAttributeDict(dict):
    """Stands for Lightning's AttributeDict: a dict subclass from a library we cannot import."""


def randomized(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, buf in module.state_dict().items():
            if buf.is_floating_point():
                buf.copy_(torch.rand_like(buf) * 0.2 + (0.9 if "running_var" in name else -0.1))
    return module.eval()


def write_official_ckpt(path, generator, with_config=True, exploit=False):
    """A checkpoint in the official Lightning layout: generator./discriminator./loss keys,
    an OmegaConf config and non-tensor objects."""
    state = collections.OrderedDict()
    for k, v in generator.state_dict().items():
        state[f"generator.{k}"] = v
    for k, v in build_discriminator("small").state_dict().items():
        state[f"discriminator.{k}"] = v
    state["loss_resnet_pl.impl.conv1.weight"] = torch.zeros(4, 3, 3, 3)
    state["evaluator.scores.ssim.weight"] = torch.zeros(2)
    ckpt = {"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.2.9", "state_dict": state,
            "optimizer_states": [], "lr_schedulers": []}
    if with_config:
        config = OmegaConf.create({"generator": SMALL_ARGS, "training_model": {"kind": "default"},
                                   "losses": {"l1": {"weight_missing": 0, "weight_known": 10}}})
        hp = LightningLikeAttributeDict(config=config)
        ckpt["hyper_parameters"] = hp
    if exploit:
        ckpt["callbacks"] = {"evil": Exploit()}
    torch.save(ckpt, path)


@pytest.fixture
def small_generator():
    return randomized(build_generator(SMALL_ARGS))


@pytest.fixture
def official_dir(tmp_path, small_generator):
    root = tmp_path / "small-lama"
    (root / "models").mkdir(parents=True)
    (root / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create({"generator": SMALL_ARGS})))
    write_official_ckpt(root / "models" / "best.ckpt", small_generator, with_config=False)
    return root


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_directory_loads(official_dir, small_generator):
    loaded = load_generator(str(official_dir))
    assert not loaded.training
    assert same_weights(loaded, small_generator)


def test_bare_ckpt_uses_its_own_config_and_never_runs_pickles(tmp_path, small_generator):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    path = tmp_path / "best.ckpt"
    write_official_ckpt(path, small_generator, with_config=True, exploit=True)
    loaded = load_generator(str(path))
    assert same_weights(loaded, small_generator)
    assert loaded.config.n_blocks == 2
    assert not os.path.exists(MARKER), "a pickled call was executed"


def test_bare_ckpt_without_config_assumes_big_lama(tmp_path):
    generator = build_generator("big-lama")
    path = tmp_path / "best.ckpt"
    write_official_ckpt(path, generator, with_config=False)
    loaded = load_generator(str(path))
    assert loaded.config.n_blocks == 18
    assert same_weights(loaded, generator)


def test_wrong_preset_names_missing_and_unexpected_keys(tmp_path, small_generator):
    path = tmp_path / "best.ckpt"
    write_official_ckpt(path, small_generator, with_config=False)  # small weights, big-lama assumed
    with pytest.raises(CheckpointError, match="missing.*model\\.|shape mismatch"):
        load_generator(str(path))
    with pytest.raises(CheckpointError, match="missing"):
        load_generator(str(path), preset="lama-fourier")


def test_wrong_shape_weights_are_reported(tmp_path, small_generator):
    state = small_generator.state_dict()
    state["model.1.ffc.convl2l.weight"] = torch.zeros(8, 4, 7, 7)
    bad = build_generator(SMALL_ARGS)
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {f"generator.{k}": v for k, v in state.items()},
                "hyper_parameters": {"config": OmegaConf.create({"generator": SMALL_ARGS})}}, path)
    with pytest.raises(CheckpointError, match=r"shape mismatch: model\.1\.ffc\.convl2l\.weight: checkpoint \(8, 4, 7, 7\)"):
        load_generator(str(path))
    del bad


def test_truncated_checkpoint_is_a_clear_error(tmp_path, small_generator):
    path = tmp_path / "best.ckpt"
    write_official_ckpt(path, small_generator)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*best.ckpt"):
        load_generator(str(path))


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere/best.ckpt"):
        load_generator(str(tmp_path / "nowhere" / "best.ckpt"))


def test_safetensors_round_trip_and_truncation(tmp_path, small_generator):
    target = save_generator(small_generator, str(tmp_path / "run1"))
    assert target.endswith("generator.safetensors")
    assert same_weights(load_generator(str(tmp_path / "run1")), small_generator)
    assert same_weights(load_generator(target), small_generator)
    data = (tmp_path / "run1" / "generator.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_generator(str(tmp_path / "cut.safetensors"))
    assert generator_config_to_dict(load_generator(target).config)["n_blocks"] == 2


def test_official_layout_loads_from_s3(s3_bucket, official_dir, small_generator, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    fs.put(str(official_dir), f"{s3_bucket[5:]}/models/small-lama", recursive=True)
    bare = tmp_path / "bare.ckpt"
    write_official_ckpt(bare, small_generator, with_config=True)
    fs.put(str(bare), f"{s3_bucket[5:]}/bare/best.ckpt")
    assert same_weights(load_generator(f"{s3_bucket}/models/small-lama"), small_generator)
    assert same_weights(load_generator(f"{s3_bucket}/bare/best.ckpt"), small_generator)
    with pytest.raises(FileNotFoundError, match="absent"):
        load_generator(f"{s3_bucket}/absent/best.ckpt")
