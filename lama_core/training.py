"""One GAN training step of LaMa in plain PyTorch, ready to be distributed by Ray Train.

``GANTrainingStep`` owns the generator, the discriminator (either may be wrapped in
``DistributedDataParallel``), their Adam optimizers and the losses; ``step(images, masks)``
trains on one micro-batch. The Ray worker only builds the models, wraps them, feeds batches,
reports and checkpoints (``state_dict``/``load_state_dict``).

Order of one step (``step``), and how it differs from the official Lightning trainer:

1. Generator phase. ``fake = G(cat(image * (1 - mask), mask))``; losses on the raw ``fake``:
   masked L1 + non-saturating adversarial + feature matching (+ HRF perceptual when its
   encoder weights are given; + the hole reconstruction terms of the ``no-perceptual``
   recipe when their weights are set); backward; at the end of the accumulation window the
   gradients are clipped to a global L2 norm of ``gradient_clip_norm`` and Adam steps G.
   D is frozen (``requires_grad=False``, as the official ``set_requires_grad``) and
   its forwards run inside ``D.no_sync()``: under DDP no D gradient exists or is all-reduced.
2. Discriminator phase, on the same batch: ``D(real)`` with ``real.requires_grad=True``
   (for R1) and ``D(fake.detach())``; ``discriminator_loss``; backward; clip D's gradients
   the same way; Adam step of D.

Gradient clipping as the official trainer (Lightning, ``gradient_clip_val: 1``): each
optimizer's parameters on their own, the global L2 norm over all of them, before its step,
after DDP's all-reduce (so every rank clips identically). The norms before clipping are
reported as ``gen_grad_norm`` / ``discr_grad_norm``.

The official trainer (Lightning, two optimizers) also runs the generator step first, then the
discriminator step; but its discriminator step re-runs the generator forward on the same batch
with the *updated* G. Here D sees the fake of the forward already done in phase 1 (G before its
update), which saves one generator forward per step (the costlier network). Set
``TrainingConfig.regenerate_fake=True`` for the official behaviour (an extra no-grad forward
after G's update; in train mode it also updates G's BatchNorm statistics a second time, as
the official code does).

Distributed notes (see RAY_NOTES "Ray Train"): every rank must call ``step`` the same number
of times with the same config. D's loss carries ``0 * D(real).sum()`` so every D parameter
gets a gradient on every rank even when a loss term is switched off (the stylegan2-ada
trick); R1's ``autograd.grad`` is taken w.r.t. the real images only, so DDP's gradient hooks
fire once per parameter, in the backward of the total loss. With ``accum_steps = k``, the
first ``k - 1`` micro-batches run inside ``no_sync()`` of both models and only the k-th
all-reduces and steps the optimizers; each micro-batch loss is scaled by ``1/k``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .losses import (LossConfig, NonSaturatingWithR1, feature_matching_loss, hole_reconstruction_loss,
                     masked_l1_loss)
from .masks import generate_mask
from .perceptual import HRFPerceptualLoss

from .choices import TRAINING_PRECISIONS, choice_problem


@dataclass
class TrainingConfig:
    """The training recipe; defaults are big-lama's (Adam lrs 1e-3 / 1e-4, default betas).

    ``accum_steps``: optimizer steps every this many ``step`` calls (micro-batches).
    ``precision``: ``"fp32"`` or ``"bf16"`` (autocast; the FFTs stay fp32 inside
    ``FourierUnit`` and every loss reduction runs in fp32). ``channels_last``: NHWC memory
    format for inputs and (unwrapped) models. ``mask_kind``: the mask set for
    ``make_mask_batch`` (big-lama's training mix by default). ``perceptual_weights``: the HRF
    encoder's ``encoder_epoch_20.pth`` or a ``weights_dir`` holding it, ``None`` to train
    without the HRF loss. ``regenerate_fake``: official step order (module docstring).
    ``gradient_clip_norm``: each optimizer's gradients are clipped to this global L2 norm
    before its step (official: 1); ``None`` or ``<= 0`` = no clipping. ``mask_kind`` may
    join several kinds with ``+`` (``"thick_256+medium_256+thin_256"``): mask ``i`` is then
    drawn from kind ``i mod n`` (``make_mask_batch``).
    """

    losses: LossConfig = field(default_factory=LossConfig)
    generator_lr: float = 1e-3
    discriminator_lr: float = 1e-4
    generator_betas: tuple[float, float] = (0.9, 0.999)
    discriminator_betas: tuple[float, float] = (0.9, 0.999)
    accum_steps: int = 1
    precision: str = "fp32"
    channels_last: bool = False
    mask_kind: str = "wide_256"
    perceptual_weights: str | None = None
    regenerate_fake: bool = False
    gradient_clip_norm: float | None = 1.0

    def __post_init__(self):
        if problem := choice_problem("precision", self.precision, TRAINING_PRECISIONS):
            raise ValueError(problem)
        if int(self.accum_steps) < 1:
            raise ValueError(f"accum_steps must be >= 1, got {self.accum_steps}")


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel`` / ``DataParallel`` wrappers (or itself)."""
    while isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        module = module.module
    return module


def _no_sync(module: nn.Module, skip_sync: bool) -> contextlib.AbstractContextManager:
    """``module.no_sync()`` when asked and the module has it (DDP), else a null context.
    Must wrap the forward (DDP decides at forward time whether the backward all-reduces)."""
    if skip_sync and hasattr(module, "no_sync"):
        return module.no_sync()
    return contextlib.nullcontext()


def images_to_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack uint8 ``H x W x 3`` arrays (all the same size) into a float32 ``N x 3 x H x W``
    tensor in [0, 1] on the CPU."""
    array = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def make_mask_batch(kind: str, seed: int, first_index: int, batch_size: int, height: int,
                    width: int) -> torch.Tensor:
    """Masks ``first_index .. first_index + batch_size - 1`` of the set ``(kind, seed)``
    (``lama_core.masks.generate_mask``, scaled to ``height x width``) as a float32
    ``N x 1 x H x W`` tensor in {0, 1} (1 = hole) on the CPU. Deterministic: under DDP give each
    rank its own index range (e.g. ``first_index = (step * world_size + rank) * batch_size``).
    A mixture ``"a+b+c"`` draws mask ``i`` from kind ``i mod 3`` (its own index ``i``)."""
    kinds = kind.split("+")
    masks = [generate_mask(kinds[(first_index + i) % len(kinds)], seed, first_index + i, height, width)
             for i in range(batch_size)]
    return torch.from_numpy(np.stack(masks)[:, None]).contiguous()


class GANTrainingStep:
    """Generator + discriminator + both Adam optimizers + LaMa's losses; one ``step`` per
    micro-batch (see the module docstring for the order and DDP behaviour).

    ``generator``: ``N x 4 x H x W -> N x 3 x H x W`` in [0, 1] (e.g. ``build_generator``);
    ``discriminator``: ``N x 3 x H x W -> (logits N x 1 x h x w, [features])``. Both may be
    DDP-wrapped; for ``channels_last`` with DDP, convert the models before wrapping (unwrapped
    models are converted here). ``perceptual_loss`` overrides loading the HRF loss from
    ``config.perceptual_weights``. Models are put in train mode; the device is the
    generator's.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, config: TrainingConfig | None = None,
                 perceptual_loss: HRFPerceptualLoss | None = None):
        self.config = config or TrainingConfig()
        cfg, lcfg = self.config, self.config.losses
        self.generator, self.discriminator = generator.train(), discriminator.train()
        self.device = next(unwrap(generator).parameters()).device
        if cfg.channels_last:
            for module in (generator, discriminator):
                if unwrap(module) is module:
                    module.to(memory_format=torch.channels_last)
        self.generator_optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.generator_lr,
                                                    betas=tuple(cfg.generator_betas))
        self.discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=cfg.discriminator_lr,
                                                        betas=tuple(cfg.discriminator_betas))
        self.adversarial = NonSaturatingWithR1.from_config(lcfg)
        if perceptual_loss is None and cfg.perceptual_weights is not None and lcfg.hrf_weight > 0:
            perceptual_loss = HRFPerceptualLoss.from_weights(cfg.perceptual_weights, weight=lcfg.hrf_weight)
        self.perceptual = perceptual_loss.to(self.device) if perceptual_loss is not None else None
        self.global_step = 0  # optimizer steps taken
        self.micro_step = 0  # position inside the current accumulation window

    # -- helpers -------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def _clip(self, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """Clip the gradients of ``optimizer``'s parameters to a global L2 norm of
        ``gradient_clip_norm`` (when set); returns the norm before clipping (a float32 scalar
        tensor; the norm is computed even when clipping is off, for logging)."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return torch.zeros((), device=self.device)
        limit = self.config.gradient_clip_norm
        if limit is None or limit <= 0:
            return torch.nn.utils.get_total_norm([p.grad for p in params]).float()
        return torch.nn.utils.clip_grad_norm_(params, float(limit)).float()

    def _prepare(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be N x 3 x H x W, got {tuple(images.shape)}")
        n, _, h, w = images.shape
        if tuple(masks.shape) != (n, 1, h, w):
            raise ValueError(f"masks must be {(n, 1, h, w)} to match the images, got {tuple(masks.shape)}")
        multiple = getattr(unwrap(self.generator), "size_multiple", 1)
        if h % multiple or w % multiple:
            raise ValueError(f"H and W must be multiples of {multiple} for this generator, got {h}x{w}")
        fmt = torch.channels_last if self.config.channels_last else torch.contiguous_format
        images = images.to(self.device, torch.float32, non_blocking=True).contiguous(memory_format=fmt)
        masks = masks.to(self.device, torch.float32, non_blocking=True).contiguous(memory_format=fmt)
        return images, masks

    def _generator_losses(self, images: torch.Tensor, masks: torch.Tensor,
                          fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lcfg = self.config.losses
        total, parts = masked_l1_loss(fake, images, masks, lcfg.l1_weight_known, lcfg.l1_weight_missing)
        if lcfg.adversarial_weight > 0 or lcfg.feature_matching_weight > 0:
            with torch.no_grad():  # real features are targets only
                _, real_feats = self.discriminator(images)
            fake_logits, fake_feats = self.discriminator(fake)
            adv, adv_parts = self.adversarial.generator_loss(fake_logits)
            fm, fm_parts = feature_matching_loss(fake_feats, real_feats, lcfg.feature_matching_weight)
            total = total + adv + fm
            parts.update(adv_parts, **fm_parts)
        if lcfg.has_hole_reconstruction:
            rec, rec_parts = hole_reconstruction_loss(fake, images, masks, lcfg)
            total = total + rec
            parts.update(rec_parts)
        if self.perceptual is not None:
            hrf, hrf_parts = self.perceptual(fake, images)
            total = total + hrf
            parts.update(hrf_parts)
        parts["gen_total"] = total.detach()
        return total, parts

    # -- the step ------------------------------------------------------------------------
    def step(self, images: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
        """Train on one micro-batch; the optimizers step every ``accum_steps`` calls.

        ``images``: float ``N x 3 x H x W`` in [0, 1]; ``masks``: ``N x 1 x H x W`` in {0, 1}
        (1 = hole); H, W multiples of the generator's ``size_multiple`` (8). Any device: moved
        to the models'. Values are not range-checked (that would sync the GPU every step).

        Returns this micro-batch's loss parts as Python floats, unscaled by ``1/k``:
        ``gen_l1, gen_adv, gen_fm, [gen_multiscale, gen_gradient, gen_ssim,] [gen_resnet_pl,]
        gen_total, discr_adv, discr_real_out, discr_fake_out, discr_real_gp``, and on the
        micro-batch that steps the optimizers ``gen_grad_norm`` / ``discr_grad_norm`` (global
        L2 norms of the gradients before clipping).
        """
        k = int(self.config.accum_steps)
        last = self.micro_step == k - 1
        images, masks = self._prepare(images, masks)
        G, D = self.generator, self.discriminator
        if self.micro_step == 0:
            self.generator_optimizer.zero_grad(set_to_none=True)
            self.discriminator_optimizer.zero_grad(set_to_none=True)

        # 1. Generator. D frozen: no D grads to compute, none to leak into D's own step.
        gen_input = torch.cat([images * (1 - masks), masks], dim=1)
        D.requires_grad_(False)
        try:
            with _no_sync(G, not last), _no_sync(D, True):
                with self._autocast():
                    fake = G(gen_input)
                    g_loss, parts = self._generator_losses(images, masks, fake)
                (g_loss / k).backward()
        finally:
            D.requires_grad_(True)
        if last:
            parts["gen_grad_norm"] = self._clip(self.generator_optimizer).detach()
            self.generator_optimizer.step()

        # 2. Discriminator, on the real batch and the detached fake.
        if self.config.losses.adversarial_weight > 0:  # official: no D step without an adversarial loss
            fake = fake.detach()
            if self.config.regenerate_fake and last:
                with torch.no_grad(), self._autocast():
                    fake = G(gen_input)
            real = images.detach().requires_grad_(True)
            with _no_sync(D, not last):
                with self._autocast():
                    real_logits, _ = D(real)
                    fake_logits, _ = D(fake)
                    d_loss, d_parts = self.adversarial.discriminator_loss(real, real_logits, fake_logits, masks)
                    # DDP: keep every D parameter in this backward's graph on every rank.
                    d_loss = d_loss + 0.0 * real_logits.float().sum()
                (d_loss / k).backward()
            parts.update(d_parts)
            if last:
                parts["discr_grad_norm"] = self._clip(self.discriminator_optimizer).detach()
                self.discriminator_optimizer.step()

        self.micro_step = 0 if last else self.micro_step + 1
        self.global_step += int(last)
        names = list(parts)
        values = torch.stack([parts[n].float() for n in names]).tolist()  # one device sync
        return dict(zip(names, values))

    # -- evaluation and checkpointing ----------------------------------------------------
    @torch.no_grad()
    def evaluate_l1(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        """Mean |inpainted - image| over hole pixels (all 3 channels) of a fixed batch, where
        ``inpainted = mask * G(...) + (1 - mask) * image``; [0, 1] scale. Runs the unwrapped
        generator in eval mode without grad (no DDP collectives: safe on one rank alone), then
        restores its mode. Same input conventions as ``step``; raises ``ValueError`` when the
        masks have no hole pixel."""
        images, masks = self._prepare(images, masks)
        generator = unwrap(self.generator)
        was_training = generator.training
        generator.eval()
        try:
            with self._autocast():
                out = generator(torch.cat([images * (1 - masks), masks], dim=1))
        finally:
            generator.train(was_training)
        inpainted = masks * out.float() + (1 - masks) * images
        holes = masks.sum() * images.shape[1]
        if float(holes) == 0:
            raise ValueError("evaluate_l1: the masks have no hole pixels")
        return float(((inpainted - images).abs() * masks).sum() / holes)

    def state_dict(self) -> dict[str, Any]:
        """The whole training state: ``generator``, ``discriminator`` (unwrapped keys, as
        ``lama_core.checkpoint`` expects), both optimizers and ``step`` (optimizer steps).
        Tensors are references to the live ones (copy or serialise before training on); all of
        it loads with ``torch.load(weights_only=True)``. Only at an accumulation-window
        boundary: partly accumulated gradients are not part of it (``RuntimeError`` otherwise)."""
        if self.micro_step != 0:
            raise RuntimeError(f"state_dict() inside an accumulation window ({self.micro_step}/"
                               f"{self.config.accum_steps} micro-batches done): save after the optimizer step")
        return {"generator": unwrap(self.generator).state_dict(),
                "discriminator": unwrap(self.discriminator).state_dict(),
                "generator_optimizer": self.generator_optimizer.state_dict(),
                "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
                "step": self.global_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (models strictly, optimizers, step counter)."""
        unwrap(self.generator).load_state_dict(state["generator"])
        unwrap(self.discriminator).load_state_dict(state["discriminator"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.global_step = int(state["step"])
        self.micro_step = 0


__all__ = ["TrainingConfig", "LossConfig", "GANTrainingStep", "make_mask_batch", "images_to_batch", "unwrap"]
