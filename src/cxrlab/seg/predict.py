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

``flagged.png`` draws the flagged masks' outlines over their images (the first
:data:`MAX_OVERLAY` of them), each captioned with its id and flag: the masks to look
at. ``masks.json`` records the digest of the SEGRUN's weights and each image's
``sha256``; a rerun with the same model predicts only the images that are new or
changed since (none: nothing is written), and a rerun with another model is refused
unless ``force``, as ``data preprocess`` does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
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
from cxrlab.utils.outputs import MASKS, OutputError, check_output
from cxrlab.utils.progress import tqdm

MIN_LUNG_FRACTION = 0.02
MIN_SECOND_LUNG_SHARE = 0.2
BATCH = 16
#: flagged.png shows at most this many flagged masks (the first, in manifest order).
MAX_OVERLAY = 48
OVERLAY = "flagged.png"
OVERLAY_TILE_PX = 192
INFO = "masks.json"


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


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's weights (names and bytes): the same model gives the same masks."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class PredictReport:
    out: Path
    n_masks: int
    n_rejected: int
    flags: dict[str, int]
    n_reused: int = 0
    overlay: Path | None = None
    nothing_to_do: bool = False

    def summary(self) -> str:
        if self.nothing_to_do:
            return (
                f"{self.out}: already holds this model's {self.n_masks} lung masks for every "
                "image of the dataset; nothing to do"
            )
        reused = f" ({self.n_reused} kept from the last run, unchanged)" if self.n_reused else ""
        lines = [f"{self.out}: {self.n_masks} lung masks{reused}, {MASKS_CSV}"]
        for flag, count in sorted(self.flags.items(), key=lambda kv: -kv[1]):
            lines.append(f"  flagged '{flag}': {count} (check these masks before using them)")
        if self.overlay is not None:
            lines.append(f"  flagged masks drawn over their images: {self.overlay}")
        if self.n_rejected:
            lines.append(f"  {self.n_rejected} images could not be read (rejects.csv)")
        return "\n".join(lines)


@dataclass
class _Earlier:
    """What an earlier ``seg predict`` left in ``out`` that this one can keep."""

    rows: dict[str, dict] = field(default_factory=dict)  # id -> masks.csv row
    rejects: dict[str, dict] = field(default_factory=dict)  # id -> rejects.csv row
    image_sha256: dict[str, str] = field(default_factory=dict)


def _earlier_work(out: Path, model_sha256: str, force: bool) -> _Earlier:
    """The masks of ``out`` made by the same model (empty when there are none).

    Raises:
        OutputError: when ``out`` holds masks of another model (unless ``force``).
    """
    if not (out / MASKS_CSV).is_file():
        return _Earlier()
    try:
        info = json.loads((out / INFO).read_text())
        table = pd.read_csv(out / MASKS_CSV, dtype=str, keep_default_na=False)
        rejects = pd.read_csv(out / "rejects.csv", dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        info, table, rejects = {}, None, None
    if info.get("model_sha256") != model_sha256 or table is None:
        if force:
            return _Earlier()
        raise OutputError(
            f"--out {out} holds lung masks of another model (or of an older cxrlab, which did "
            "not record it); choose another --out, or pass --force to replace them"
        )
    rows = {
        row["id"]: row
        for row in table.to_dict("records")
        if row["mask_path"] and (out / row["mask_path"]).is_file()
    }
    return _Earlier(
        rows,
        {row["id"]: row for row in rejects.to_dict("records")},
        dict(info.get("image_sha256", {})),
    )


def flagged_overlay(table: pd.DataFrame, paths: dict[str, str], folder: Path) -> np.ndarray | None:
    """The flagged masks of ``table`` (masks.csv rows; mask files under ``folder``) outlined
    in red over their images (``paths``: id -> image file), or None when none is flagged."""
    from cxrlab.data.show import labelled_grid
    from cxrlab.seg.trainer import outline, short_id

    flagged = table[table["flag"] != ""].head(MAX_OVERLAY)
    if flagged.empty:
        return None
    side = OVERLAY_TILE_PX
    tiles, captions = [], []
    for image_id, mask_file, flag in zip(
        flagged["id"], flagged["mask_path"], flagged["flag"], strict=True
    ):
        pixels = read_image(paths[image_id]).pixels.astype(np.float32)
        pixels = pixels / max(float(pixels.max()), 1.0)
        grey = np.asarray(Image.fromarray(pixels).resize((side, side), Image.BILINEAR))
        mask = np.asarray(Image.open(folder / mask_file).convert("L").resize((side, side)))
        tile = np.repeat(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)
        tile[outline(mask > 127)] = (255, 0, 0)
        tiles.append(tile)
        captions.append(f"{flag}  {short_id(image_id)}")
    n_flagged = int((table["flag"] != "").sum())
    shown = f"the first {len(tiles)} of {n_flagged}" if n_flagged > len(tiles) else f"{len(tiles)}"
    title = f"{shown} flagged lung masks (red outline), stretched to squares; check them before use"
    return labelled_grid(np.stack(tiles), captions, title=title, columns=min(6, len(tiles)))


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

    Masks that ``out`` already holds from the same model for the same image (its
    ``sha256``) are kept, not predicted again; when that is every image, nothing is
    written.

    Args:
        run: a SEGRUN of ``cxrlab seg train``.
        dataset: a dataset folder (its manifest's rows, whatever their split).
        out: the MASKS folder; refused when it is an input, another kind of folder, or
            masks of another model (unless ``force``).
        device: ``auto``, ``cpu`` or ``cuda``.
        force: replace what ``out`` holds (nothing is kept from it).
        progress: a progress bar.
    """
    out = Path(out)
    check_output(out, kind=MASKS, inputs=[run, dataset], force=force)
    torch_device = resolve_device(device)
    model, config, state = load_segmenter(run, torch_device)
    model_sha256 = weights_digest(model)
    earlier = _earlier_work(out, model_sha256, force) if out.is_dir() else _Earlier()
    manifest = read_manifest(dataset)
    names = unique_names(manifest["id"].tolist())
    image_sha256 = dict(zip(manifest["id"], manifest["sha256"], strict=True))

    def unchanged(image_id: str) -> bool:
        old = earlier.image_sha256.get(image_id)
        return bool(old) and old == image_sha256[image_id]

    # earlier masks, and earlier rejects (an unreadable file stays unreadable), of images
    # whose bytes have not changed since
    keep = {i for i in manifest["id"] if i in earlier.rows and unchanged(i)}
    keep_rejected = {
        i for i in manifest["id"] if i in earlier.rejects and i not in keep and unchanged(i)
    }
    if (
        earlier.image_sha256
        and len(keep) + len(keep_rejected) == len(manifest)
        and set(earlier.rows) | set(earlier.rejects) == keep | keep_rejected
    ):
        table = pd.read_csv(out / MASKS_CSV, dtype=str, keep_default_na=False)
        overlay = out / OVERLAY
        return PredictReport(
            out,
            len(table),
            len(keep_rejected),
            _count_flags(table),
            n_reused=len(keep),
            overlay=overlay if overlay.is_file() else None,
            nothing_to_do=True,
        )
    rejects = [earlier.rejects[i] for i in manifest["id"] if i in keep_rejected]
    with atomic_dir(out) as staging:
        pending: list[tuple[str, str, tuple[int, int]]] = []
        inputs: list[np.ndarray] = []
        done: dict[str, dict] = {}

        def flush() -> None:
            if not pending:
                return
            batch = torch.from_numpy(np.stack(inputs))[:, None]
            raw = full_size_masks(model, batch, [p[2] for p in pending], torch_device)
            for (image_id, name, _), mask in zip(pending, raw, strict=True):
                kept, regions = clean_mask(mask)
                file_name = f"{name}.png"
                Image.fromarray(kept.astype(np.uint8) * 255).save(staging / file_name)
                done[image_id] = {
                    "id": image_id,
                    "mask_path": file_name,
                    "lung_fraction": f"{kept.mean():.4f}",
                    "components": regions,
                    "flag": mask_flags(kept),
                }
            pending.clear()
            inputs.clear()

        for image_id in keep:
            row = earlier.rows[image_id]
            shutil.copy2(out / row["mask_path"], staging / row["mask_path"])
            done[image_id] = row
        records = [
            record
            for record in zip(
                manifest["id"], manifest["path"], manifest["source"], names, strict=True
            )
            if record[0] not in keep and record[0] not in keep_rejected
        ]
        for image_id, path, source, name in tqdm(records, desc="lung masks", disable=not progress):
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
        rows = [done[i] for i in manifest["id"] if i in done]  # manifest order
        rejected_ids = {r["id"] for r in rejects}
        table = pd.DataFrame(rows, columns=MASK_COLUMNS).astype(str)
        (staging / MASKS_CSV).write_text(dataframe_to_csv_text(table))
        (staging / "rejects.csv").write_text(
            dataframe_to_csv_text(pd.DataFrame(rejects, columns=REJECT_COLUMNS))
        )
        overlay = flagged_overlay(
            table, dict(zip(manifest["id"], manifest["path"], strict=True)), staging
        )
        if overlay is not None:
            from cxrlab.data.show import save_grid

            save_grid(overlay, staging / OVERLAY)
        info = {
            "segmentation_run": str(Path(run).resolve()),
            "dataset": str(Path(dataset).resolve()),
            "best_epoch": int(state["epoch"]),
            "val_dice": float(state["val_dice"]),
            "size_px": config.size_px,
            "model_sha256": model_sha256,
            "image_sha256": {
                i: image_sha256[i] for i in manifest["id"] if i in done or i in rejected_ids
            },
        }
        (staging / INFO).write_text(json.dumps(info, indent=2) + "\n")
    return PredictReport(
        out,
        len(table),
        len(rejects),
        _count_flags(table),
        n_reused=len(keep),
        overlay=out / OVERLAY if overlay is not None else None,
    )


def _count_flags(table: pd.DataFrame) -> dict[str, int]:
    flags: dict[str, int] = {}
    for flag_text in table["flag"]:
        for flag in filter(None, flag_text.split("; ")):
            flags[flag] = flags.get(flag, 0) + 1
    return flags
