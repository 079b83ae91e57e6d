"""The training recipe: per-optimizer gradient clipping, the named no-perceptual loss
recipe (and that nothing selects it but its name), its hole reconstruction terms, the
``distortions`` augmentation, and the held-out training/validation split."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lama_core.augment import Distortions, distorted_crop
from lama_core.losses import LOSS_RECIPES, LossConfig, hole_reconstruction_loss, loss_config
from lama_core.models import build_discriminator, build_generator
from lama_core.training import GANTrainingStep, TrainingConfig, make_mask_batch
from pipelines.train.config import LocalTrainConfig, TrainConfig
from pipelines.train.data import split_held_out, validation_batch
from pipelines.train.loop import training_config


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: fast and reproducible on a shared 2-core machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _global_norm(module: torch.nn.Module) -> float:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def _one_step(clip: float | None, recipe: str = "official") -> tuple[GANTrainingStep, dict[str, float]]:
    torch.manual_seed(0)
    trainer = GANTrainingStep(build_generator("small"), build_discriminator("small"),
                              TrainingConfig(losses=loss_config(recipe), gradient_clip_norm=clip))
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    parts = trainer.step(images, make_mask_batch("thick_256", 0, 0, 2, 64, 64))
    return trainer, parts


# ---- gradient clipping ----------------------------------------------------------------------

def test_gradient_clipping_limits_each_optimizers_global_norm_to_one_by_default():
    assert TrainingConfig().gradient_clip_norm == 1.0  # the official gradient_clip_val
    trainer, parts = _one_step(clip=1.0)
    # The step's gradients stay in .grad after the optimizer step: they are the clipped ones.
    assert parts["gen_grad_norm"] > 1 and parts["discr_grad_norm"] > 1  # clipping was active
    assert _global_norm(trainer.generator) <= 1 + 1e-5
    assert _global_norm(trainer.discriminator) <= 1 + 1e-5
    # Each optimizer is clipped on its own: the generator's norm alone reaches the limit.
    assert _global_norm(trainer.generator) == pytest.approx(1.0, rel=1e-4)


def test_without_clipping_the_gradients_keep_their_norm():
    trainer, parts = _one_step(clip=None)
    assert _global_norm(trainer.generator) == pytest.approx(parts["gen_grad_norm"], rel=1e-4)
    assert _global_norm(trainer.generator) > 1
    assert _global_norm(trainer.discriminator) == pytest.approx(parts["discr_grad_norm"], rel=1e-4)


def test_clipping_changes_the_update():
    clipped, _ = _one_step(clip=1.0)
    free, _ = _one_step(clip=None)
    a = torch.cat([p.detach().flatten() for p in clipped.generator.parameters()])
    b = torch.cat([p.detach().flatten() for p in free.generator.parameters()])
    assert not torch.equal(a, b)  # Adam's first step is scale-free, but its epsilon is not


# ---- the no-perceptual recipe, only by name ---------------------------------------------------

def test_official_recipe_is_the_default_everywhere():
    assert loss_config() == LossConfig() == TrainingConfig().losses == LOSS_RECIPES["official"]
    assert not LossConfig().has_hole_reconstruction and LossConfig().l1_weight_missing == 0
    job = TrainConfig()
    assert job.recipe == "official" and job.perceptual_weights == ""
    # No perceptual weights given: still the official recipe (HRF simply off), never a silent switch.
    losses = training_config(job).losses
    assert losses == LossConfig()
    _, parts = _one_step(clip=1.0)
    assert not {"gen_multiscale", "gen_gradient", "gen_ssim"} & set(parts)


def test_no_perceptual_recipe_is_selected_by_its_name():
    losses = training_config(TrainConfig(recipe="no-perceptual")).losses
    assert losses == LOSS_RECIPES["no-perceptual"]
    assert losses.has_hole_reconstruction and losses.l1_weight_missing > 0 and losses.hrf_weight == 0
    _, parts = _one_step(clip=1.0, recipe="no-perceptual")
    assert {"gen_multiscale", "gen_gradient", "gen_ssim"} <= set(parts)
    # Explicit weights override the recipe's; None keeps them.
    tuned = training_config(TrainConfig(recipe="no-perceptual", adversarial_weight=0.5)).losses
    assert tuned == dataclasses.replace(LOSS_RECIPES["no-perceptual"], adversarial_weight=0.5)
    with pytest.raises(ValueError, match="unknown loss recipe"):
        training_config(TrainConfig(recipe="no_perceptual"))
    assert any("recipe must be official or no-perceptual" in p for p in TrainConfig(recipe="no_perceptual").problems())
    from lama_core.choices import RECIPES

    assert set(RECIPES) == set(LOSS_RECIPES)  # the light config module's list stays in step


def test_hole_reconstruction_terms_judge_the_hole_and_its_rim_only():
    cfg = LOSS_RECIPES["no-perceptual"]
    rng = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = 0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy)  # a smooth photo-like field
    target = torch.stack([smooth, 0.8 * smooth, 1 - smooth])[None].repeat(2, 1, 1, 1)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 20:40, 24:44] = 1
    zero, parts = hole_reconstruction_loss(target.clone(), target, mask, cfg)
    assert float(zero) == pytest.approx(0.0, abs=1e-6)
    assert set(parts) == {"gen_multiscale", "gen_gradient", "gen_ssim"}
    pred = target.clone().requires_grad_(True)
    wrong = pred + (torch.rand(2, 3, 64, 64, generator=rng) - 0.5)  # wrong everywhere
    value, _ = hole_reconstruction_loss(wrong, target, mask, cfg)
    assert float(value.detach()) > 0.1
    value.backward()
    # The loss sees the composite: generator output outside the hole gets no gradient.
    assert float(pred.grad[:, :, :16].abs().max()) == 0 and float(pred.grad[:, :, 20:40, 24:44].abs().max()) > 0
    # A flat fill of the hole's mean colour is worse than the truth but better than noise.
    flat = target.clone()
    flat[:, :, 20:40, 24:44] = target[:, :, 20:40, 24:44].mean(dim=(2, 3), keepdim=True)
    flat_value, _ = hole_reconstruction_loss(flat, target, mask, cfg)
    assert 0 < float(flat_value) < float(value.detach())


# ---- augmentation ---------------------------------------------------------------------------

def test_distorted_crop_is_seeded_and_keeps_size_and_dtype():
    import skimage.data

    photo = skimage.data.astronaut()
    a = distorted_crop(photo, 96, np.random.default_rng(3))
    b = distorted_crop(photo, 96, np.random.default_rng(3))
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert distorted_crop(photo[:50, :70], 96, np.random.default_rng(0)).shape == (96, 96, 3)  # upscaled
    crops = [distorted_crop(photo, 64, np.random.default_rng(s)) for s in range(12)]
    assert len({c.tobytes() for c in crops}) == 12


def test_distortions_without_any_transform_is_a_plain_crop():
    """All probabilities 0: the warp is an axis-aligned crop (bilinear at a sub-pixel offset)."""
    ramp = np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (120, 1, 3))
    off = Distortions(perspective_probability=0, affine_probability=0, flip_probability=0, clahe_probability=0,
                      brightness_contrast_probability=0, hsv_probability=0)
    crop = distorted_crop(ramp, 64, np.random.default_rng(0), off).astype(int)
    steps = np.diff(crop[:, :, 0], axis=1)
    assert np.abs(steps - 1).max() <= 1 and np.ptp(crop[:, 0, 0]) <= 1  # still the unit ramp, no rotation


def test_grayscale_probability_one_gives_grey_crops_and_zero_keeps_colour():
    import skimage.data

    photo = skimage.data.astronaut()
    grey = distorted_crop(photo, 64, np.random.default_rng(1), Distortions(grayscale_probability=1.0))
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    orange = np.zeros((100, 100, 3), np.uint8) + np.array([220, 120, 30], np.uint8)
    colour = [distorted_crop(orange, 64, np.random.default_rng(s)) for s in range(10)]
    assert all(np.abs(c[..., 0].astype(int) - c[..., 2]).mean() > 50 for c in colour)


# ---- training data and held-out validation ----------------------------------------------------

def test_default_training_photos_are_colour_and_disjoint_from_validation():
    from pipelines.common.samples import TRAINING_PHOTOS, VALIDATION_PHOTOS, sample_photos

    assert not set(TRAINING_PHOTOS) & set(VALIDATION_PHOTOS)
    for name, photo in sample_photos(TRAINING_PHOTOS).items():
        spread = np.abs(photo[..., 0].astype(int) - photo[..., 1]).mean() + np.abs(
            photo[..., 1].astype(int) - photo[..., 2]).mean()
        assert spread > 2, f"{name} is grey: grey images are held out for judging the model"
    assert TrainConfig().sync_batchnorm is False  # official: per-GPU BatchNorm statistics


def test_validation_images_are_held_out_of_training(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(data / f"img{i}.png")
    cfg = TrainConfig(input=str(data), crop_size=32, validation_images=2)
    kind, train, held = split_held_out(cfg)
    assert kind == "images" and [p.rsplit("/", 1)[-1] for p in held] == ["img3.png", "img4.png"]
    assert not set(train) & set(held) and len(train) == 3
    batch = validation_batch(cfg)
    assert batch["images"].shape == (2, 3, 32, 32)
    assert sorted(round(float(v) * 255) for v in batch["images"].mean(axis=(1, 2, 3))) == [120, 160]
    # A separate validation folder: every data image trains.
    other = tmp_path / "val"
    other.mkdir()
    Image.fromarray(np.full((40, 40, 3), 7, np.uint8)).save(other / "v.png")
    cfg = dataclasses.replace(cfg, validation_input=str(other))
    assert len(split_held_out(cfg)[1]) == 5
    assert round(float(validation_batch(cfg)["images"].max()) * 255) == 7
    with pytest.raises(ValueError, match="too few"):
        split_held_out(TrainConfig(input=str(data), validation_images=5))


def test_the_official_recipe_needs_the_encoder_file_and_no_perceptual_needs_none(tmp_path):
    from pipelines.common.errors import ConfigError
    from pipelines.train.loop import with_perceptual_weights

    with pytest.raises(ConfigError, match="encoder_epoch_20.pth not found; pass weights_dir="):
        with_perceptual_weights(TrainConfig(weights_dir=str(tmp_path)))
    encoder = tmp_path / "ade20k" / "ade20k-resnet50dilated-ppm" / "encoder_epoch_20.pth"
    encoder.parent.mkdir(parents=True)
    encoder.write_bytes(b"weights")
    assert with_perceptual_weights(TrainConfig(weights_dir=str(tmp_path))).perceptual_weights == str(encoder)
    assert with_perceptual_weights(TrainConfig(recipe="no-perceptual", weights_dir="/none")).perceptual_weights == ""
    assert training_config(with_perceptual_weights(TrainConfig(recipe="no-perceptual"))).perceptual_weights is None


def test_local_training_checkpoints_and_resumes(tmp_path, capsys):
    """The single-process trainer writes the one checkpoint layout (complete.json last) and resumes."""
    from PIL import Image

    from lama_core import load_generator
    from pipelines.train.checkpoints import state_digest
    from pipelines.train.local import run_local_training

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (48, 56, 3), dtype=np.uint8)).save(data / f"p{i}.png")
    cfg = LocalTrainConfig(input=str(data), output=str(tmp_path / "runs"), name="local", steps=2, batch_size=2,
                         crop_size=32, log_every=1, checkpoint_every=2, validation_images=1, recipe="no-perceptual",
                         mask_kind="thick_256+thin_256")
    first = run_local_training(cfg)
    assert first.checkpoint.endswith("checkpoint_000000002") and (Path(first.checkpoint) / "complete.json").exists() and first.metrics["step"] == 2
    assert "validation_l1" in first.metrics and "gen_multiscale" in first.metrics
    saved = load_generator(first.checkpoint)
    second = run_local_training(dataclasses.replace(cfg, steps=3, checkpoint_every=3, generator_lr=2e-4))
    assert second.checkpoint.endswith("checkpoint_000000003") and second.metrics["start_step"] == 2
    assert second.metrics["generator_lr"] == 2e-4  # the resumed run's own learning rate
    assert state_digest(load_generator(second.checkpoint)) != state_digest(saved)
    # Both trainers print the same report line (training_report_line), the checkpoint steps marked.
    printed = capsys.readouterr().out
    assert "step 2/2  " in printed and "images/s  (checkpoint)" in printed and "{" not in printed


def test_inpainter_keeps_grey_images_grey_and_leaves_colour_alone():
    """A generator that paints every hole pure red: grey images get a grey fill (its luma),
    colour images keep the generator's colours, and keep_grey=False shows the raw fill."""
    from lama_core import Inpainter

    torch.manual_seed(0)
    generator = build_generator("small").eval()
    with torch.no_grad():  # output conv bias: sigmoid(+20, -20, -20) = red
        last = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([20.0, -20.0, -20.0]))
    grey = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 64, axis=0).repeat(3, axis=2)
    colour = grey.copy()
    colour[..., 2] = 255 - colour[..., 2]
    mask = np.zeros((64, 64), np.uint8)
    mask[16:40, 16:40] = 255
    kept, coloured = Inpainter(generator, batch_size=2, cpu_kernels=False)([grey, colour], [mask, mask])
    hole = mask > 0
    assert np.array_equal(kept[..., 0], kept[..., 1]) and np.array_equal(kept[..., 1], kept[..., 2])
    assert abs(int(kept[hole][:, 0].mean()) - 76) <= 1  # luma of pure red
    assert (coloured[hole][:, 0] > 250).all() and (coloured[hole][:, 1] < 5).all()
    (raw,) = Inpainter(generator, cpu_kernels=False, keep_grey=False)([grey], [mask])
    assert (raw[hole][:, 0] > 250).all() and np.array_equal(raw[~hole], grey[~hole])


def test_evaluation_default_photos_are_held_out_and_distinct():
    """The evaluation job's default data never trained the default model, and no photo
    repeats another's pixels (cat was chelsea's)."""
    from pipelines.common.samples import EVALUATION_PHOTOS, TRAINING_PHOTOS, sample_photos

    assert not set(EVALUATION_PHOTOS) & set(TRAINING_PHOTOS)
    photos = sample_photos(EVALUATION_PHOTOS)
    assert len(photos) >= 8
    digests = {hash(p.tobytes()) for p in photos.values()}
    assert len(digests) == len(photos)
