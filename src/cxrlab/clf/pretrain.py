"""Self-supervised pretraining of a classifier's backbone (SimCLR), and loading it back.

``cxrlab clf pretrain PACKED --out DIR`` trains the backbone of a classifier
(:func:`~cxrlab.clf.models.build_classifier`, random weights) to give two views of
the same image similar features and views of other images different ones: SimCLR's
NT-Xent loss and projection head, from the ``lightly`` library. Labels are never
read. The views are what should not change a diagnosis: a random crop and a small
warp (no flip: the heart stays left), then the acquisition changes of
:class:`~cxrlab.preprocess.augment.IntensityAugment` (gamma, contrast, blur, noise,
resolution), which differ between hospitals.

Only the real images of the PACKED's ``train`` split are used unless ``pretrain_on``
names other splits (``--pretrain-on train,val``); the run records which it saw. A
``splits_file`` (``--splits-file``, as ``clf train`` takes) replaces the split column
first: with a leave-site-out fold's ``fold-NN/splits.csv`` the backbone learns from
that fold's training sites only, never from the sites the fold is judged on.
``DIR`` receives

* ``backbone.pt``: the backbone's ``state_dict`` (``torch.save``, written atomically),
  what ``clf train --init DIR`` loads;
* ``pretrain.json``: architecture, image size, the splits and number of images seen,
  the loss of every epoch, the SHA-256 of ``backbone.pt`` and the library's version;
* ``images.csv``: ``id``, ``patient_id``, ``source``, ``split`` of every image seen, so
  a classifier initialised from it can say which of the images it is judged on the
  pretraining saw;
* ``config.yaml`` (:class:`PretrainConfig`) and ``checkpoints/last.pt`` (rewritten
  after every epoch: ``--resume`` continues from it, bitwise the same on CPU).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxrlab.clf.config import PretrainConfig
from cxrlab.clf.data import ImagePart, ImageSet, generated_mask, with_splits
from cxrlab.clf.models import Classifier, ModelSpec, build_classifier, histogram_reference
from cxrlab.data.packed import Packed, open_packed
from cxrlab.errors import CxrlabError, DatasetError
from cxrlab.preprocess.augment import IntensityAugment, IntensityShift, KerasAugment
from cxrlab.utils.checkpoint import load_checkpoint, save_checkpoint
from cxrlab.utils.device import resolve_device
from cxrlab.utils.fs import atomic_path, atomic_write_text, sha256_file
from cxrlab.utils.outputs import OTHER, check_output, folder_kind
from cxrlab.utils.progress import tqdm
from cxrlab.utils.runlog import RunLog, capture_rng, restore_rng

WEIGHTS = "backbone.pt"
RECORD = "pretrain.json"
IMAGES = "images.csv"
LAST = "last.pt"
EPOCH_COLUMNS = ["epoch", "lr", "loss", "seconds"]

#: The views' geometry: a small warp without flips (anatomy keeps its side) after a
#: random crop of 40-100% of the image (the crop is what SimCLR learns most from).
VIEW_WARP = KerasAugment(10, 0.0, 0.05, 0.05, 0.15, False)
VIEW_CROP_SCALE = (0.4, 1.0)
#: The views' intensities: every acquisition change, each more often than in training.
VIEW_INTENSITY = IntensityAugment(p=0.8)


@dataclass
class PretrainResult:
    """Where the weights are, and the record written beside them."""

    out: Path
    weights: Path
    record: dict


# ------------------------------------------------------------------ views
class TwoViews(nn.Module):
    """Two random views of each image of a (B, 1, S, S) batch in [0, 1], seeded.

    The draw depends only on ``(seed, step)``, so a resumed run sees the same views.
    """

    def __init__(self, size_px: int, seed: int) -> None:
        super().__init__()
        import kornia.augmentation as K

        from cxrlab.preprocess.augment import build_augmenter

        self.seed = seed
        self.augmenter = nn.Sequential(
            K.RandomResizedCrop((size_px, size_px), scale=VIEW_CROP_SCALE, p=1.0),
            build_augmenter(VIEW_WARP),
            IntensityShift(VIEW_INTENSITY),
        )

    @torch.no_grad()
    def forward(self, images: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        devices = [images.device] if images.device.type == "cuda" else []
        views = []
        for view in (0, 1):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed((self.seed * 1_000_003 + step) * 2 + view)
                views.append(self.augmenter(images).clamp(0, 1))
        return views[0], views[1]


# ------------------------------------------------------------------ data
def pretraining_images(config: PretrainConfig) -> ImageSet:
    """The real images of the splits ``config.pretrain_on`` names (never augmented or
    synthetic rows), as one :class:`ImageSet` over the PACKED's array. Labels are not
    read: every row's ``covid`` is 0.

    Raises:
        DatasetError: naming a split that holds no real image.
    """
    packed = open_packed(config.data)
    if config.splits_file:
        packed = with_splits(packed, config.splits_file)
    manifest = packed.manifest
    real = ~generated_mask(manifest)
    for split in config.pretrain_on:
        if not (real & manifest["split"].eq(split).to_numpy()).any():
            raise DatasetError(
                f"{packed.path}: no real images in split {split!r} (its splits: "
                f"{sorted(set(manifest['split']))}); name only splits that hold images in "
                "--pretrain-on"
            )
    rows = np.nonzero(real & manifest["split"].isin(config.pretrain_on).to_numpy())[0]
    chosen = manifest.iloc[rows]
    table = pd.DataFrame(
        {
            "id": chosen["id"].to_numpy(),
            "patient_id": chosen["patient_id"].to_numpy(),
            "source": chosen["source"].to_numpy(),
            "split": chosen["split"].to_numpy(),
            "covid": 0,
            "origin": "real",
            "part": 0,
            "row": rows,
        }
    )
    return ImageSet([ImagePart(packed.images, rows)], table, int(packed.images.shape[-1]))


def build_backbone(config: PretrainConfig, size_px: int) -> Classifier:
    """The classifier whose backbone is trained: random weights (seeded), as ``clf train
    --arch`` builds it from scratch, so its backbone loads into that one key for key."""
    spec = ModelSpec(config.backbone, size_px, pretrained="none", standardize=config.standardize)
    torch.manual_seed(config.seed)
    return build_classifier(spec)


class ProjectedBackbone(nn.Module):
    """The backbone, global average pooling and lightly's SimCLR projection head:
    (B, 1, S, S) images in [0, 1] -> (B, ``projection_dim``) embeddings."""

    def __init__(self, classifier: Classifier, size_px: int, projection_dim: int) -> None:
        super().__init__()
        from lightly.models.modules import SimCLRProjectionHead

        self.classifier = classifier
        with torch.no_grad():
            channels = classifier.features(torch.zeros(2, 1, size_px, size_px)).shape[1]
        self.projection = SimCLRProjectionHead(channels, 512, projection_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.classifier.features(images)
        return self.projection(maps.mean(dim=(2, 3)))


# ------------------------------------------------------------------ training
class Pretrainer:
    """One pretraining run of a :class:`PretrainConfig` (see the module doc)."""

    def __init__(self, config: PretrainConfig, *, progress: bool = True) -> None:
        from lightly.loss import NTXentLoss

        self.config = config
        self.progress = progress
        self.out = Path(config.out)
        self.device = resolve_device(config.device)
        self.images = pretraining_images(config)
        if len(self.images) < 2:
            raise CxrlabError(
                f"{config.data}: splits {','.join(config.pretrain_on)} hold "
                f"{len(self.images)} real image(s); contrastive pretraining needs at least 2"
            )
        size_px = self.images.size_px
        self.size_px = size_px
        self.classifier = build_backbone(config, size_px)
        if config.standardize == "histogram":  # what clf train will match images to
            self.classifier.set_histogram_reference(histogram_reference(self.images))
        self.model = ProjectedBackbone(self.classifier, size_px, config.projection_dim)
        self.model.to(self.device)
        self.views = TwoViews(size_px, config.seed)
        self.loss_fn = NTXentLoss(temperature=config.temperature)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=config.epochs, eta_min=config.lr * 0.01
        )
        self.order_rng = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.losses: list[float] = []
        self.elapsed = 0.0

    def state(self) -> dict:
        return {
            "epoch": self.epoch,
            "losses": self.losses,
            "seconds": self.elapsed,
            "config": self.config.as_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_order": self.order_rng.get_state(),
            **capture_rng(self.device),
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.order_rng.set_state(state["rng_order"])
        restore_rng(state, self.device)
        self.epoch = int(state["epoch"])
        self.losses = [float(v) for v in state["losses"]]
        self.elapsed = float(state["seconds"])

    def train_epoch(self) -> float:
        """One pass over the images in a seeded order; the mean NT-Xent loss."""
        config = self.config
        order = torch.randperm(len(self.images), generator=self.order_rng).numpy()
        batches = [
            order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)
        ]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches.pop()  # one image has no negatives (and BatchNorm needs two)
        self.model.train()
        total, counted = 0.0, 0
        bar = tqdm(
            batches,
            desc=f"pretrain epoch {self.epoch + 1}/{config.epochs}",
            leave=False,
            disable=not self.progress,
        )
        for index, positions in enumerate(bar):
            images = self.images.batch(positions).to(self.device)
            first, second = self.views(images, self.epoch * len(batches) + index)
            loss = self.loss_fn(self.model(first).float(), self.model(second).float())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(positions)
            counted += len(positions)
        bar.close()
        mean = total / counted
        if not math.isfinite(mean):
            raise CxrlabError(
                f"{self.out}: pretraining diverged in epoch {self.epoch + 1} (non-finite "
                f"loss); the last finished epoch is kept in checkpoints/{LAST}. Pretrain "
                "again with a lower --lr into another --out"
            )
        return mean

    def run(self, resume: bool = False) -> PretrainResult:
        config = self.config
        last = self.out / "checkpoints" / LAST
        if resume and last.is_file():
            self.load_state(load_checkpoint(last, map_location=self.device))
        log = RunLog(self.out / "epochs.csv", EPOCH_COLUMNS, keep_through=self.epoch, key="epoch")
        start = time.perf_counter() - self.elapsed
        while self.epoch < config.epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            loss = self.train_epoch()
            self.epoch += 1
            self.scheduler.step()
            self.losses.append(loss)
            self.elapsed = time.perf_counter() - start
            log.append({"epoch": self.epoch, "lr": lr, "loss": loss, "seconds": round(self.elapsed, 2)})  # fmt: skip
            save_checkpoint(last, self.state())
            if self.progress:
                tqdm.write(
                    f"pretrain epoch {self.epoch}/{config.epochs}: lr {lr:.2e}, "
                    f"NT-Xent loss {loss:.4f}"
                )
        return self.finish()

    def finish(self) -> PretrainResult:
        """Write ``backbone.pt``, ``images.csv`` and, last, ``pretrain.json``."""
        import lightly

        weights = self.out / WEIGHTS
        backbone = {k: v.detach().cpu() for k, v in self.classifier.backbone.state_dict().items()}
        with atomic_path(weights) as tmp:
            torch.save(backbone, tmp)
        seen = self.images.table[["id", "patient_id", "source", "split"]]
        with atomic_path(self.out / IMAGES) as tmp:
            seen.to_csv(tmp, index=False)
        counts = seen["split"].value_counts()
        record = {
            "method": "SimCLR",
            "library": f"lightly {lightly.__version__} (NTXentLoss, SimCLRProjectionHead)",
            "arch": self.config.backbone,
            "size_px": self.size_px,
            "standardize": self.config.standardize,
            "data": str(self.config.data),
            "splits": list(self.config.pretrain_on),
            "splits_file": self.config.splits_file,
            "images": {split: int(counts.get(split, 0)) for split in self.config.pretrain_on},
            "patients": int(seen["patient_id"].nunique()),
            "epochs": self.epoch,
            "loss_per_epoch": [round(v, 6) for v in self.losses],
            "seconds": round(self.elapsed, 1),
            "device": str(self.device),
            "weights": WEIGHTS,
            "weights_sha256": sha256_file(weights),
        }
        atomic_write_text(self.out / RECORD, json.dumps(record, indent=2) + "\n")
        return PretrainResult(self.out, weights, record)


def pretrain_backbone(
    config: PretrainConfig, *, resume: bool = False, progress: bool = True
) -> PretrainResult:
    """Pretrain (or resume, or return the finished) run of ``config``.

    Raises:
        CxrlabError: an ``out`` that is an input or holds something else, a started run
            without ``resume`` or under other settings, too few images.
    """
    out = Path(config.out)
    check_output(out, kind=OTHER, inputs=[config.data, config.splits_file])
    if folder_kind(out) == OTHER and not _is_pretraining_run(out):
        raise CxrlabError(
            f"--out {out} holds files cxrlab's pretraining did not write; choose another --out"
        )
    started = (out / "checkpoints" / LAST).is_file()
    config.guard_run_folder(out, resume, started=started)
    record = out / RECORD
    if resume and record.is_file() and (out / WEIGHTS).is_file():
        return PretrainResult(out, out / WEIGHTS, json.loads(record.read_text()))
    trainer = Pretrainer(config, progress=progress)  # refuses empty splits before writing
    out.mkdir(parents=True, exist_ok=True)
    config.write(out / "config.yaml")
    return trainer.run(resume=resume)


def _is_pretraining_run(folder: Path) -> bool:
    """Whether ``folder/config.yaml`` is a :class:`PretrainConfig`'s."""
    import yaml

    try:
        values = yaml.safe_load((folder / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(values, dict) and {"backbone", "pretrain_on"} <= set(values)


# ------------------------------------------------------------------ loading (clf train --init)
@dataclass
class BackboneInit:
    """A pretrained backbone for ``clf train --init``: its weights and what it saw.

    Attributes:
        weights: path of ``backbone.pt``.
        state: the backbone's state_dict.
        record: ``pretrain.json``.
        seen: ``images.csv`` (id, patient_id, source, split) of the images it saw.
    """

    weights: Path
    state: dict[str, torch.Tensor]
    record: dict
    seen: pd.DataFrame

    def summary(self) -> dict:
        """What a classifier run records of its initialisation."""
        return {
            "path": str(self.weights),
            "sha256": sha256_file(self.weights),
            "arch": self.record.get("arch"),
            "method": self.record.get("method"),
            "data": self.record.get("data"),
            "splits": self.record.get("splits"),
            "images": self.record.get("images"),
        }


def read_init(path: str | Path) -> BackboneInit:
    """Read a ``clf pretrain`` output (its folder or its ``backbone.pt``).

    Raises:
        CxrlabError: naming the path and the fix, when it is missing, is not a
            pretraining output, or cannot be read as weights.
    """
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    if not weights.is_file():
        raise CxrlabError(
            f"--init {path}: no {WEIGHTS} there; give a folder written by "
            "`cxrlab clf pretrain PACKED --out DIR` (or its backbone.pt)"
        )
    record_path, seen_path = weights.parent / RECORD, weights.parent / IMAGES
    if not record_path.is_file() or not seen_path.is_file():
        raise CxrlabError(
            f"--init {path}: {RECORD} or {IMAGES} is missing beside {weights.name}, so which "
            "images the pretraining saw is unknown; give the whole folder `cxrlab clf "
            "pretrain` wrote (pretrain again if it was not finished)"
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        record = json.loads(record_path.read_text())
        seen = pd.read_csv(seen_path, dtype=str, keep_default_na=False)
    except Exception as error:  # torch, json and pandas raise several types
        first = (str(error).splitlines() or [""])[0]
        raise CxrlabError(
            f"--init {path}: cannot read it ({type(error).__name__}: {first}); pretrain again"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CxrlabError(f"--init {weights} holds no state_dict of a backbone")
    return BackboneInit(weights, state, record, seen)


def check_init(init: BackboneInit, *, arch: str, standardize: str) -> None:
    """Refuse a pretrained backbone of another architecture or standardisation.

    Raises:
        CxrlabError: naming the weights, what differs and the fix.
    """
    pretrained_arch = init.record.get("arch")
    if pretrained_arch != arch:
        raise CxrlabError(
            f"--init {init.weights} holds a {pretrained_arch} backbone but --arch is {arch}; "
            f"train with --arch {pretrained_arch}, or pretrain a {arch} with "
            f"`cxrlab clf pretrain PACKED --arch {arch}`"
        )
    pretrained_standardize = init.record.get("standardize", "none")
    if pretrained_standardize != standardize:
        raise CxrlabError(
            f"--init {init.weights} was pretrained with --standardize {pretrained_standardize} "
            f"but this run uses {standardize}: the backbone would see other inputs than it "
            f"learned on; pass --standardize {pretrained_standardize}"
        )


def load_init(model: Classifier, init: BackboneInit, *, arch: str, standardize: str) -> None:
    """Copy ``init``'s weights into ``model.backbone`` (every key, bitwise).

    Raises:
        CxrlabError: when the pretrained architecture or standardisation differs from the
            run's (:func:`check_init`), or the weights do not fit the backbone.
    """
    check_init(init, arch=arch, standardize=standardize)
    try:
        model.backbone.load_state_dict(init.state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CxrlabError(
            f"--init {init.weights} does not fit the {arch} backbone ({first}); "
            "pretrain again with this cxrlab"
        ) from error


def init_notes(
    init_path: str | Path | None, packed: Packed, *, arch: str, standardize: str
) -> list[str]:
    """What a classifier run initialised from ``init_path`` reports: where its backbone
    comes from, and how many of the images it is chosen or judged on (real rows of
    ``packed``'s val, test and external splits) the pretraining saw, unlabelled.

    Raises:
        CxrlabError: an unreadable or mismatched ``init_path`` (before any training).
    """
    if not init_path:
        return []
    init = read_init(init_path)
    check_init(init, arch=arch, standardize=standardize)
    record = init.record
    images = sum((record.get("images") or {}).values())
    notes = [
        f"backbone initialised from {init.weights} ({record.get('method')} on "
        f"{','.join(record.get('splits') or [])} of {record.get('data')}, {images} images)"
    ]
    manifest = packed.manifest
    real = ~generated_mask(manifest)
    seen = set(init.seen["id"].astype(str))
    for split in ("val", "test", "external"):
        ids = manifest.loc[real & manifest["split"].eq(split).to_numpy(), "id"].astype(str)
        overlap = int(ids.isin(seen).sum())
        if overlap:
            notes.append(
                f"the backbone's pretraining saw {overlap} of the {len(ids)} {split} images "
                f"(unlabelled, --pretrain-on {','.join(record.get('splits') or [])}): "
                f"{split} figures may be optimistic"
            )
    return notes


def init_summary(init_path: str | Path | None) -> dict | None:
    """The run's record of its initialisation (path, SHA-256, what the pretraining saw)."""
    return read_init(init_path).summary() if init_path else None
