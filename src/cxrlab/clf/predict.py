"""Running a classifier over an :class:`~cxrlab.clf.data.ImageSet`, and reloading trained ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrlab.clf.data import ImageSet
from cxrlab.clf.models import Classifier, ModelSpec, build_classifier
from cxrlab.errors import CxrlabError
from cxrlab.utils.checkpoint import load_checkpoint
from cxrlab.utils.device import autocast
from cxrlab.utils.progress import tqdm

#: ``transform(images (B, 1, S, S) on the device, positions (B,)) -> images``: edits a batch
#: before the model sees it (the shortcut probe hides the lungs this way).
BatchTransform = Callable[[torch.Tensor, np.ndarray], torch.Tensor]

BEST = "best.pt"


@torch.no_grad()
def predict(
    model: Classifier,
    images: ImageSet,
    *,
    device: torch.device,
    batch_size: int = 64,
    transform: BatchTransform | None = None,
    features: torch.Tensor | None = None,
    progress: bool = False,
    desc: str = "predicting",
) -> tuple[np.ndarray, float]:
    """COVID-19 probabilities (N,) of every image, and the mean (unweighted) loss.

    The model is put in eval mode; images are neither augmented nor shuffled.
    ``features``: (N, C, h, w) the backbone's maps of ``images``, computed before (a
    frozen backbone's, see :func:`backbone_features`): only the head runs.
    ``progress``: a bar counting images, titled ``desc``.
    """
    model.eval()
    probabilities, loss_sum = [], torch.zeros((), device=device)
    bar = tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False)
    for start in range(0, len(images), batch_size):
        positions = np.arange(start, min(start + batch_size, len(images)))
        labels = torch.from_numpy(images.labels[positions]).to(device)
        if features is not None:
            with autocast(device):
                logits = model.head(features[start : start + len(positions)])
        else:
            batch = images.batch(positions).to(device, non_blocking=True)
            if transform is not None:
                batch = transform(batch, positions)
            if device.type == "cuda":
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                logits = model(batch)
        loss_sum += model.loss(logits, labels) * len(positions)
        probabilities.append(model.covid_probability(logits).cpu())
        bar.update(len(positions))
    bar.close()
    probability = torch.cat(probabilities).double().numpy()
    if not np.isfinite(probability).all():
        bad = int((~np.isfinite(probability)).sum())
        raise CxrlabError(
            f"the classifier gives non-finite probabilities for {bad} of {len(images)} images: "
            "its weights diverged (NaN); train again with a lower --lr"
        )
    return probability, float(loss_sum) / len(images)


@torch.no_grad()
def backbone_features(
    model: Classifier,
    images: ImageSet,
    *,
    device: torch.device,
    batch_size: int = 64,
    max_bytes: int | None = None,
) -> torch.Tensor | None:
    """(N, C, h, w) the backbone's feature maps of every image, on ``device``; None when
    they would take more than ``max_bytes``.

    Only meaningful for a frozen backbone (its weights and BatchNorm statistics fixed:
    :meth:`Classifier.freeze_backbone`) on images that are not augmented: then the maps
    are the same every epoch, and the head can train on them without recomputing them.
    """
    out = None  # filled in place: a list and torch.cat would hold the maps twice
    for start in range(0, len(images), batch_size):
        positions = np.arange(start, min(start + batch_size, len(images)))
        batch = images.batch(positions).to(device, non_blocking=True)
        if device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            maps = model.features(batch)
        if out is None:
            per_image = maps[0].numel() * maps.element_size()
            if max_bytes is not None and per_image * len(images) > max_bytes:
                return None
            out = torch.empty((len(images), *maps.shape[1:]), dtype=maps.dtype, device=maps.device)
        out[start : start + len(maps)] = maps
    return out


def predictions_frame(images: ImageSet, probability: np.ndarray) -> pd.DataFrame:
    """id, patient_id, source, split, covid and probability per image."""
    frame = images.table[["id", "patient_id", "source", "split", "covid"]].copy()
    frame["probability"] = probability
    return frame


def load_trained(seed_folder: str | Path, device: torch.device) -> tuple[Classifier, dict]:
    """The best model of a finished seed folder, in eval mode, and its checkpoint.

    Raises:
        CxrlabError: when training of that seed has not finished (no threshold yet).
    """
    path = Path(seed_folder) / BEST
    state = load_checkpoint(path, map_location="cpu")
    if "threshold" not in state:
        raise CxrlabError(
            f"{path} has no validation threshold: training of {seed_folder} did not finish; "
            "run `cxrlab clf train ... --resume` with the same --out"
        )
    spec = ModelSpec(**state["spec"])
    model = build_classifier(spec, load_weights=False)  # every weight comes from the checkpoint
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state
