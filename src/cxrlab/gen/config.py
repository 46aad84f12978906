"""Typed configuration of a generative training run, written as ``config.yaml`` beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from cxrlab.errors import CxrlabError
from cxrlab.utils.config import YamlConfig
from cxrlab.utils.device import PRECISIONS

LABELS = {"positive": 1, "negative": 0}
#: Families trained by denoising (their own objective and iterative sampler).
DIFFUSION_MODELS = ("ddpm", "ldm")
PREDICTIONS = ("epsilon", "v")
SCHEDULES = ("cosine", "scaled_linear")
SAMPLERS = ("ddim", "ddpm")
#: GAN-only settings a diffusion run refuses (they would be silently ignored).
_GAN_ONLY = {"diffaug": "", "spectral_norm": False, "loss": None, "n_critic": None, "lr_d": None}


@dataclass
class GenConfig(YamlConfig):
    """Everything that defines a run of ``cxrlab gen train``.

    Attributes:
        model: family name (``gan``, ``wgan``, ``wgan-gp``, ``cgan``, ``dcgan``, ``vae``,
            ``ddpm``, ``ldm``).
        data: PACKED folder of real images.
        out: run folder.
        size_px: image side; must equal the PACKED's.
        label: ``positive``/``negative`` to train on one class (the manifest's covid column), None for all.
        split: split(s) of PACKED to train on (comma-separated; None: all rows).
        steps: generator updates; one step is one batch, like the thesis' "epochs".
        batch_size: images per batch (per device).
        sample_interval / save_interval / log_interval: in steps.
        metrics: metric names computed at each save interval (see ``cxrlab metrics``).
        metrics_n: generated images per metric evaluation.
        features: feature extractor for network-based metrics.
        seed: the same seed gives the same run (bitwise on CPU).
        device: ``auto``, ``cpu``, ``cuda``.
        devices: data-parallel processes (Lightning Fabric DDP) on that device type.
        precision: ``auto`` (bf16 mixed precision on CUDA, float32 on the CPU), ``bf16``
            (bf16 autocast on the CPU too: faster where the CPU has bf16 units) or ``32``.
        latent_dim: size of z.
        generator: ``default`` or ``conv`` (wgan, wgan-gp: DCGAN generator instead of the MLP).
        diffaug: DiffAugment policy applied to real and fake images before the discriminator.
        spectral_norm: spectral normalisation in the discriminator.
        loss: override the family's adversarial loss (``hinge``, ``bce``, ``wasserstein``).
        ema: decay of an exponential moving average of the generator's weights (0: off).
        augment: classical augmentation preset applied online to real batches (the thesis'
            "augmented" runs): ``mild``, ``anatomical``, ``severe``.
        lr_g / lr_d / n_critic: override the family's values.
        wandb: also log to Weights & Biases (needs ``wandb`` installed).
        prediction: diffusion: the network predicts ``v`` (Salimans & Ho 2022; reliable
            at the noisiest levels, where a predicted noise says almost nothing about
            the image) or ``epsilon`` (the noise, Ho et al. 2020).
        schedule: diffusion: noise schedule ``cosine`` or ``scaled_linear`` (None: ddpm
            cosine, ldm scaled_linear).
        diffusion_steps: diffusion: noise levels of the forward process.
        autoencoder_steps: ldm: the first steps train the KL autoencoder, the rest the
            latent denoiser.
        sampler / sample_steps / guidance: diffusion: how the run's sample grids and
            metrics draw images, and ``gen sample``'s defaults (``ddim`` or ``ddpm``;
            classifier-free guidance weight, 0: none, needs a run without ``label``).
        width / res_blocks: diffusion: channels of the UNet's first level (None: 64)
            and residual blocks per level.
    """

    command: ClassVar[str] = "cxrlab gen train"
    # What a resume may change: none of these changes the training maths (metrics
    # draw from their own noise generator; saving and logging read, never draw).
    resume_free_fields: ClassVar[tuple[str, ...]] = (
        "out",
        "device",
        "steps",
        "sample_interval",
        "save_interval",
        "log_interval",
        "metrics",
        "metrics_n",
        "wandb",
    )

    model: str
    data: str
    out: str
    size_px: int = 64
    label: str | None = None
    split: str | None = "train"
    steps: int = 10000
    batch_size: int = 32
    sample_interval: int = 200
    save_interval: int = 1000
    log_interval: int = 10
    metrics: list[str] = field(default_factory=list)
    metrics_n: int = 256
    features: str = "inception"
    seed: int = 0
    device: str = "auto"
    devices: int = 1
    precision: str = "auto"
    latent_dim: int = 100
    generator: str = "default"
    diffaug: str = ""
    spectral_norm: bool = False
    loss: str | None = None
    ema: float = 0.0
    augment: str | None = None
    lr_g: float | None = None
    lr_d: float | None = None
    n_critic: int | None = None
    wandb: bool = False
    prediction: str = "v"
    schedule: str | None = None
    diffusion_steps: int = 1000
    autoencoder_steps: int = 2000
    sampler: str = "ddim"
    sample_steps: int = 50
    guidance: float = 0.0
    width: int | None = None
    res_blocks: int = 2

    def __post_init__(self) -> None:
        self.check_types()
        if self.label is not None and self.label not in LABELS:
            raise CxrlabError(f"--label must be positive or negative, got {self.label!r}")
        if self.precision not in PRECISIONS:
            raise CxrlabError(
                f"--precision {self.precision!r} is not known; choose one of {', '.join(PRECISIONS)}"
            )
        for name in (
            "steps",
            "batch_size",
            "sample_interval",
            "save_interval",
            "log_interval",
            "devices",
        ):
            if getattr(self, name) < 1:
                raise CxrlabError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0.0 <= self.ema < 1.0:
            raise CxrlabError(f"--ema must be a decay in [0, 1), got {self.ema}")
        if self.loss not in (None, "bce", "wasserstein", "hinge"):
            raise CxrlabError(f"--loss must be bce, wasserstein or hinge, got {self.loss!r}")
        self._check_diffusion()

    def _check_diffusion(self) -> None:
        """The diffusion settings: valid values, and no GAN-only setting on a diffusion run."""
        if self.prediction not in PREDICTIONS:
            raise CxrlabError(f"--prediction must be epsilon or v, got {self.prediction!r}")
        if self.schedule not in (None, *SCHEDULES):
            raise CxrlabError(f"--schedule must be cosine or scaled_linear, got {self.schedule!r}")
        if self.sampler not in SAMPLERS:
            raise CxrlabError(f"--sampler must be ddim or ddpm, got {self.sampler!r}")
        for name in ("diffusion_steps", "sample_steps", "res_blocks"):
            if getattr(self, name) < 1:
                raise CxrlabError(f"--{name.replace('_', '-')} must be at least 1")
        if self.autoencoder_steps < 0:
            raise CxrlabError("--autoencoder-steps must be at least 0")
        if self.sample_steps > self.diffusion_steps:
            raise CxrlabError(
                f"--sample-steps {self.sample_steps} exceeds --diffusion-steps "
                f"{self.diffusion_steps}: a sampler visits at most every noise level once"
            )
        if self.guidance < 0:
            raise CxrlabError(f"--guidance must be at least 0, got {self.guidance}")
        if self.width is not None and (self.width < 8 or self.width % 8):
            raise CxrlabError(
                f"--width must be a multiple of 8 (8, 16, 32, 64...), got {self.width}"
            )
        if self.model not in DIFFUSION_MODELS:
            return
        if self.guidance and self.label is not None:
            raise CxrlabError(
                f"--guidance {self.guidance}: a run on --label {self.label} images is "
                "unconditional and cannot be guided; train without --label (both classes) "
                "to use classifier-free guidance, or pass --guidance 0"
            )
        for name, default in _GAN_ONLY.items():
            if getattr(self, name) != default:
                hint = " (the denoiser's learning rate is --lr-g)" if name == "lr_d" else ""
                raise CxrlabError(
                    f"--{name.replace('_', '-')} applies to the GAN families' discriminators; "
                    f"{self.model} trains none with it: leave it out{hint}"
                )

    def diffusion_options(self):
        """The diffusion families' settings (:class:`~cxrlab.gen.models.DiffusionOptions`)."""
        from cxrlab.gen.models import DiffusionOptions

        return DiffusionOptions(
            prediction=self.prediction, schedule=self.schedule, timesteps=self.diffusion_steps,
            autoencoder_steps=self.autoencoder_steps, sampler=self.sampler,
            sample_steps=self.sample_steps, guidance=self.guidance, width=self.width,
            res_blocks=self.res_blocks, class_conditional=self.label is None,
        )  # fmt: skip

    @property
    def covid(self) -> int | None:
        return None if self.label is None else LABELS[self.label]

    @property
    def splits(self) -> list[str] | None:
        return split_names(self.split)


def split_names(split: str | None) -> list[str] | None:
    """The splits of a ``--split`` value ("train,val" -> ["train", "val"]; None: all rows)."""
    return [s.strip() for s in split.split(",")] if split else None


def learns_held_out(split: str | None) -> bool:
    """Whether a generator trained on ``split`` learns rows other than the train split's
    (all rows, val or test): ``gen train`` warns. What a classifier may use is decided
    from the rows actually learned (``provenance.json`` of ``gen sample``, checked by
    :func:`cxrlab.data.provenance.check_synthetic`), not from this name."""
    return set(split_names(split) or []) != {"train"}
