"""Typed configuration of a generative training run, written as ``config.yaml`` beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from cxrlab.errors import CxrlabError
from cxrlab.utils.config import YamlConfig

LABELS = {"positive": 1, "negative": 0}


@dataclass
class GenConfig(YamlConfig):
    """Everything that defines a run of ``cxrlab gen train``.

    Attributes:
        model: family name (``gan``, ``wgan``, ``wgan-gp``, ``cgan``, ``dcgan``, ``vae``).
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
    """

    command: ClassVar[str] = "cxrlab gen train"
    resume_free_fields: ClassVar[tuple[str, ...]] = (
        "out",
        "device",
        "steps",
        "sample_interval",
        "log_interval",
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

    def __post_init__(self) -> None:
        self.check_types()
        if self.label is not None and self.label not in LABELS:
            raise CxrlabError(f"--label must be positive or negative, got {self.label!r}")
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

    @property
    def covid(self) -> int | None:
        return None if self.label is None else LABELS[self.label]

    @property
    def splits(self) -> list[str] | None:
        return [s.strip() for s in self.split.split(",")] if self.split else None
