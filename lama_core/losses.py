"""LaMa's training losses, following the official formulas (advimman/lama
``saicinpainting/training/losses/{feature_matching,adversarial}.py``) with big-lama's
weights as defaults. The HRF perceptual loss lives in ``perceptual.py``.

Named recipes (``LOSS_RECIPES``, ``loss_config``): ``"official"`` is big-lama's loss
section and the default everywhere; ``"no-perceptual"`` is this project's recipe for when
the HRF encoder's ADE20k weights are unavailable, selected only by its name. Big-lama puts
no L1 on the hole (``l1_weight_missing=0``): its perceptual loss carries the hole content.
Without that loss only the adversarial and feature-matching terms shape the hole, which on
a small dataset learns a mean colour, not the surroundings. ``no-perceptual`` therefore
adds reconstruction terms on the hole (``hole_reconstruction_loss``: L1 on the hole,
multi-scale L1, image-gradient L1 and a local-SSIM term around the hole) and weakens the
adversarial and feature-matching terms so that they sharpen rather than decide the fill.

Every loss returns ``(value, {name: detached tensor})``: a scalar float32 tensor to
backpropagate (already multiplied by its weight) and named parts for logging, named as the
official trainer logs them (``gen_l1``, ``gen_adv``, ``gen_fm``, ``discr_adv``, ...).

Conventions: images ``N x 3 x H x W`` float in [0, 1]; masks ``N x 1 x H x W`` in {0, 1},
1 = hole (missing); discriminator logits ``N x 1 x h x w`` (PatchGAN, any h, w).
Logits and features may be bf16 under autocast: every reduction here runs in float32.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Parts = dict[str, torch.Tensor]


@dataclass
class LossConfig:
    """Loss weights and options; defaults are big-lama's ``losses:`` section.

    ``hrf_weight`` only applies when the trainer is given the HRF encoder weights.
    """

    l1_weight_known: float = 10.0
    l1_weight_missing: float = 0.0
    adversarial_weight: float = 10.0
    r1_gamma: float = 0.001  # official ``gp_coef``
    mask_as_fake_target: bool = True
    allow_scale_mask: bool = True
    mask_scale_mode: str = "nearest"  # or "maxpool", or any F.interpolate mode
    feature_matching_weight: float = 100.0
    hrf_weight: float = 30.0
    # Reconstruction terms on the hole (``hole_reconstruction_loss``); 0 in the official recipe.
    multiscale_weight: float = 0.0
    gradient_weight: float = 0.0
    ssim_weight: float = 0.0
    multiscale_factors: tuple[int, ...] = (2, 4, 8)

    @property
    def has_hole_reconstruction(self) -> bool:
        return self.multiscale_weight > 0 or self.gradient_weight > 0 or self.ssim_weight > 0


# The recipes, by name. "official" = big-lama (LossConfig's defaults). "no-perceptual" (see the
# module docstring) deviates from it, on purpose and only when named:
# - l1_weight_missing 0 -> 10: the hole is supervised directly (big-lama leaves that to HRF).
# - multiscale / gradient / ssim terms (0 -> 10 / 5 / 1): plain L1 on a hole averages to a flat
#   mean colour; L1 on 2x/4x/8x average-pooled images rewards the right low frequencies
#   (colour, shading) across the whole hole, the gradient term rewards continuing edges and
#   texture energy instead of a flat fill, SSIM rewards local contrast and structure.
# - adversarial 10 -> 3 and feature matching 100 -> 30: at full weight, with no perceptual term,
#   these two decide the hole on their own; a few-photo discriminator then rewards one
#   "typical" texture and colour (the orange-brown blobs of the first demo checkpoint).
# - hrf_weight 30 -> 0: the term is unavailable by definition of the recipe.
LOSS_RECIPES: dict[str, LossConfig] = {
    "official": LossConfig(),
    "no-perceptual": LossConfig(l1_weight_known=10.0, l1_weight_missing=10.0, adversarial_weight=3.0,
                                feature_matching_weight=30.0, hrf_weight=0.0, multiscale_weight=10.0,
                                gradient_weight=5.0, ssim_weight=1.0),
}


def loss_config(recipe: str = "official", **overrides) -> LossConfig:
    """A fresh ``LossConfig`` of the named recipe (``LOSS_RECIPES``), with ``overrides``
    (field name -> value) applied on top. Raises ``ValueError`` for an unknown recipe name
    or field. The official recipe is the default; no other name is ever inferred."""
    if recipe not in LOSS_RECIPES:
        raise ValueError(f"unknown loss recipe {recipe!r}; known: {sorted(LOSS_RECIPES)}")
    unknown = set(overrides) - set(LossConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown loss config fields: {sorted(unknown)}")
    return dataclasses.replace(LOSS_RECIPES[recipe], **overrides)


def masked_l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight_known: float = 10.0,
                   weight_missing: float = 0.0) -> tuple[torch.Tensor, Parts]:
    """Official ``masked_l1_loss``: ``mean(|pred - target| * (mask * weight_missing +
    (1 - mask) * weight_known))`` over all elements (N·C·H·W, not just the weighted ones).

    ``pred``: the raw generator output (not the blended image), as the official trainer.
    ``mask`` broadcasts over channels. Returns ``(value, {"gen_l1": value})``.
    """
    per_pixel = (pred.float() - target.float()).abs()
    weights = mask.float() * weight_missing + (1 - mask.float()) * weight_known
    value = (per_pixel * weights).mean()
    return value, {"gen_l1": value.detach()}


def feature_matching_loss(fake_features: list[torch.Tensor], real_features: list[torch.Tensor],
                          weight: float = 100.0) -> tuple[torch.Tensor, Parts]:
    """Official ``feature_matching_loss`` without a mask (big-lama: ``pass_mask: false``):
    ``weight * mean over layers of mse(fake_feat, real_feat)``; real features detached (in the
    official code they carry no graph anyway: D is frozen and the real image is a leaf).

    Returns ``(value, {"gen_fm": value})``.
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError(f"feature matching needs two equally long, non-empty feature lists, got "
                         f"{len(fake_features)} and {len(real_features)}")
    per_layer = [F.mse_loss(f.float(), r.detach().float()) for f, r in zip(fake_features, real_features)]
    value = torch.stack(per_layer).mean() * weight
    return value, {"gen_fm": value.detach()}


def resize_mask(mask: torch.Tensor, size: tuple[int, int] | torch.Size, mode: str = "nearest") -> torch.Tensor:
    """Official ``interpolate_mask``: ``N x 1 x H x W`` -> ``N x 1 x size`` with
    ``F.interpolate(mode=mode)``, or ``F.adaptive_max_pool2d`` for ``mode="maxpool"`` (a logit
    patch touching any hole counts as hole). Returned unchanged when already that size."""
    size = tuple(size)
    if tuple(mask.shape[-2:]) == size:
        return mask
    if mode == "maxpool":
        return F.adaptive_max_pool2d(mask, size)
    return F.interpolate(mask, size=size, mode=mode)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 gradient penalty (official ``make_r1_gp``, without ``gp_coef``):
    ``mean_i ||d sum(D(real)) / d real_i||^2`` over the batch, with ``create_graph=True`` so
    the penalty itself is differentiated w.r.t. D's parameters.

    ``real_images`` must have ``requires_grad=True`` and be the tensor ``real_logits`` was
    computed from. Returns a float32 scalar; 0 when autograd is disabled (as official).
    """
    if not torch.is_grad_enabled():
        return real_logits.new_zeros((), dtype=torch.float32)
    if not real_images.requires_grad:
        raise ValueError("R1 needs real_images.requires_grad=True before the discriminator forward")
    (grad,) = torch.autograd.grad(outputs=real_logits.float().sum(), inputs=real_images, create_graph=True)
    # sum of squares == norm(2) ** 2, but its double backward is finite at a zero gradient.
    return grad.float().pow(2).flatten(1).sum(1).mean()


class NonSaturatingWithR1:
    """Official ``NonSaturatingWithR1`` as big-lama configures it (``mask_as_fake_target``,
    ``allow_scale_mask``, ``extra_mask_weight_for_gen=0``, unmasked regions used by both).

    The ``weight`` (10) scales only the generator's adversarial term: the official
    ``discriminator_loss`` returns ``sum_discr_loss.mean()`` with no weight, and the trainer
    backpropagates it as is (D has its own optimizer, so a weight would only act as an lr).
    """

    def __init__(self, weight: float = 10.0, gp_coef: float = 0.001, mask_as_fake_target: bool = True,
                 allow_scale_mask: bool = True, mask_scale_mode: str = "nearest"):
        self.weight = float(weight)
        self.gp_coef = float(gp_coef)
        self.mask_as_fake_target = mask_as_fake_target
        self.allow_scale_mask = allow_scale_mask
        self.mask_scale_mode = mask_scale_mode

    @classmethod
    def from_config(cls, config: LossConfig) -> NonSaturatingWithR1:
        return cls(config.adversarial_weight, config.r1_gamma, config.mask_as_fake_target,
                   config.allow_scale_mask, config.mask_scale_mode)

    def _mask_for(self, mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if not self.allow_scale_mask and tuple(mask.shape[-2:]) != tuple(logits.shape[-2:]):
            raise ValueError(f"mask {tuple(mask.shape[-2:])} does not match logits {tuple(logits.shape[-2:])} "
                             "and allow_scale_mask is off")
        return resize_mask(mask.float(), logits.shape[-2:], self.mask_scale_mode)

    def generator_loss(self, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Parts]:
        """``softplus(-D(fake)).mean() * weight`` (the whole fake counts as "should look real").

        Returns ``(value, {"gen_adv": value})``.
        """
        value = F.softplus(-fake_logits.float()).mean() * self.weight
        return value, {"gen_adv": value.detach()}

    def discriminator_loss(self, real_images: torch.Tensor, real_logits: torch.Tensor, fake_logits: torch.Tensor,
                           mask: torch.Tensor) -> tuple[torch.Tensor, Parts]:
        """``mean(softplus(-D(real)) + gp_coef * R1 + fake_term)``, where with
        ``mask_as_fake_target`` ``fake_term = m * softplus(D(fake)) + (1 - m) * softplus(-D(fake))``
        (``m`` = the hole mask resized to the logits): holes of the fake are fake, its known
        pixels are real. Without it, ``fake_term = softplus(D(fake))``.

        ``real_images`` (``requires_grad=True``) and ``real_logits`` feed R1 (see ``r1_penalty``).
        Returns ``(value, {"discr_adv", "discr_real_out", "discr_fake_out", "discr_real_gp"})``
        (``discr_real_gp`` is the penalty times ``gp_coef``, as logged officially).
        """
        real_logits_f, fake_logits_f = real_logits.float(), fake_logits.float()
        real_term = F.softplus(-real_logits_f)
        grad_penalty = r1_penalty(real_logits, real_images) * self.gp_coef
        fake_term = F.softplus(fake_logits_f)
        if self.mask_as_fake_target:
            m = self._mask_for(mask, fake_logits)
            fake_term = m * fake_term + (1 - m) * F.softplus(-fake_logits_f)
        value = (real_term + grad_penalty + fake_term).mean()
        parts = {"discr_adv": value.detach(), "discr_real_out": real_logits_f.mean().detach(),
                 "discr_fake_out": fake_logits_f.mean().detach(), "discr_real_gp": grad_penalty.detach()}
        return value, parts


def _hole_weight(mask: torch.Tensor, dilate: int) -> torch.Tensor:
    """The hole dilated by ``dilate`` pixels (max-pool): the terms below also judge the ring
    of known pixels around the hole, where the fill must meet its surroundings."""
    if dilate <= 0:
        return mask
    return F.max_pool2d(mask, 2 * dilate + 1, stride=1, padding=dilate)


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(values * weight) / sum(weight broadcast to values)``; 0 when the weight is 0."""
    weight = weight.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def local_ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel SSIM of ``N x C x H x W`` images in [0, 1] over ``window x window`` box
    windows (reflect-padded, so ``N x C x H x W`` out), with the usual constants
    ``(0.01, 0.03)^2``. Values in [-1, 1]; 1 where the two images agree."""
    pad = window // 2
    xp = F.pad(x, (pad,) * 4, mode="reflect")
    yp = F.pad(y, (pad,) * 4, mode="reflect")
    mu_x, mu_y = F.avg_pool2d(xp, window, 1), F.avg_pool2d(yp, window, 1)
    var_x = F.avg_pool2d(xp * xp, window, 1) - mu_x ** 2
    var_y = F.avg_pool2d(yp * yp, window, 1) - mu_y ** 2
    cov = F.avg_pool2d(xp * yp, window, 1) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def hole_reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                             config: LossConfig) -> tuple[torch.Tensor, Parts]:
    """The ``no-perceptual`` recipe's structural terms, on the composite
    ``mask * pred + (1 - mask) * target`` (what a user gets back), each a mean over the hole
    dilated by a few pixels:

    - ``gen_multiscale``: ``multiscale_weight *`` mean over ``multiscale_factors`` of the L1
      between ``k x k`` average-pooled composite and target (low frequencies: colour, shading);
    - ``gen_gradient``: ``gradient_weight *`` L1 between horizontal and vertical finite
      differences of composite and target (edges continued, texture energy kept);
    - ``gen_ssim``: ``ssim_weight * (1 - local SSIM)`` (7 x 7 windows, ``local_ssim_map``).

    Shapes as in the module docstring; terms of weight 0 are skipped (and not logged).
    Returns ``(sum of the weighted terms, parts)``; a float32 scalar.
    """
    pred, target, mask = pred.float(), target.float(), mask.float()
    composite = mask * pred + (1 - mask) * target
    total = pred.new_zeros(())
    parts: Parts = {}
    if config.multiscale_weight > 0:
        terms = []
        for k in config.multiscale_factors:
            if min(pred.shape[-2:]) < k:
                continue
            diff = (F.avg_pool2d(composite, k) - F.avg_pool2d(target, k)).abs()
            terms.append(_weighted_mean(diff, F.max_pool2d(mask, k)))  # a cell touching the hole counts
        if terms:
            value = torch.stack(terms).mean() * config.multiscale_weight
            total, parts["gen_multiscale"] = total + value, value.detach()
    if config.gradient_weight > 0:
        weight = _hole_weight(mask, 1)
        dx = ((composite[..., :, 1:] - composite[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])).abs()
        dy = ((composite[..., 1:, :] - composite[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])).abs()
        value = 0.5 * (_weighted_mean(dx, weight[..., :, 1:]) + _weighted_mean(dy, weight[..., 1:, :]))
        value = value * config.gradient_weight
        total, parts["gen_gradient"] = total + value, value.detach()
    if config.ssim_weight > 0:
        value = _weighted_mean(1 - local_ssim_map(composite, target), _hole_weight(mask, 3)) * config.ssim_weight
        total, parts["gen_ssim"] = total + value, value.detach()
    return total, parts


__all__ = ["LossConfig", "LOSS_RECIPES", "loss_config", "hole_reconstruction_loss", "local_ssim_map",
           "masked_l1_loss", "feature_matching_loss", "resize_mask", "r1_penalty",
           "NonSaturatingWithR1"]
