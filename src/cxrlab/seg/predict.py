"""Lung masks for every image of a dataset, with quality flags a user can act on.

For each accepted image: read it (the one reader), stretch to the network's square,
predict lung probabilities, stretch them back to the image's own size (bilinear),
threshold at 0.5, keep the largest two connected regions (the second only when it
is at least :data:`MIN_SECOND_LUNG_SHARE` of the first: two lungs, not a speck),
fill their holes, and write ``MASKS/<safe id>.png`` (0/255). ``masks.csv`` (see
:mod:`cxrlab.data.masks`) gives per image the lung fraction of the kept mask, the
number of connected regions of the raw prediction, and a flag:

* ``no lung``: the kept mask covers less than :data:`MIN_LUNG_FRACTION` of the image;
* ``one lung``: a single region was kept;
* ``touches border``: the mask reaches the image's outermost row or column
  (lungs cut by the field of view, or a prediction spilling outside the body).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from cxrlab.data.io import read_image
from cxrlab.data.manifest import REJECT_COLUMNS, dataframe_to_csv_text, read_manifest
from cxrlab.data.masks import (
    FLAG_BORDER,
    FLAG_NO_LUNG,
    FLAG_ONE_LUNG,
    MASK_COLUMNS,
    MASKS_CSV,
    unique_names,
)
from cxrlab.errors import CxrlabError, ImageReadError
from cxrlab.seg.config import SegConfig
from cxrlab.seg.data import network_input
from cxrlab.seg.network import build_segmenter, lung_probability
from cxrlab.seg.trainer import BEST
from cxrlab.utils.checkpoint import load_checkpoint
from cxrlab.utils.device import autocast, resolve_device
from cxrlab.utils.fs import atomic_dir
from cxrlab.utils.outputs import MASKS, check_output
from cxrlab.utils.progress import tqdm

MIN_LUNG_FRACTION = 0.02
MIN_SECOND_LUNG_SHARE = 0.2
BATCH = 16


def clean_mask(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W) bool raw prediction -> (the kept lungs, holes filled; number of raw regions).

    Keeps the largest region and the second largest when it has at least
    :data:`MIN_SECOND_LUNG_SHARE` of the largest's area (8-connectivity).
    """
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros_like(mask, dtype=bool), 0
    areas = np.bincount(labels.ravel())[1:]
    order = np.argsort(-areas, kind="stable")
    kept = [order[0] + 1]
    if count > 1 and areas[order[1]] >= MIN_SECOND_LUNG_SHARE * areas[order[0]]:
        kept.append(order[1] + 1)
    cleaned = np.isin(labels, kept)
    return ndimage.binary_fill_holes(cleaned), int(count)


def mask_flags(mask: np.ndarray) -> str:
    """Quality flags of a cleaned (H, W) bool mask, joined by ``; `` ("" when it looks fine)."""
    from scipy import ndimage

    flags = []
    if mask.mean() < MIN_LUNG_FRACTION:
        flags.append(FLAG_NO_LUNG)
    else:
        _, regions = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if regions == 1:
            flags.append(FLAG_ONE_LUNG)
    if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
        flags.append(FLAG_BORDER)
    return "; ".join(flags)


def load_segmenter(
    run: str | Path, device: torch.device
) -> tuple[torch.nn.Module, SegConfig, dict]:
    """The best model of a SEGRUN (eval mode), its config and its checkpoint.

    Raises:
        CxrlabError: when ``run`` has no ``best.pt``.
    """
    run = Path(run)
    if not (run / BEST).is_file():
        raise CxrlabError(
            f"{run}/{BEST} not found: SEGRUN must be a run folder of `cxrlab seg train` "
            "that finished at least one epoch"
        )
    state = load_checkpoint(run / BEST, map_location="cpu")
    config = SegConfig.from_dict(state["config"])
    model = build_segmenter(config)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, state


@torch.no_grad()
def full_size_masks(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    sizes: list[tuple[int, int]],
    device: torch.device,
) -> list[np.ndarray]:
    """(B, 1, S, S) inputs -> per image a raw (H, W) bool mask at its ``(H, W)`` size."""
    with autocast(device):
        probability = lung_probability(model, inputs.to(device)).float().cpu()
    masks = []
    for index, (height, width) in enumerate(sizes):
        full = F.interpolate(probability[index : index + 1], size=(height, width), mode="bilinear")
        masks.append(full[0, 0].numpy() >= 0.5)
    return masks


@dataclass
class PredictReport:
    out: Path
    n_masks: int
    n_rejected: int
    flags: dict[str, int]

    def summary(self) -> str:
        lines = [f"{self.out}: {self.n_masks} lung masks, {MASKS_CSV}"]
        for flag, count in sorted(self.flags.items(), key=lambda kv: -kv[1]):
            lines.append(f"  flagged '{flag}': {count} (check these masks before using them)")
        if self.n_rejected:
            lines.append(f"  {self.n_rejected} images could not be read (rejects.csv)")
        return "\n".join(lines)


def predict_masks(
    run: str | Path,
    dataset: str | Path,
    out: str | Path,
    *,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
) -> PredictReport:
    """Write a MASKS folder: a lung mask for every accepted image of ``dataset``.

    Args:
        run: a SEGRUN of ``cxrlab seg train``.
        dataset: a dataset folder (its manifest's rows, whatever their split).
        out: the MASKS folder; refused when it is an input or another kind of folder
            (unless ``force``).
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: a progress bar.
    """
    out = Path(out)
    check_output(out, kind=MASKS, inputs=[run, dataset], force=force)
    torch_device = resolve_device(device)
    model, config, state = load_segmenter(run, torch_device)
    manifest = read_manifest(dataset)
    names = unique_names(manifest["id"].tolist())
    rows, rejects = [], []
    with atomic_dir(out) as staging:
        pending: list[tuple[str, str, tuple[int, int]]] = []
        inputs: list[np.ndarray] = []

        def flush() -> None:
            if not pending:
                return
            batch = torch.from_numpy(np.stack(inputs))[:, None]
            raw = full_size_masks(model, batch, [p[2] for p in pending], torch_device)
            for (image_id, name, _), mask in zip(pending, raw, strict=True):
                kept, regions = clean_mask(mask)
                file_name = f"{name}.png"
                Image.fromarray(kept.astype(np.uint8) * 255).save(staging / file_name)
                rows.append(
                    {
                        "id": image_id,
                        "mask_path": file_name,
                        "lung_fraction": f"{kept.mean():.4f}",
                        "components": regions,
                        "flag": mask_flags(kept),
                    }
                )
            pending.clear()
            inputs.clear()

        records = zip(manifest["id"], manifest["path"], manifest["source"], names, strict=True)
        for image_id, path, source, name in tqdm(
            list(records), desc="lung masks", disable=not progress
        ):
            try:
                # Decoded at full size: a draft decode (JPEG DCT scaling, box reduction)
                # rounds the side up to whole blocks, so its grid covers up to a block more
                # than the image, and a mask mapped back from it drifts towards the far edge
                # (up to 0.85 network pixels on the dev data at 128 px).
                image = read_image(path)
            except ImageReadError as error:
                rejects.append(
                    {
                        "source": source,
                        "row": "",
                        "id": image_id,
                        "path": path,
                        "reason": error.reason,
                        "detail": error.detail,
                    }
                )
                continue
            pending.append((image_id, name, image.pixels.shape))
            inputs.append(network_input(image.pixels, config.size_px))
            if len(pending) == BATCH:
                flush()
        flush()
        table = pd.DataFrame(rows, columns=MASK_COLUMNS)
        (staging / MASKS_CSV).write_text(dataframe_to_csv_text(table))
        (staging / "rejects.csv").write_text(
            dataframe_to_csv_text(pd.DataFrame(rejects, columns=REJECT_COLUMNS))
        )
        info = {
            "segmentation_run": str(Path(run).resolve()),
            "dataset": str(Path(dataset).resolve()),
            "best_epoch": int(state["epoch"]),
            "val_dice": float(state["val_dice"]),
            "size_px": config.size_px,
        }
        (staging / "masks.json").write_text(json.dumps(info, indent=2) + "\n")
    flags: dict[str, int] = {}
    for flag_text in table["flag"]:
        for flag in filter(None, flag_text.split("; ")):
            flags[flag] = flags.get(flag, 0) + 1
    return PredictReport(out, len(table), len(rejects), flags)
