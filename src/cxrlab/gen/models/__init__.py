"""Generative model families, registered by name.

Every family builds a :class:`Recipe`: the networks plus how the thesis (or the
paper that defined the family) trains them. The trainer knows nothing else about
a family. Generators map ``(z (B, latent), labels (B,) or None)`` to images
``(B, 1, S, S)`` in [-1, 1]; discriminators/critics map ``(images, labels)`` to
``(B,)`` scores (logits for ``bce``, unbounded for ``wasserstein``/``hinge``).
Diffusion families (``ddpm``, ``ldm``) bring their own training step and sampler
(``Recipe.train_step``, ``Recipe.sample``) and any extra networks they train
(``Recipe.extra_modules``); the trainer saves, restores and steps those generically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from cxrlab.errors import CxrlabError
from cxrlab.gen.config import GenConfig
from cxrlab.utils.config import config_defaults

#: GenConfig's field defaults (the diffusion options below share them).
_RUN_DEFAULTS = config_defaults(GenConfig)

LOSSES = ("bce", "wasserstein", "hinge", "elbo", "diffusion")


@dataclass(frozen=True)
class OptimizerSpec:
    """``name`` is ``adam`` or ``rmsprop``."""

    name: str
    lr: float
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass(frozen=True)
class ModelOptions:
    """Switches any family may honour.

    Attributes:
        latent_dim: size of z.
        spectral_norm: spectral normalisation on every discriminator layer (its
            BatchNorm layers are then left out: the two fight each other).
        generator: ``default`` or ``conv`` (wgan/wgan-gp: the DCGAN generator instead of the MLP).
        num_classes: classes for conditional models.
    """

    latent_dim: int = 100
    spectral_norm: bool = False
    generator: str = "default"
    num_classes: int = 2
    diffusion: DiffusionOptions | None = None


@dataclass(frozen=True)
class DiffusionOptions:
    """Settings of the diffusion families (see :class:`~cxrlab.gen.config.GenConfig`).

    Attributes:
        prediction: what the network predicts: ``epsilon`` (the noise) or ``v``
            (``sqrt(alpha_bar) * noise - sqrt(1 - alpha_bar) * x0``).
        schedule: ``cosine`` or ``scaled_linear``; None: the family's choice.
        timesteps: noise levels of the forward process (training).
        autoencoder_steps: ``ldm``: the first steps train the autoencoder.
        sampler: ``ddim`` or ``ddpm``, the default of grids, metrics and ``gen sample``.
        sample_steps: default denoising steps.
        guidance: default classifier-free guidance weight (0: none).
        width: channels of the UNet's first level (None: the family's choice).
        res_blocks: residual blocks per UNet level.
        class_conditional: learn both classes with class embeddings and label dropout
            (False when the run trains on one class).
    """

    # the defaults are the run config's, stated once there (cxrlab.gen.config.GenConfig)
    prediction: str = _RUN_DEFAULTS["prediction"]
    schedule: str | None = _RUN_DEFAULTS["schedule"]
    timesteps: int = _RUN_DEFAULTS["diffusion_steps"]
    autoencoder_steps: int = _RUN_DEFAULTS["autoencoder_steps"]
    sampler: str = _RUN_DEFAULTS["sampler"]
    sample_steps: int = _RUN_DEFAULTS["sample_steps"]
    guidance: float = _RUN_DEFAULTS["guidance"]
    width: int | None = _RUN_DEFAULTS["width"]
    res_blocks: int = _RUN_DEFAULTS["res_blocks"]
    class_conditional: bool = True


@dataclass
class Recipe:
    """Networks and training rules of one family."""

    generator: nn.Module
    discriminator: nn.Module | None  # None for the VAE (it is the generator's encoder pair)
    loss: str
    g_optimizer: OptimizerSpec
    d_optimizer: OptimizerSpec | None
    n_critic: int = 1
    clip_value: float | None = None
    gp_weight: float = 0.0
    conditional: bool = False
    notes: list[str] = field(default_factory=list)
    #: Iterative families (diffusion) draw images with
    #: ``sample(model, n, labels, generator, options) -> (n, 1, S, S)`` in [-1, 1];
    #: None: one pass of ``generator(z, labels)`` (see :mod:`cxrlab.gen.sampling`).
    sample: Callable | None = None
    #: Their ``check_sampling(options)`` refuses sampler settings before any work.
    check_sampling: Callable | None = None
    #: Families with their own objective (diffusion): ``train_step(trainer) -> {name:
    #: 0-dim loss tensor}``, called once per step instead of the adversarial/ELBO step;
    #: it draws batches with ``trainer._real_batch`` and all noise from ``trainer.noise_rng``.
    train_step: Callable | None = None
    #: Loss names ``train_step`` returns (the first columns of metrics.csv).
    loss_names: list[str] = field(default_factory=list)
    #: Networks trained beside the generator (the LDM's autoencoder and patch
    #: discriminator), each with the optimizer of the same name in ``extra_optimizers``;
    #: the trainer sets them up with Fabric, checkpoints and restores them.
    extra_modules: dict[str, nn.Module] = field(default_factory=dict)
    extra_optimizers: dict[str, OptimizerSpec] = field(default_factory=dict)
    #: The step after which the generator starts to train (the LDM's denoiser follows
    #: its autoencoder phase): its EMA starts, and ramps up, there.
    ema_start: int = 0


ModelBuilder = Callable[[int, ModelOptions], Recipe]
MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    def decorator(builder: ModelBuilder) -> ModelBuilder:
        MODELS[name] = builder
        return builder

    return decorator


def check_size(size_px: int) -> int:
    """Number of factor-2 blocks between 4 px and ``size_px`` (a power of two, 32..256)."""
    if size_px < 32 or size_px > 256 or size_px & (size_px - 1):
        raise CxrlabError(f"--size must be a power of two from 32 to 256 px, got {size_px}")
    return int(math.log2(size_px // 4))


def build_model(name: str, size_px: int, options: ModelOptions | None = None) -> Recipe:
    """Build family ``name`` for square ``size_px`` images."""
    from cxrlab.gen.models import conv, diffusion, mlp, vae  # noqa: F401  (registers the families)

    if name not in MODELS:
        raise CxrlabError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    check_size(size_px)
    return MODELS[name](size_px, options or ModelOptions())


def model_names() -> list[str]:
    from cxrlab.gen.models import conv, diffusion, mlp, vae  # noqa: F401

    return sorted(MODELS)
