"""Denoising diffusion families: pixel-space ``ddpm`` and latent ``ldm``.

Both are built from MONAI's generative components (``DiffusionModelUNet``,
``AutoencoderKL``, ``PatchDiscriminator``, ``DDPMScheduler``/``DDIMScheduler``,
``PatchAdversarialLoss``); this module only wires them to cxrlab's trainer and
sampler. Three separate objects:

* the network, :class:`DiffusionModel`: the denoising UNet (plus, for ``ldm``, a
  frozen copy of the trained autoencoder to decode latents and the latent scale).
  It is the run's "generator": checkpointed, averaged by EMA, handed to the sampler;
* the objective, :meth:`DiffusionFamily.train_step`: one optimisation step, drawing
  noise, timesteps and label dropout from the trainer's ``noise_rng`` (so a resumed
  run is bitwise the same on CPU);
* the sampler, :meth:`DiffusionFamily.sample`: DDIM or ancestral DDPM with optional
  classifier-free guidance, every random number drawn from the caller's generator.

Images are (B, 1, S, S) in [-1, 1]. ``ddpm`` denoises them directly; ``ldm`` trains
a KL autoencoder (S -> S/4, 3 latent channels) for the first ``autoencoder_steps``
steps (L1 reconstruction + KL + patch-adversarial loss; no perceptual loss, which
would need downloaded weights), then estimates once the scale that gives the
training latents unit standard deviation, records it in the model, and trains the
denoiser on scaled latents.

Class conditioning: a run without ``--label`` learns both classes through class
embeddings 0 (negative) and 1 (positive) plus the null class 2, which replaces the
label of 10 % of the training images, so one network predicts with and without the
class and sampling can apply classifier-free guidance (Ho & Salimans 2022):
``prediction = (1 + w) * conditional - w * unconditional``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cxrlab.errors import CxrlabError
from cxrlab.gen.models import (
    DiffusionOptions,
    ModelOptions,
    OptimizerSpec,
    Recipe,
    check_size,
    register_model,
)

#: Share of training labels replaced by the null class (classifier-free guidance).
LABEL_DROPOUT = 0.1
#: ``ldm``: latent channels and the autoencoder's downsampling factor (64 px -> 16 x 16).
LATENT_CHANNELS = 3
LATENT_FACTOR = 4
#: ``ldm`` autoencoder loss weights. KL as in Rombach et al. 2022. The patch-adversarial
#: term carries the fine texture that L1 alone blurs away (no perceptual loss here: it
#: needs downloaded weights). On the dev data at 64 px, the SWD between reconstructed
#: training positives and the held-out validation positives was 66 after 849 steps at
#: weight 0.01, 48 after 806 at 0.05 and 49 after 809 at 0.1 (with stripe artefacts);
#: the training images themselves score 42.
KL_WEIGHT = 1e-6
ADVERSARIAL_WEIGHT = 0.05
#: Training images encoded to estimate the latent scale.
SCALE_IMAGES = 512
#: ``scaled_linear`` betas (Rombach et al. 2022).
SCALED_LINEAR = {"beta_start": 0.0015, "beta_end": 0.0195}
#: Feature maps up to this side get self-attention in the UNet.
ATTENTION_MAX_PX = 16
DEFAULT_WIDTH = 64
GROUPS = 8  # GroupNorm groups; every channel count is a multiple of 8


def unet_channels(side_px: int, width: int) -> tuple[int, ...]:
    """Channels per UNet level: one level per factor 2 from ``side_px`` down to 8 px
    (at least two levels), widths ``width`` x (1, 2, 2, 4, 4, 4)."""
    levels = min(6, max(2, int(math.log2(side_px // 4))))
    return tuple(width * m for m in (1, 2, 2, 4, 4, 4)[:levels])


def build_unet(side_px: int, in_channels: int, width: int, res_blocks: int, conditional: bool):
    """MONAI's ``DiffusionModelUNet`` for (B, in_channels, side, side) inputs, with
    self-attention at the levels of at most 16 px and 3 class embeddings when
    ``conditional`` (negative, positive, null)."""
    from monai.networks.nets import DiffusionModelUNet

    channels = unet_channels(side_px, width)
    sides = [side_px // 2**level for level in range(len(channels))]
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=in_channels,
        channels=channels,
        attention_levels=tuple(side <= ATTENTION_MAX_PX for side in sides),
        num_res_blocks=res_blocks,
        norm_num_groups=GROUPS,
        num_head_channels=width,
        num_class_embeds=3 if conditional else None,
        use_flash_attention=True,  # PyTorch's scaled_dot_product_attention, CPU included
    )


def build_autoencoder(width: int, res_blocks: int):
    """MONAI's ``AutoencoderKL``: (B, 1, S, S) -> latents (B, 3, S/4, S/4) -> (B, 1, S, S)."""
    from monai.networks.nets import AutoencoderKL

    return AutoencoderKL(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=(width, 2 * width, 2 * width),
        latent_channels=LATENT_CHANNELS,
        num_res_blocks=res_blocks,
        attention_levels=(False, False, False),
        norm_num_groups=GROUPS,
        with_encoder_nonlocal_attn=False,
        with_decoder_nonlocal_attn=False,
    )


class DiffusionModel(nn.Module):
    """The denoiser a run samples from.

    ``forward(noisy (B, C, s, s), timesteps (B,) int64 in [0, T), labels (B,) int64 in
    {0, 1, 2} or None) -> (B, C, s, s)``: the predicted noise (``epsilon``) or velocity
    (``v``). Pixel diffusion: C = 1, s = S. Latent diffusion: C = 3, s = S / 4, and
    :meth:`decode` maps scaled latents back to images with the frozen autoencoder copy.

    Args:
        unet: the denoising network.
        side_px: side of the denoised tensors (pixels or latents).
        autoencoder: ``ldm`` only: the autoencoder to decode with; its weights are
            frozen (not trained through this module: they are copied in when the
            autoencoder phase ends).
    """

    def __init__(self, unet: nn.Module, side_px: int, autoencoder: nn.Module | None = None):
        super().__init__()
        self.unet = unet
        self.side_px = side_px
        self.channels = LATENT_CHANNELS if autoencoder is not None else 1
        self.autoencoder = autoencoder
        if autoencoder is not None:
            autoencoder.requires_grad_(False)
            # 1 / std of the training latents; 0 until the autoencoder phase ends
            self.register_buffer("latent_scale", torch.zeros(()))

    @property
    def latent(self) -> bool:
        return self.autoencoder is not None

    def forward(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.unet(noisy, timesteps, class_labels=labels)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, 3, S/4, S/4) -> images (B, 1, S, S), about [-1, 1]."""
        scale = float(self.latent_scale)
        return self.autoencoder.decode(latents / (scale if scale > 0 else 1.0))


class DiffusionFamily:
    """Objective and sampler of one diffusion run (see the module docstring).

    Args:
        size_px: image side.
        settings: the run's diffusion settings.
        latent: ``ldm`` (True) or ``ddpm``.
    """

    def __init__(self, size_px: int, settings: DiffusionOptions, latent: bool) -> None:
        from monai.networks.schedulers import DDPMScheduler

        self.size_px = size_px
        self.settings = settings
        self.latent = latent
        self.conditional = settings.class_conditional
        self.schedule = settings.schedule or ("scaled_linear" if latent else "cosine")
        # pixels live in [-1, 1], so a predicted clean image may be clipped there; latents not
        self.clip_sample = not latent
        self.noise_scheduler = DDPMScheduler(**self._schedule_args())
        self._decoder_ready = False

    # ------------------------------------------------------------------ schedules
    def _schedule_args(self) -> dict:
        args = {
            "num_train_timesteps": self.settings.timesteps,
            "prediction_type": "epsilon"
            if self.settings.prediction == "epsilon"
            else "v_prediction",
            "clip_sample": self.clip_sample,
        }
        if self.schedule == "cosine":
            return {**args, "schedule": "cosine"}
        return {**args, "schedule": "scaled_linear_beta", **SCALED_LINEAR}

    def _sampling_scheduler(self, sampler: str, steps: int):
        """The scheduler for ``sampler`` at ``steps`` evenly strided noise levels, the last
        one below the stride, so that the last step reaches the clean image."""
        from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

        total = self.settings.timesteps
        if sampler == "ddpm" and steps == total:
            scheduler = DDPMScheduler(**self._schedule_args())
            return scheduler, (lambda out, t, x, g: scheduler.step(out, t, x, generator=g)[0])
        # DDIM (eta 0: deterministic); eta 1 is the ancestral DDPM step between strided levels
        eta = 1.0 if sampler == "ddpm" else 0.0
        scheduler = DDIMScheduler(**self._schedule_args())
        scheduler.set_timesteps(steps)
        stride = total // steps
        # MONAI steps from t to t - T // steps: visit exactly those levels ("trailing"
        # spacing: T - 1 when steps divides T), so the last step goes to t < 0 (clean)
        scheduler.timesteps = torch.arange(steps * stride - 1, -1, -stride)
        return scheduler, (lambda out, t, x, g: scheduler.step(out, t, x, eta=eta, generator=g)[0])

    # ------------------------------------------------------------------ training
    def train_step(self, trainer) -> dict[str, torch.Tensor]:
        """One step of ``trainer`` (a :class:`~cxrlab.gen.trainer.GenTrainer`)."""
        if self.latent and trainer.step < self.settings.autoencoder_steps:
            return self._autoencoder_step(trainer)
        if self.latent and not self._decoder_ready:
            self._freeze_autoencoder(trainer)
        return self._denoising_step(trainer)

    def _denoising_step(self, trainer) -> dict[str, torch.Tensor]:
        images, labels = trainer._real_batch(trainer.step)
        if self.latent:
            with torch.no_grad():
                model = trainer.generator
                latents, _ = model.autoencoder.encode(images)
                clean = latents * model.latent_scale
        else:
            clean = images
        batch = clean.shape[0]
        rng = trainer.noise_rng
        noise = torch.randn(clean.shape, generator=rng).to(trainer.device)
        timesteps = torch.randint(self.settings.timesteps, (batch,), generator=rng)
        conditioning = None
        if self.conditional:
            dropped = (torch.rand(batch, generator=rng) < LABEL_DROPOUT).to(trainer.device)
            conditioning = torch.where(dropped, torch.full_like(labels, 2), labels)
        timesteps = timesteps.to(trainer.device)
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        if self.settings.prediction == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(clean, noise, timesteps)
        prediction = trainer.g_model(noisy, timesteps, conditioning)
        loss = F.mse_loss(prediction.float(), target.float())
        trainer.g_opt.zero_grad(set_to_none=True)
        trainer.fabric.backward(loss)
        trainer.g_opt.step()
        return {"loss": loss.detach()}

    def _autoencoder_step(self, trainer) -> dict[str, torch.Tensor]:
        """KL autoencoder: L1 + KL + patch-adversarial; then its patch discriminator."""
        from monai.losses import PatchAdversarialLoss

        adversarial = PatchAdversarialLoss(criterion="least_squares")
        autoencoder, autoencoder_opt = (
            trainer.extra_models["autoencoder"],
            trainer.extra_optimizers["autoencoder"],
        )
        critic, critic_opt = (
            trainer.extra_models["discriminator"],
            trainer.extra_optimizers["discriminator"],
        )
        critic_raw = trainer.recipe.extra_modules["discriminator"]
        single = trainer.fabric.world_size == 1
        images, _ = trainer._real_batch(trainer.step)
        reconstruction, mu, sigma = autoencoder(images)
        reconstruction_loss = F.l1_loss(reconstruction.float(), images.float())
        mu, sigma = mu.float(), sigma.float()
        kl = 0.5 * (mu**2 + sigma**2 - torch.log(sigma**2) - 1).sum(dim=(1, 2, 3)).mean()
        if single:  # the autoencoder step needs no gradients of the critic's weights
            critic_raw.requires_grad_(False)
        fooling = adversarial(
            critic(reconstruction)[-1].float(), target_is_real=True, for_discriminator=False
        )
        loss = reconstruction_loss + KL_WEIGHT * kl + ADVERSARIAL_WEIGHT * fooling
        autoencoder_opt.zero_grad(set_to_none=True)
        trainer.fabric.backward(loss)
        autoencoder_opt.step()

        if single:
            critic_raw.requires_grad_(True)
        fake_scores = critic(reconstruction.detach())[-1].float()
        real_scores = critic(images)[-1].float()
        critic_loss = 0.5 * (
            adversarial(fake_scores, target_is_real=False, for_discriminator=True)
            + adversarial(real_scores, target_is_real=True, for_discriminator=True)
        )
        critic_opt.zero_grad(set_to_none=True)
        trainer.fabric.backward(critic_loss)
        critic_opt.step()
        return {
            "ae_reconstruction": reconstruction_loss.detach(),
            "ae_kl": kl.detach(),
            "ae_adversarial": fooling.detach(),
            "d_loss": critic_loss.detach(),
        }

    @torch.no_grad()
    def _freeze_autoencoder(self, trainer) -> None:
        """Once, when the autoencoder phase ends (or a run resumes after it): copy the
        trained autoencoder into the sampling model (and its EMA) and estimate the
        latent scale from the training images, unless the checkpoint already holds it."""
        model: DiffusionModel = trainer.generator
        self._decoder_ready = True
        if float(model.latent_scale) > 0:
            return  # resumed after the switch: the model holds both already
        trained = trainer.recipe.extra_modules["autoencoder"]
        targets = [model] + ([trainer.ema.module] if trainer.ema is not None else [])
        for target in targets:
            target.autoencoder.load_state_dict(trained.state_dict())
        images = trainer.real_images[:SCALE_IMAGES]
        latents = torch.cat(
            [
                model.autoencoder.encode(images[i : i + 64])[0].float()
                for i in range(0, len(images), 64)
            ]
        )
        spread = float(latents.std())
        if not math.isfinite(spread) or spread <= 0:
            raise CxrlabError(
                f"{trainer.run}: the autoencoder's latents have standard deviation {spread}; "
                "train it longer (--autoencoder-steps) or with a lower learning rate (--lr-g)"
            )
        for target in targets:
            target.latent_scale.fill_(1.0 / spread)

    # ------------------------------------------------------------------ sampling
    def sampling_settings(self, options) -> tuple[str, int, float]:
        """``(sampler, steps, guidance)`` of :class:`~cxrlab.gen.sampling.SamplingOptions`,
        the run's settings filling ``default``/None fields; checked before any work.

        Raises:
            CxrlabError: an unknown sampler, steps outside 1..T, or guidance on an
                unconditional run.
        """
        settings = self.settings
        sampler = settings.sampler if options.sampler in ("default", None) else options.sampler
        steps = options.steps or settings.sample_steps
        guidance = settings.guidance if options.guidance is None else options.guidance
        if sampler not in ("ddim", "ddpm"):
            raise CxrlabError(
                f"--sampler must be ddim or ddpm for diffusion models, got {sampler!r}"
            )
        if not 1 <= steps <= settings.timesteps:
            raise CxrlabError(
                f"--sample-steps must be from 1 to the run's {settings.timesteps} diffusion steps, got {steps}"
            )
        if guidance < 0:
            raise CxrlabError(f"--guidance must be at least 0, got {guidance}")
        if guidance and not self.conditional:
            raise CxrlabError(
                f"--guidance {guidance}: this run was trained on one class without class "
                "conditioning; guidance needs a run trained without --label"
            )
        return sampler, steps, guidance

    @torch.no_grad()
    def sample(
        self,
        model: DiffusionModel,
        n: int,
        labels: torch.Tensor | None,
        generator: torch.Generator,
        options,
        advance: Callable[[float], object] | None = None,
    ) -> torch.Tensor:
        """``n`` images (n, 1, S, S) in [-1, 1] (see :func:`cxrlab.gen.sampling.generate`).

        Args:
            model: the denoiser (EMA weights where kept), in eval mode.
            n: images in this batch.
            labels: (n,) classes 0/1 of a conditional model, else None.
            generator: CPU random generator; the start noise and every DDPM step's noise
                come from it (on CUDA through a CUDA generator seeded from it).
            options: :class:`~cxrlab.gen.sampling.SamplingOptions`; ``default``/None
                fields take the run's settings.
            advance: called after each denoising step with the share of the work done
                by it (1 / steps), for a progress bar.

        Raises:
            CxrlabError: settings :meth:`sampling_settings` refuses.
        """
        sampler, steps, guidance = self.sampling_settings(options)
        device = next(model.parameters()).device
        shape = (n, model.channels, model.side_px, model.side_px)
        sample = torch.randn(shape, generator=generator).to(device)
        step_generator = generator
        if device.type != "cpu":  # torch draws CUDA noise only from a CUDA generator
            seed = int(torch.randint(2**62, (1,), generator=generator))
            step_generator = torch.Generator(device).manual_seed(seed)
        scheduler, step = self._sampling_scheduler(sampler, steps)
        null = None if labels is None else torch.full_like(labels, 2)
        for t in scheduler.timesteps.tolist():
            timesteps = torch.full((n,), t, dtype=torch.int64, device=device)
            if guidance:
                both = model(
                    torch.cat([sample, sample]),
                    torch.cat([timesteps, timesteps]),
                    torch.cat([labels, null]),
                ).float()
                conditional, unconditional = both.chunk(2)
                prediction = conditional + guidance * (conditional - unconditional)
            else:
                prediction = model(sample, timesteps, labels).float()
            sample = step(prediction, t, sample, step_generator)
            if advance is not None:
                advance(1 / len(scheduler.timesteps))
        images = model.decode(sample) if model.latent else sample
        return images.float().clamp(-1, 1)


def _family(name: str, size_px: int, options: ModelOptions) -> Recipe:
    check_size(size_px)
    settings = options.diffusion or DiffusionOptions()
    latent = name == "ldm"
    width = settings.width or DEFAULT_WIDTH
    family = DiffusionFamily(size_px, settings, latent)
    side = size_px // LATENT_FACTOR if latent else size_px
    unet = build_unet(
        side, LATENT_CHANNELS if latent else 1, width, settings.res_blocks, family.conditional
    )
    extra_modules: dict[str, nn.Module] = {}
    extra_optimizers: dict[str, OptimizerSpec] = {}
    loss_names = ["loss"]
    autoencoder_copy = None
    if latent:
        from monai.networks.nets import PatchDiscriminator

        autoencoder_width = max(GROUPS, width // 2)
        extra_modules["autoencoder"] = build_autoencoder(autoencoder_width, settings.res_blocks)
        extra_modules["discriminator"] = PatchDiscriminator(
            spatial_dims=2,
            channels=autoencoder_width,
            in_channels=1,
            out_channels=1,
            num_layers_d=min(3, check_size(size_px) - 1),
        )
        extra_optimizers["autoencoder"] = OptimizerSpec("adam", 1e-4, (0.9, 0.999))
        extra_optimizers["discriminator"] = OptimizerSpec("adam", 5e-4, (0.5, 0.999))
        autoencoder_copy = build_autoencoder(autoencoder_width, settings.res_blocks)
        loss_names = ["ae_reconstruction", "ae_kl", "ae_adversarial", "d_loss", "loss"]
    model = DiffusionModel(unet, side, autoencoder_copy)
    notes = [
        f"{'latent' if latent else 'pixel'} diffusion, {settings.prediction} prediction, "
        f"{family.schedule} schedule, {settings.timesteps} steps"
    ]
    return Recipe(
        generator=model,
        discriminator=None,
        loss="diffusion",
        g_optimizer=OptimizerSpec("adam", 1e-4, (0.9, 0.999)),
        d_optimizer=None,
        conditional=family.conditional,
        notes=notes,
        sample=family.sample,
        check_sampling=family.sampling_settings,
        train_step=family.train_step,
        loss_names=loss_names,
        extra_modules=extra_modules,
        extra_optimizers=extra_optimizers,
        # the denoiser of an ldm trains only after the autoencoder phase
        ema_start=settings.autoencoder_steps if latent else 0,
    )


@register_model("ddpm")
def build_ddpm(size_px: int, options: ModelOptions) -> Recipe:
    """Pixel-space DDPM (Ho et al. 2020; cosine schedule of Nichol & Dhariwal 2021), Adam 1e-4."""
    return _family("ddpm", size_px, options)


@register_model("ldm")
def build_ldm(size_px: int, options: ModelOptions) -> Recipe:
    """Latent diffusion (Rombach et al. 2022): KL autoencoder to S/4, then a latent DDPM."""
    return _family("ldm", size_px, options)
