"""Typed configuration of a lung segmentation run, written as ``config.yaml`` beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from cxrlab.errors import CxrlabError
from cxrlab.utils.config import YamlConfig

#: The network families ``cxrlab seg train`` builds (the key also marks a folder as a
#: segmentation run: see :func:`cxrlab.utils.outputs.folder_kind`).
SEGMENTERS = ("monai-unet",)
AUGMENTS = ("none", "mild")

#: Fields that may differ between a run and its resume without changing its results
#: (``epochs`` may only go up: see :meth:`SegConfig.extended_from`).
RESUME_FREE_FIELDS = ("device", "out", "epochs", "schedule_epochs")


@dataclass
class SegConfig(YamlConfig):
    """Everything that defines a run of ``cxrlab seg train``.

    Attributes:
        data: dataset folder (``cxrlab data import`` + ``data split``) whose rows have
            a ``mask_path``; trains on ``train``, chooses the epoch on ``val``.
        out: run folder (SEGRUN).
        segmenter: the network family; ``monai-unet`` is MONAI's residual U-Net.
        size_px: images and masks are resized (stretched) to this square side.
        channels: feature maps per U-Net level (each level halves the resolution).
        res_units: residual units per U-Net block.
        augment: ``mild`` (random affine warp applied identically to image and mask,
            and a random gamma on the image) or ``none``.
        epochs: passes over the training images.
        schedule_epochs: epochs the cosine learning-rate schedule spans; the rest train
            at its final rate (None: ``epochs``). Set when a resume raised ``epochs``, so
            that the epochs already trained keep the schedule they were trained with and
            this file still reproduces the run.
        batch_size: images per optimizer step.
        lr: AdamW learning rate at the start (cosine schedule to 1% of it).
        weight_decay: AdamW's decoupled weight decay.
        seed: weights, data order and augmentation.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    command: ClassVar[str] = "cxrlab seg train"
    run_kind: ClassVar[str] = "segmentation run"
    resume_free_fields: ClassVar[tuple[str, ...]] = RESUME_FREE_FIELDS

    data: str
    out: str
    segmenter: str = "monai-unet"
    size_px: int = 128
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    res_units: int = 2
    augment: str = "mild"
    epochs: int = 60
    schedule_epochs: int | None = None
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.segmenter not in SEGMENTERS:
            raise CxrlabError(
                f"--segmenter {self.segmenter!r} is not known; choose one of {', '.join(SEGMENTERS)}"
            )
        if self.augment not in AUGMENTS:
            raise CxrlabError(
                f"--augment {self.augment!r} is not known; choose one of {', '.join(AUGMENTS)}"
            )
        self.channels = [int(c) for c in self.channels]
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise CxrlabError(
                f"--channels needs at least two positive numbers, got {self.channels}"
            )
        levels = 2 ** (len(self.channels) - 1)
        if not 16 <= self.size_px <= 1024 or self.size_px % levels:
            raise CxrlabError(
                f"--size must be 16..1024 px and divisible by {levels} (the U-Net halves it "
                f"{len(self.channels) - 1} times), got {self.size_px}"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise CxrlabError(f"--{name.replace('_', '-')} must be at least 1")
        if self.schedule_epochs is not None and not 1 <= self.schedule_epochs <= self.epochs:
            raise CxrlabError(
                f"schedule_epochs must be 1..epochs ({self.epochs}), got {self.schedule_epochs}"
            )
        if self.res_units < 0:
            raise CxrlabError(f"--res-units must be >= 0, got {self.res_units}")
        if self.lr <= 0:
            raise CxrlabError(f"--lr must be positive, got {self.lr}")

    @property
    def cosine_epochs(self) -> int:
        """Epochs the learning rate follows its cosine over (then it stays at the end)."""
        return self.schedule_epochs or self.epochs

    def extended_from(self, recorded: SegConfig) -> SegConfig:
        """This config as the resume of the run recorded with ``recorded``: more epochs
        keep the recorded schedule (the extra ones train at its final learning rate).

        Raises:
            CxrlabError: when ``epochs`` went down (the run may already be past it).
        """
        if self.epochs < recorded.epochs:
            raise CxrlabError(
                f"--resume: --epochs may only go up (the run was set to {recorded.epochs}, "
                f"got {self.epochs}); to keep an earlier epoch, use its best.pt or start a "
                "new --out"
            )
        self.schedule_epochs = (
            recorded.cosine_epochs if self.epochs > recorded.epochs else (recorded.schedule_epochs)
        )
        return self

    def check_resume(self, recorded: YamlConfig, run) -> None:
        """As :meth:`YamlConfig.check_resume`, after taking the recorded schedule
        (:meth:`extended_from`)."""
        self.extended_from(recorded)  # type: ignore[arg-type]
        super().check_resume(recorded, run)
