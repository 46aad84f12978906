"""Classifier epochs: cxrlab vs a DeepCovid-style loop, and the frozen-backbone feature cache.

Baseline (written here after the regime of shervinmin/DeepCovid's ResNet18_train.py):
an ImageFolder of PNGs read through ``Resize(224)`` + ``RandomResizedCrop(224)`` +
ImageNet normalisation by a 0-worker DataLoader, a ResNet-18 (no pretrained weights
here: no downloads) with every layer frozen and a new 2-way fc trained by SGD (lr 1e-4,
momentum 0.9, StepLR 7 / 0.1), batch 20, a validation pass each epoch.
cxrlab: ``clf train --arch resnet18 --freeze-backbone --pretrained none --batch-size 20
--augment mild`` on a 224 px PACKED of the same images (online augmentation on).
The PNGs are those same 224 px images: the baseline decodes small files, not the
originals (a conservative baseline).
Then ``--augment none``: the feature cache (the backbone's maps computed once per run)
against recomputing them every epoch. Target: >= 2x per epoch vs the baseline.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from torchvision.models import resnet18

import cxrlab.clf.trainer as clf_trainer
from common import dev_dataset, workdir
from cxrlab.clf.config import ClfConfig
from cxrlab.clf.trainer import train_classifier
from cxrlab.data.api import split_dataset
from cxrlab.data.packed import open_packed, preprocess_dataset
from cxrlab.preprocess.transforms import PreprocessOptions

SIZE_PX = 224
EPOCHS = 2  # per contender; per-epoch seconds are their mean
CACHED_EPOCHS = 4  # the first computes the cache
RUN_EPOCHS = 50  # a run's length, for the projection


def image_folder(packed: Path, out: Path) -> Path:
    """The PACKED's train and val images as ImageFolder PNGs: out/{train,val}/{covid,other}."""
    data = open_packed(packed)
    for index, row in data.manifest.iterrows():
        if row["split"] not in ("train", "val"):
            continue
        folder = out / row["split"] / ("covid" if int(row["covid"]) else "other")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(data.images[index])).save(folder / f"{index}.png")
    return out


def deepcovid_epochs(folder: Path, epochs: int) -> list[float]:
    """Seconds of each epoch (train + validation) of the DeepCovid-style loop."""
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train_tf = transforms.Compose(
        [
            transforms.Resize(224),
            transforms.RandomResizedCrop(224),
            transforms.ToTensor(),
            normalize,
        ]
    )
    val_tf = transforms.Compose(
        [transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor(), normalize]
    )
    loaders = {
        "train": DataLoader(
            datasets.ImageFolder(folder / "train", train_tf), batch_size=20, shuffle=True
        ),
        "val": DataLoader(datasets.ImageFolder(folder / "val", val_tf), batch_size=20),
    }
    model = resnet18(weights=None)
    for parameter in model.parameters():
        parameter.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, 2)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.fc.parameters(), lr=1e-4, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for phase in ("train", "val"):
            model.train(phase == "train")
            correct = 0
            for images, labels in loaders[phase]:
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(images)
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                correct += int((outputs.argmax(1) == labels).sum())
            if phase == "train":
                scheduler.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def cxrlab_epochs(packed: Path, out: Path, epochs: int, augment: str) -> list[float]:
    """Seconds of each epoch of ``clf train`` (from its epochs.csv), train + validation."""
    config = ClfConfig(
        data=str(packed), out=str(out), arch="resnet18", freeze_backbone=True,
        pretrained="none", batch_size=20, augment=augment, epochs=epochs, device="cpu",
        bootstrap=100,
    )  # fmt: skip
    train_classifier(config, progress=False)
    elapsed = pd.read_csv(out / "seed_0" / "epochs.csv")["seconds"].to_numpy()
    return list(np.diff(np.concatenate([[0.0], elapsed])))


def main() -> None:
    with workdir() as tmp:
        tmp = Path(tmp)
        dataset, what = dev_dataset(tmp)
        split_dataset(dataset, (0.6, 0.2, 0.2), seed=0)
        packed = tmp / "packed"
        preprocess_dataset(dataset, packed, PreprocessOptions(size_px=SIZE_PX), progress=False)
        folder = image_folder(packed, tmp / "imagefolder")
        n_train = sum(1 for _ in (folder / "train").rglob("*.png"))
        n_val = sum(1 for _ in (folder / "val").rglob("*.png"))
        print(
            f"load average before: {os.getloadavg()[0]:.2f}; torch threads {torch.get_num_threads()}"
        )
        print(
            f"classifier epochs on the {what}: {n_train} train + {n_val} val images, {SIZE_PX} px"
        )

        baseline = float(np.mean(deepcovid_epochs(folder, EPOCHS)))
        ours = float(np.mean(cxrlab_epochs(packed, tmp / "run-mild", EPOCHS, "mild")))
        print(
            f"  baseline  DeepCovid-style loop (ImageFolder, frozen ResNet-18 + fc): {baseline:6.2f} s/epoch"
        )
        print(
            f"  cxrlab    clf train --freeze-backbone --augment mild (PACKED):      {ours:6.2f} s/epoch"
        )
        print(f"  ratio     {baseline / ours:.1f}x faster per epoch (target >= 2x)")

        cached = cxrlab_epochs(packed, tmp / "run-cached", CACHED_EPOCHS, "none")
        limit = clf_trainer.FEATURE_CACHE_MAX_BYTES
        clf_trainer.FEATURE_CACHE_MAX_BYTES = 0  # turns the cache off
        try:
            recomputed = float(
                np.mean(cxrlab_epochs(packed, tmp / "run-recomputed", EPOCHS, "none"))
            )
        finally:
            clf_trainer.FEATURE_CACHE_MAX_BYTES = limit
        later = float(np.mean(cached[1:]))
        with_cache = cached[0] + (RUN_EPOCHS - 1) * later
        print("frozen backbone, --augment none: the feature cache vs recomputing the maps")
        print(f"  without cache: {recomputed:6.2f} s/epoch")
        print(f"  with cache:    {cached[0]:6.2f} s the first epoch, then {later:6.3f} s/epoch")
        print(
            f"  ratio          {recomputed / later:.0f}x per epoch after the first; "
            f"{RUN_EPOCHS} epochs {RUN_EPOCHS * recomputed / with_cache:.0f}x "
            f"(projected from these epochs: {RUN_EPOCHS * recomputed:.0f} s vs {with_cache:.0f} s)"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
