"""Typed configuration of a classifier run, written as ``config.yaml`` beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from cxrlab.errors import CxrlabError
from cxrlab.utils.config import YamlConfig

ARCHS = ("simple-cnn", "resnet18", "densenet121-xrv")
HEADS = ("logit", "softmax")
#: ``--augment`` values: :data:`cxrlab.preprocess.augment.AUGMENT_CHOICES` (spelled out
#: here so the CLI starts without importing torch; a test keeps the two equal).
AUGMENTS = (
    "none",
    "severe",
    "mild",
    "anatomical",
    "acquisition",
    "severe+acquisition",
    "mild+acquisition",
    "anatomical+acquisition",
)
BALANCES = ("none", "weighted-loss", "oversample")
SCHEDULES = ("cosine", "plateau", "constant")
#: Per-image intensity standardisation inside the model (:func:`cxrlab.clf.models.zscore`).
STANDARDIZATIONS = ("none", "zscore", "histogram")
#: Cross-validation schemes of ``clf train --cv`` (``none``: one ordinary run).
CV_SCHEMES = ("none", "sites")


@dataclass
class ClfConfig(YamlConfig):
    """Everything that defines a run of ``cxrlab clf train``.

    Attributes:
        arch: ``simple-cnn``, ``resnet18`` or ``densenet121-xrv``.
        data: PACKED folder of real images with train/val/test splits.
        out: run folder.
        synthetic: PACKED or folder of PNGs added to the *training* images only.
        synthetic_ratio: synthetic images per real training image (a seeded draw);
            None uses every synthetic image.
        oversample_positive: copies of real COVID-positive training images added (drawn
            with replacement): the control arm of a synthetic experiment.
        synthetic_unverified: accept a ``synthetic`` source without ``provenance.json``
            (which images its generator learned is then unknown; the report says so).
        allow_mismatch: accept ``synthetic`` images made from data preprocessed otherwise
            than ``data`` (size, equalization, crop, lungs, bit depth...; the report says how).
        augment: online augmentation preset of training batches: a geometric one
            (``mild``, ``anatomical``, ``severe``), ``acquisition`` (gamma, contrast,
            blur, noise, resolution drop), or both (``mild+acquisition``); ``none``.
            See :mod:`cxrlab.preprocess.augment`.
        balance: ``none``, ``weighted-loss`` (class weights n / (2 n_c)) or
            ``oversample`` (each epoch draws classes equally often, with replacement).
        freeze_backbone: train only the head (what DeepCovid's script did); default
            trains every layer.
        pretrained: ``auto`` (xrv for densenet121-xrv, none otherwise), ``none``,
            ``imagenet`` (resnet18), ``xrv`` (densenet121-xrv) or a local weights file.
        init: a ``cxrlab clf pretrain`` output (its folder or ``backbone.pt``) whose
            backbone weights start the run (the head stays random); ``pretrained``
            must then be ``auto`` or ``none``.
        recipe: the name of the :data:`cxrlab.clf.recipes.RECIPES` bundle that set the
            options not given explicitly (None: none was used); recorded, not applied
            here (:func:`cxrlab.clf.recipes.with_recipe` applies it).
        head: ``logit`` (one logit, sigmoid + binary cross-entropy) or ``softmax``
            (two logits, softmax + cross-entropy).
        standardize: ``none``, ``zscore`` (each image to zero mean and unit sd of its
            own) or ``histogram`` (each image's histogram matched to the mean one of the
            real training images), as part of the model (training, validation and ``clf
            evaluate`` alike).
        epochs: passes over the training images.
        batch_size: images per optimizer step.
        lr: AdamW learning rate at the start.
        weight_decay: AdamW's decoupled weight decay.
        schedule: ``cosine`` (to ``min_lr_fraction * lr`` at the last epoch, not
            before), ``plateau`` (halve on a validation-loss plateau of 5 epochs) or
            ``constant``.
        min_lr_fraction: the cosine schedule's floor, as a fraction of ``lr``.
        seeds: one run per seed; the summary reports mean and sd over them.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        devices: data-parallel processes (Lightning Fabric DDP) on that device type;
            each takes its share of every batch of ``batch_size`` images.
        bootstrap: patient-level bootstrap resamples for the 95% intervals.
        cv: ``none`` (one run on the PACKED's splits) or ``sites`` (leave-site-out
            cross-validation over the train and val rows, :mod:`cxrlab.clf.cv`).
        folds: folds of whole sites with ``cv: sites`` (None: 5, or fewer when there are
            fewer usable sites).
        splits_file: a CSV (``id``, ``split``) that replaces the PACKED's split column for
            this run; rows it does not list are not used at all. Each fold of a
            cross-validation is a run with its own (``fold-NN/splits.csv``).
        pretrain_epochs: with ``cv: sites``, SimCLR-pretrain the backbone for this many
            epochs in every fold, on that fold's training rows only (``clf pretrain``
            into ``OUT/pretrain/fold-NN``), and start the fold's run from it; 0: none.
    """

    command: ClassVar[str] = "cxrlab clf train"
    resume_free_fields: ClassVar[tuple[str, ...]] = ("seeds", "device", "out")

    arch: str
    data: str
    out: str
    synthetic: str | None = None
    synthetic_ratio: float | None = None
    oversample_positive: int = 0
    synthetic_unverified: bool = False
    allow_mismatch: bool = False
    augment: str = "none"
    balance: str = "none"
    freeze_backbone: bool = False
    pretrained: str = "auto"
    init: str | None = None
    recipe: str | None = None
    head: str = "logit"
    standardize: str = "none"
    epochs: int = 50
    batch_size: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    min_lr_fraction: float = 0.01
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    devices: int = 1
    bootstrap: int = 2000
    cv: str = "none"
    folds: int | None = None
    splits_file: str | None = None
    pretrain_epochs: int = 0

    def __post_init__(self) -> None:
        self.check_types()
        choices = {
            "arch": ARCHS,
            "head": HEADS,
            "augment": AUGMENTS,
            "balance": BALANCES,
            "schedule": SCHEDULES,
            "standardize": STANDARDIZATIONS,
            "cv": CV_SCHEMES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise CxrlabError(
                    f"--{name} {getattr(self, name)!r} is not known; choose one of {', '.join(allowed)}"
                )
        if self.oversample_positive < 0:
            raise CxrlabError(f"--oversample-positive must be >= 0, got {self.oversample_positive}")
        for name in ("epochs", "batch_size", "bootstrap", "devices"):
            if getattr(self, name) < 1:
                raise CxrlabError(f"--{name.replace('_', '-')} must be at least 1")
        if self.devices > 1 and self.batch_size < 2 * self.devices:
            raise CxrlabError(
                f"--batch-size {self.batch_size} is too small for --devices {self.devices}: "
                "each process needs at least 2 images of every batch (BatchNorm)"
            )
        if self.folds is not None and self.cv == "none":
            raise CxrlabError("--folds needs --cv sites")
        if self.folds is not None and self.folds < 2:
            raise CxrlabError(f"--folds must be at least 2, got {self.folds}")
        if self.pretrain_epochs < 0:
            raise CxrlabError(f"--pretrain-epochs must be >= 0, got {self.pretrain_epochs}")
        if self.pretrain_epochs and self.cv == "none":
            raise CxrlabError(
                "--pretrain-epochs needs --cv sites (it pretrains each fold on its own "
                "training sites); for one run use `cxrlab clf pretrain PACKED --out DIR` "
                "and --init DIR"
            )
        if self.pretrain_epochs and (self.init or self.pretrained not in ("auto", "none")):
            other = f"--init {self.init}" if self.init else f"--pretrained {self.pretrained}"
            raise CxrlabError(
                f"--pretrain-epochs and {other} both set the backbone's weights; choose one"
            )
        if self.lr <= 0:
            raise CxrlabError(f"--lr must be positive, got {self.lr}")
        if self.synthetic_ratio is not None and self.synthetic_ratio < 0:
            raise CxrlabError(f"--synthetic-ratio must be >= 0, got {self.synthetic_ratio}")
        if self.synthetic_ratio is not None and not self.synthetic:
            raise CxrlabError("--synthetic-ratio needs --synthetic PACKED_OR_DIR")
        if self.synthetic_unverified and not self.synthetic:
            raise CxrlabError("--synthetic-unverified needs --synthetic PACKED_OR_DIR")
        if not 0.0 <= self.min_lr_fraction <= 1.0:
            raise CxrlabError(f"min_lr_fraction must be in [0, 1], got {self.min_lr_fraction}")
        if self.recipe is not None:
            from cxrlab.clf.recipes import unapplied_recipe

            unapplied_recipe(self.recipe, self)  # refuses an unknown or unapplied recipe
        if self.init and self.pretrained not in ("auto", "none"):
            raise CxrlabError(
                f"--init and --pretrained {self.pretrained} both set the backbone's weights; "
                "choose one"
            )
        self.seeds = [int(s) for s in self.seeds]
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise CxrlabError(f"--seeds must be distinct integers, got {self.seeds}")

    @property
    def resolved_pretrained(self) -> str:
        """``pretrained`` with ``auto`` replaced by the architecture's natural choice
        (``none`` under ``init``: the backbone's weights come from there)."""
        if self.pretrained == "auto" and self.init:
            return "none"
        if self.pretrained == "auto":
            return "xrv" if self.arch == "densenet121-xrv" else "none"
        return self.pretrained


#: Splits ``clf pretrain --pretrain-on`` may name; only ``train`` is used unless asked.
PRETRAIN_SPLITS = ("train", "val", "test", "external")


@dataclass
class PretrainConfig(YamlConfig):
    """Everything that defines a run of ``cxrlab clf pretrain``.

    Attributes:
        backbone: the classifier architecture whose backbone is trained (``--arch``).
        data: PACKED folder; labels are not read.
        out: run folder.
        pretrain_on: splits whose real images are used; anything but ``train`` has to
            be asked for by name, and is recorded.
        splits_file: a CSV (``id``, ``split``) that replaces the PACKED's split column,
            as in ``clf train``: a leave-site-out fold's ``fold-NN/splits.csv`` makes the
            pretraining see that fold's training rows only.
        standardize: the per-image standardisation the classifier will use
            (``clf train --standardize``); the backbone learns on what it will see.
        epochs: passes over the images.
        batch_size: images per step (each gives two views; the others in the batch are
            its negatives).
        lr: AdamW learning rate at the start (cosine to 1% at the end).
        weight_decay: AdamW's decoupled weight decay.
        temperature: NT-Xent's temperature.
        projection_dim: output size of the projection head (thrown away after training).
        seed: weights, image order and views.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    command: ClassVar[str] = "cxrlab clf pretrain"
    run_kind: ClassVar[str] = "pretraining run"

    backbone: str
    data: str
    out: str
    pretrain_on: list[str] = field(default_factory=lambda: ["train"])
    splits_file: str | None = None
    standardize: str = "none"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.5
    projection_dim: int = 128
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.check_types()
        if self.backbone not in ARCHS:
            raise CxrlabError(f"--arch {self.backbone!r} is not known; choose one of {', '.join(ARCHS)}")  # fmt: skip
        if self.standardize not in STANDARDIZATIONS:
            raise CxrlabError(
                f"--standardize {self.standardize!r} is not known; "
                f"choose one of {', '.join(STANDARDIZATIONS)}"
            )
        self.pretrain_on = list(self.pretrain_on)
        unknown = [s for s in self.pretrain_on if s not in PRETRAIN_SPLITS]
        if unknown or not self.pretrain_on or len(set(self.pretrain_on)) != len(self.pretrain_on):
            raise CxrlabError(
                f"--pretrain-on {','.join(self.pretrain_on)}: give distinct split names "
                f"among {', '.join(PRETRAIN_SPLITS)} (e.g. train, or train,val)"
            )
        if self.epochs < 1:
            raise CxrlabError("--epochs must be at least 1")
        if self.batch_size < 2:
            raise CxrlabError(
                "--batch-size must be at least 2: each image's negatives are the others"
            )
        if self.lr <= 0 or self.temperature <= 0:
            raise CxrlabError("--lr and --temperature must be positive")
