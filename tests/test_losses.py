"""LaMa's losses against hand-computed values on tiny tensors, and the HRF perceptual loss
with generated encoder weights (the official ADE20k file cannot be downloaded here)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lama_core.checkpoint import CheckpointError
from lama_core.losses import (LossConfig, NonSaturatingWithR1, feature_matching_loss, masked_l1_loss, r1_penalty,
                              resize_mask)
from lama_core.perceptual import (ENCODER_FILE, ENCODER_KEY_EXAMPLES, HRFPerceptualLoss, ResNet50DilatedEncoder,
                                  load_ade20k_encoder)

LN2, LN3 = math.log(2), math.log(3)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads competing with other
    processes can make the ResNet-50 passes many times slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_loss_config_defaults_are_big_lama():
    cfg = LossConfig()
    assert (cfg.l1_weight_known, cfg.l1_weight_missing) == (10, 0)
    assert (cfg.adversarial_weight, cfg.r1_gamma, cfg.feature_matching_weight, cfg.hrf_weight) == (10, 0.001, 100, 30)
    assert cfg.mask_as_fake_target and cfg.allow_scale_mask and cfg.mask_scale_mode == "nearest"


def test_masked_l1_weights_known_and_missing_pixels():
    pred = torch.tensor([[[[0.5, 0.2], [0.9, 0.0]]]])
    target = torch.tensor([[[[0.0, 0.0], [1.0, 0.5]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # only the top-left pixel is a hole
    # |d| = [[.5, .2], [.1, .5]]; big-lama ignores the hole: (10*.2 + 10*.1 + 10*.5) / 4
    value, parts = masked_l1_loss(pred, target, mask)
    assert value.item() == pytest.approx(2.0, abs=1e-6)
    assert parts == {"gen_l1": value}
    value, _ = masked_l1_loss(pred, target, mask, weight_known=10, weight_missing=1)
    assert value.item() == pytest.approx(8.5 / 4, abs=1e-6)
    # The mask broadcasts over channels; the mean runs over N*C*H*W elements.
    value, _ = masked_l1_loss(pred.expand(1, 3, 2, 2), target.expand(1, 3, 2, 2), mask, 2.0, 0.0)
    assert value.item() == pytest.approx(2 * 0.8 / 4, abs=1e-6)


def test_generator_adversarial_loss_is_weighted_softplus_of_minus_logits():
    logits = torch.tensor([[[[0.0, LN3], [-LN3, math.log(7)]]]])
    expected = (LN2 + math.log(4 / 3) + math.log(4) + math.log(8 / 7)) / 4 * 10
    value, parts = NonSaturatingWithR1(weight=10).generator_loss(logits)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert parts["gen_adv"].item() == pytest.approx(expected, rel=1e-6)


def _constant_real(n=1):
    """Real images whose logits do not depend on them: R1 is exactly 0."""
    real = torch.zeros(n, 1, 2, 2, requires_grad=True)
    return real, real * 0.0


def test_discriminator_loss_masked_pixels_of_fake_are_fake_unmasked_real():
    real, real_logits = _constant_real()
    fake_logits = torch.full((1, 1, 2, 2), LN3)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    value, parts = NonSaturatingWithR1(weight=10, gp_coef=0.001).discriminator_loss(real, real_logits, fake_logits, mask)
    # real term softplus(0) = ln 2 everywhere; holes: softplus(ln 3) = ln 4; known: softplus(-ln 3) = ln(4/3).
    # No weight: the 10 only scales the generator's term (official discriminator_loss).
    expected = LN2 + (2 * math.log(4) + 2 * math.log(4 / 3)) / 4
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert parts["discr_real_gp"].item() == 0
    assert parts["discr_fake_out"].item() == pytest.approx(LN3)
    # Without mask_as_fake_target the whole fake is fake.
    real, real_logits = _constant_real()
    value, _ = NonSaturatingWithR1(mask_as_fake_target=False).discriminator_loss(real, real_logits, fake_logits, mask)
    assert value.item() == pytest.approx(LN2 + math.log(4), rel=1e-6)


def test_mask_is_resized_to_the_logits_nearest_or_maxpool():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1, 1] = 1  # one hole pixel that nearest (rows/cols 0 and 2) does not sample
    assert resize_mask(mask, (2, 2), "nearest").sum() == 0
    assert resize_mask(mask, (2, 2), "maxpool").tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]
    block = torch.zeros(1, 1, 4, 4)
    block[..., :2, :2] = 1
    assert resize_mask(block, (2, 2)).tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]
    # Used by the loss: a 4x4 mask against 2x2 logits.
    real, real_logits = _constant_real()
    fake_logits = torch.full((1, 1, 2, 2), LN3)
    value, _ = NonSaturatingWithR1().discriminator_loss(real, real_logits, fake_logits, block)
    assert value.item() == pytest.approx(LN2 + (math.log(4) + 3 * math.log(4 / 3)) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="allow_scale_mask"):
        NonSaturatingWithR1(allow_scale_mask=False).discriminator_loss(real, real * 0.0, fake_logits, block)


def test_r1_on_a_linear_discriminator_matches_the_closed_form():
    # D(x) = 1x1 conv with weights w: d sum(D(x)) / dx = w at every pixel, so
    # ||grad_i||^2 = H * W * sum(w^2) = 4 * 9 = 36 for every sample, and d R1 / dw = 2 * H * W * w.
    w = torch.tensor([1.0, 2.0, 2.0]).view(1, 3, 1, 1).requires_grad_(True)
    real = torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    logits = F.conv2d(real, w)
    penalty = r1_penalty(logits, real)
    assert penalty.item() == pytest.approx(36.0, rel=1e-6)
    penalty.backward()
    assert w.grad.flatten().tolist() == pytest.approx([8.0, 16.0, 16.0], rel=1e-6)
    # In the discriminator loss it enters as gp_coef * R1, added before the mean.
    real2 = real.detach().clone().requires_grad_(True)
    logits = F.conv2d(real2, w)
    fake_logits = torch.zeros(2, 1, 2, 2)
    value, parts = NonSaturatingWithR1(gp_coef=0.001).discriminator_loss(real2, logits, fake_logits,
                                                                         torch.zeros(2, 1, 2, 2))
    expected = F.softplus(-logits).mean().item() + 0.036 + LN2  # fake logits 0: softplus(-0) = ln 2
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert parts["discr_real_gp"].item() == pytest.approx(0.036, rel=1e-6)


def test_r1_needs_real_images_with_grad_and_is_zero_without_autograd():
    real = torch.rand(1, 3, 2, 2)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(real.sum().view(1, 1, 1, 1), real)
    with torch.no_grad():
        assert r1_penalty(torch.ones(1, 1, 1, 1), real).item() == 0


def test_feature_matching_is_weighted_mean_of_per_layer_mse_with_real_detached():
    fake = [torch.ones(1, 2, 2, 2, requires_grad=True), torch.zeros(1, 1, 2, 2, requires_grad=True)]
    real = [torch.zeros(1, 2, 2, 2, requires_grad=True), torch.full((1, 1, 2, 2), 2.0, requires_grad=True)]
    value, parts = feature_matching_loss(fake, real, weight=100)
    assert value.item() == pytest.approx((1.0 + 4.0) / 2 * 100)
    assert parts["gen_fm"].item() == pytest.approx(250.0)
    value.backward()
    assert fake[0].grad is not None and all(r.grad is None for r in real)
    with pytest.raises(ValueError):
        feature_matching_loss(fake, real[:1])


# ---- HRF perceptual loss ---------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder() -> ResNet50DilatedEncoder:
    torch.manual_seed(0)
    return ResNet50DilatedEncoder().eval()


@pytest.fixture(scope="module")
def weights_dir(encoder, tmp_path_factory):
    """A weights_dir holding generated encoder weights at the official relative path."""
    root = tmp_path_factory.mktemp("weights")
    path = root / ENCODER_FILE
    path.parent.mkdir(parents=True)
    torch.save(encoder.state_dict(), path)
    return root


def test_encoder_has_the_official_key_names_and_dilated_stages(encoder):
    keys = list(encoder.state_dict())
    assert set(ENCODER_KEY_EXAMPLES) <= set(keys)
    assert not any(k.startswith(("encoder.", "module.", "fc.")) for k in keys)
    assert len(keys) == 330  # 265 tensors + 65 num_batches_tracked (ResNet-50, deep stem, no fc)
    feats = encoder(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 16, 16), (512, 8, 8), (1024, 8, 8), (2048, 8, 8)]
    assert encoder.layer4[0].conv2.dilation == (2, 2) and encoder.layer4[1].conv2.dilation == (4, 4)
    assert encoder.layer3[0].downsample[0].stride == (1, 1)


def test_hrf_loss_zero_for_identical_images_positive_otherwise(encoder):
    loss = HRFPerceptualLoss(encoder, weight=30)
    loss.train()
    assert not loss.encoder.training  # frozen BatchNorm statistics
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 32, 32, generator=gen)
    value, parts = loss(target.clone(), target)
    assert value.item() == 0 and set(parts) == {"gen_resnet_pl"}
    pred = torch.rand(2, 3, 32, 32, generator=gen).requires_grad_(True)
    value, _ = loss(pred, target)
    assert value.item() > 0
    value.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.encoder.parameters())


def test_hrf_weights_round_trip_by_weights_dir_and_by_file(encoder, weights_dir):
    for where in (str(weights_dir), str(weights_dir / ENCODER_FILE)):
        loaded = load_ade20k_encoder(where)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        for key, value in encoder.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_hrf_weights_tolerate_module_prefix_and_missing_num_batches_tracked(encoder, tmp_path):
    state = {f"module.{k}": v for k, v in encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "encoder_epoch_20.pth")
    loaded = load_ade20k_encoder(str(tmp_path / "encoder_epoch_20.pth"))
    assert torch.equal(loaded.layer4[2].bn3.weight, encoder.layer4[2].bn3.weight)


def test_missing_hrf_weights_name_the_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        HRFPerceptualLoss.from_weights(str(tmp_path))
    message = str(info.value)
    assert "ade20k/ade20k-resnet50dilated-ppm/encoder_epoch_20.pth" in message
    assert str(tmp_path) in message and "weights_dir" in message and "None" in message


def test_hrf_weights_with_wrong_keys_or_bytes_raise_clear_errors(tmp_path):
    bad = tmp_path / "prefixed.pth"
    torch.save({"encoder.conv1.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(CheckpointError, match=r"missing: conv1\.weight.*unexpected: encoder\.conv1\.weight"):
        load_ade20k_encoder(str(bad))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_ade20k_encoder(str(garbage))
