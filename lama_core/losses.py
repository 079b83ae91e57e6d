"""LaMa's training losses, following the official formulas (advimman/lama
``saicinpainting/training/losses/{feature_matching,adversarial}.py``) with big-lama's
weights as defaults. The HRF perceptual loss lives in ``perceptual.py``.

Every loss returns ``(value, {name: detached tensor})``: a scalar float32 tensor to
backpropagate (already multiplied by its weight) and named parts for logging, named as the
official trainer logs them (``gen_l1``, ``gen_adv``, ``gen_fm``, ``discr_adv``, ...).

Conventions: images ``N x 3 x H x W`` float in [0, 1]; masks ``N x 1 x H x W`` in {0, 1},
1 = hole (missing); discriminator logits ``N x 1 x h x w`` (PatchGAN, any h, w).
Logits and features may be bf16 under autocast: every reduction here runs in float32.
"""
from __future__ import annotations

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


__all__ = ["LossConfig", "masked_l1_loss", "feature_matching_loss", "resize_mask", "r1_penalty",
           "NonSaturatingWithR1"]
