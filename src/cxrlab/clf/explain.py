"""Where does the model look? Grad-CAM heatmaps and a lung-hidden shortcut probe.

Grad-CAM (Selvaraju et al., ICCV 2017; MONAI's ``monai.visualize.GradCAM``): the
gradients of the COVID-19 log-odds with respect to a layer's feature maps, averaged
over space, weight those maps; the ReLU of the weighted sum, upsampled to the image,
shows the regions that raise the score. Any module can be explained; by default the deepest backbone layer whose maps are at least 7 x 7
(the last one at 224 px; at 64 px ResNet's last maps are 2 x 2, too coarse to tell
lungs from borders).

A model that detects COVID-19 from the lungs should lose its skill when the lungs
are hidden. :func:`hide_lungs` blacks out the lung field (the PACKED's lung masks
when it has ``masks.npy``, else a central box); :func:`shortcut_finding`, the one
rule of this probe and of the real-lung probe of :mod:`cxrlab.clf.evaluate`, reads
the AUC without the lungs against the intact one, and says "cannot tell" for a
model that is not better than chance to begin with. A model that keeps its AUC is
reading shortcuts (text, markers, borders, the source hospital: DeGrave, Janizek and
Lee, Nature Machine Intelligence 2021).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from cxrlab.clf.data import ImageSet
from cxrlab.clf.metrics import Evaluation
from cxrlab.clf.models import Classifier
from cxrlab.errors import CxrlabError
from cxrlab.utils.fs import atomic_path

#: The central box taken as the lung field when no lung masks exist: fractions of
#: height (top, bottom) and width (left, right). Preprocessed CXRs centre the thorax;
#: the box leaves the borders, corners and most burnt-in text visible.
LUNG_BOX = (0.15, 0.85, 0.15, 0.85)
TILE_PX = 160
#: Grad-CAM explains the deepest layer whose maps are at least this wide (7 x 7 is
#: the last layer of ResNet and DenseNet at 224 px).
MIN_CAM_SIDE_PX = 7
CAPTION_PX = 14


def central_box_mask(
    size_px: int, box: tuple[float, float, float, float] = LUNG_BOX
) -> torch.Tensor:
    """(S, S) bool: True inside the central box."""
    top, bottom, left, right = (round(f * size_px) for f in box)
    mask = torch.zeros(size_px, size_px, dtype=torch.bool)
    mask[top:bottom, left:right] = True
    return mask


def hide_lungs(images: torch.Tensor, lung_masks: torch.Tensor | None = None) -> torch.Tensor:
    """Black out the lung field of (B, 1, S, S) images in [0, 1].

    Args:
        images: the batch.
        lung_masks: (B, 1, S, S) bool lung masks; None: the central box of :data:`LUNG_BOX`.
    """
    if lung_masks is None:
        lung_masks = central_box_mask(images.shape[-1]).to(images.device)[None, None]
    return images.masked_fill(lung_masks.to(images.device), 0.0)


def keep_only_lungs(images: torch.Tensor, lung_masks: torch.Tensor) -> torch.Tensor:
    """Black out everything but the lungs of (B, 1, S, S) images in [0, 1].

    Args:
        images: the batch.
        lung_masks: (B, 1, S, S) bool lung masks (True = lung).
    """
    return images.masked_fill(~lung_masks.to(images.device, torch.bool), 0.0)


def backbone_stages(model: Classifier) -> list[tuple[str, nn.Module]]:
    """The backbone's modules in forward order, nested ``nn.Sequential`` containers flattened.

    Stages followed by an in-place activation are left out: their output tensor is
    overwritten before its gradient could be read.
    """

    def flatten(prefix: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
        if isinstance(module, nn.Sequential):
            return [s for n, m in module.named_children() for s in flatten(f"{prefix}.{n}", m)]
        return [(prefix, module)]

    stages = flatten("backbone", model.backbone)
    return [
        stage
        for stage, following in zip(stages, stages[1:] + [("", None)], strict=True)
        if not getattr(following[1], "inplace", False)
    ]


def cam_layer(
    model: Classifier,
    size_px: int,
    min_side_px: int = MIN_CAM_SIDE_PX,
    device: torch.device | str = "cpu",
) -> tuple[str, nn.Module]:
    """The deepest backbone stage whose maps are at least ``min_side_px`` wide for
    ``size_px`` inputs (Grad-CAM's usual last layer at 224 px; an earlier, finer one for
    small images, where the last maps are 2 x 2 and say nothing about where).
    """
    stages = backbone_stages(model)
    sides: dict[str, int] = {}

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                sides[name] = min(output.shape[-2:])

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in stages]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.backbone(model.prepare(torch.zeros(1, 1, size_px, size_px, device=device)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    wide = [(name, module) for name, module in stages if sides.get(name, 0) >= min_side_px]
    if wide:
        return wide[-1]
    mapped = [(name, module) for name, module in stages if name in sides]
    if not mapped:
        raise CxrlabError("Grad-CAM: no layer of the backbone gives (B, C, h, w) feature maps")
    return max(mapped, key=lambda stage: sides[stage[0]])


class _CovidScore(nn.Module):
    """The classifier seen as one output, the COVID-19 log-odds (B, 1): what Grad-CAM explains."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.covid_score(self.model(images)).float()[:, None]


def _peak_normalise(cams: torch.Tensor) -> torch.Tensor:
    """Each (1, H, W) map divided by its own maximum; all zero where nothing raises the score."""
    peak = cams.flatten(1).max(dim=1).values.view(-1, *[1] * (cams.ndim - 1))
    return torch.where(peak > 0, cams / peak.clamp_min(1e-12), torch.zeros_like(cams))


class GradCam:
    """Grad-CAM of a :class:`Classifier` at one layer, computed by MONAI's
    ``monai.visualize.GradCAM`` on the COVID-19 log-odds.

    Args:
        model: the classifier (any mode; it is put in eval mode while explaining).
        layer: the module whose output feature maps (B, C, h, w) are explained;
            default :func:`cam_layer` for the images' size.

    Call with (B, 1, H, W) images in [0, 1]; returns heatmaps (B, H, W) in [0, 1]
    (ReLU of the gradient-weighted maps, upsampled bilinearly, each scaled by its own
    maximum; all zero where nothing raises the score) and the COVID-19 probabilities
    (B,). ``layer_name`` tells which layer was used. MONAI keeps its hooks on the layer,
    so one GradCam (and one layer) serves every call.
    """

    def __init__(self, model: Classifier, layer: nn.Module | None = None) -> None:
        self.model = model
        self.layer = layer
        self.layer_name = "given" if layer is not None else ""
        self._cam = None

    def _monai_cam(self, size_px: int, device: torch.device):
        from monai.visualize import GradCAM

        if self.layer is None:
            self.layer_name, self.layer = cam_layer(self.model, size_px, device=device)
        name = next((n for n, m in self.model.named_modules() if m is self.layer), None)
        if name is None:
            raise CxrlabError("Grad-CAM: the given layer is not a module of the classifier")
        return GradCAM(_CovidScore(self.model), f"model.{name}", postprocessing=_peak_normalise)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cam is None:
            self._cam = self._monai_cam(images.shape[-1], images.device)
        hooks = self._cam.nn_module
        was_training = self.model.training
        try:
            with torch.enable_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MONAI warns, we raise below
                # Inputs that need gradients keep a graph even through a frozen backbone.
                inputs = images.detach().float().requires_grad_(True)
                hooks.activations.clear()
                hooks.gradients.clear()
                cams = self._cam(inputs, class_idx=0)
            if not hooks.gradients:
                raise CxrlabError("Grad-CAM: the layer was not used by the model's forward pass")
            shapes = {getattr(a, "ndim", 0) for a in hooks.activations.values()}
            if shapes != {4}:
                raise CxrlabError(
                    f"Grad-CAM needs a layer with (B, C, h, w) outputs; {type(self.layer).__name__} "
                    "gives another shape"
                )
            probability = torch.sigmoid(hooks.score.detach().float().reshape(-1))
        finally:
            self.model.zero_grad(set_to_none=True)
            self.model.train(was_training)
            hooks.activations.clear()
            hooks.gradients.clear()
        return cams[:, 0].detach(), probability


def heat_share_inside(cams: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) share of each heatmap's mass inside ``mask`` ((S, S) or (B, S, S) bool)."""
    total = cams.flatten(1).sum(1)
    inside = (cams * mask.to(cams.device).float()).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.full_like(total, math.nan))


def _colormap(values: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) float RGB in [0, 1] (matplotlib's ``jet``)."""
    from matplotlib import colormaps

    return colormaps["jet"](values)[..., :3]


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """(H, W) grey in [0, 1] and (H, W) heatmap in [0, 1] -> (H, W, 3) uint8 blend.

    Where the heatmap is weak the X-ray shows through unchanged.
    """
    grey = np.repeat(image[..., None], 3, axis=-1)
    weight = alpha * cam[..., None]
    blended = (1 - weight) * grey + weight * _colormap(cam)
    return np.round(np.clip(blended, 0, 1) * 255).astype(np.uint8)


def overlay_grid(
    images: np.ndarray,
    cams: np.ndarray,
    captions: list[str],
    out: str | Path,
    *,
    columns: int | None = None,
    tile_px: int = TILE_PX,
) -> Path:
    """Write a PNG grid: each (image, heatmap) as the X-ray and its overlay side by side.

    Args:
        images: (N, H, W) grey in [0, 1].
        cams: (N, H, W) heatmaps in [0, 1].
        captions: one short line per image, written above it.
        out: the PNG to write.
    """
    n = len(images)
    if n == 0:
        raise CxrlabError("overlay_grid needs at least one image")
    columns = columns or max(1, min(4, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / columns)
    pad = 4
    cell_w, cell_h = 2 * tile_px + pad, tile_px + CAPTION_PX
    canvas = Image.new(
        "RGB", (columns * (cell_w + pad) + pad, rows * (cell_h + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index in range(n):
        row, column = divmod(index, columns)
        left, top = pad + column * (cell_w + pad), pad + row * (cell_h + pad)
        grey = np.round(np.clip(images[index], 0, 1) * 255).astype(np.uint8)
        plain = Image.fromarray(grey).convert("RGB").resize((tile_px, tile_px), Image.BILINEAR)
        blend = Image.fromarray(overlay(images[index], cams[index])).resize(
            (tile_px, tile_px), Image.BILINEAR
        )
        draw.text((left, top), captions[index], fill="black", font=font)
        canvas.paste(plain, (left, top + CAPTION_PX))
        canvas.paste(blend, (left + tile_px + pad, top + CAPTION_PX))
    out = Path(out)
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out


def explain_images(
    model: Classifier,
    images: ImageSet,
    positions: np.ndarray,
    out: str | Path,
    *,
    device: torch.device,
    threshold: float,
    batch_size: int = 16,
    lung_field: str = "",
) -> dict:
    """Grad-CAM overlays of ``images[positions]`` into the PNG ``out``; returns a summary.

    The summary gives, per image, its id, label, probability and the share of the
    heatmap inside the lung field, and their mean: a low share means the model looks
    at borders, corners and text. The lung field is the set's own masks
    (``images.mask``: the PACKED's ``masks.npy``, or the ``--lung-masks`` of
    ``clf evaluate`` aligned to the images), else the central box :data:`LUNG_BOX`.

    Args:
        lung_field: where the set's masks come from, for the summary (default
            ``lung masks``).
    """
    cam = GradCam(model)
    all_images, all_cams, all_probability, shares, areas = [], [], [], [], []
    for start in range(0, len(positions), batch_size):
        chosen = positions[start : start + batch_size]
        batch = images.batch(chosen).to(device)
        cams, probability = cam(batch)
        masks = images.lung_mask(chosen)
        lung = masks[:, 0] if masks is not None else central_box_mask(images.size_px)
        shares.append(heat_share_inside(cams, lung).cpu())
        areas.append(lung.float().mean().item())
        all_images.append(batch[:, 0].float().cpu())
        all_cams.append(cams.cpu())
        all_probability.append(probability.float().cpu())
    pixels = torch.cat(all_images).numpy()
    heatmaps = torch.cat(all_cams).numpy()
    probability = torch.cat(all_probability).numpy()
    share = torch.cat(shares).numpy()
    area = np.mean(areas)  # the share a heatmap spread evenly would have
    table = images.table.iloc[positions]
    captions = []
    for (_, row), p in zip(table.iterrows(), probability, strict=True):
        truth = "COVID" if row["covid"] == 1 else "other"
        called = "COVID" if p >= threshold else "other"
        captions.append(f"true {truth}, p={p:.2f} -> {called}")
    path = overlay_grid(pixels, heatmaps, captions, out)
    finite = share[np.isfinite(share)]
    return {
        "path": str(path),
        "layer": cam.layer_name,
        "lung_field": (lung_field or "lung masks")
        if images.mask is not None
        else f"central box {LUNG_BOX}",
        "lung_field_area": round(float(area), 4),
        "mean_heat_share_in_lung_field": None
        if len(finite) == 0
        else round(float(finite.mean()), 4),
        "images": [
            {
                "id": row["id"],
                "covid": int(row["covid"]),
                "probability": round(float(p), 4),
                "heat_share_in_lung_field": None if not np.isfinite(s) else round(float(s), 4),
            }
            for (_, row), p, s in zip(table.iterrows(), probability, share, strict=True)
        ],
    }


def choose_examples(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` positions alternating COVID-19 and other images (seeded) while both last."""
    rng = np.random.default_rng(seed)
    positive = rng.permutation(np.flatnonzero(labels == 1))
    negative = rng.permutation(np.flatnonzero(labels == 0))
    chosen = []
    for index in range(max(len(positive), len(negative))):
        chosen += [int(group[index]) for group in (positive, negative) if index < len(group)]
    return np.asarray(chosen[:n], dtype=np.int64)


#: What :func:`shortcut_finding` can conclude, each with the sentence that says it.
FINDINGS = {
    "undefined": "undefined (one class only)",
    "chance": "cannot tell: the model is not better than chance on these images "
    "(its intact ROC-AUC interval includes 0.5), so losing the lungs cannot show what it uses",
    "shortcuts": "it still scores well without the lungs{kept}, so it is using shortcuts "
    "(text, markers, borders, source) outside the lungs",
    "inverted": "the ranking inverts without the lungs, so image content outside the lungs "
    "drives its scores: it is using shortcuts",
    "inconclusive": "inconclusive: most of its skill survives without the lungs{kept} but the "
    "interval includes chance: evaluate on more images",
    "no shortcuts": "no evidence of shortcuts outside the lungs: without them its interval "
    "includes chance and less than half of its skill is left{kept}",
}
#: The share of the intact skill above chance (AUC - 0.5) that, kept without the lungs
#: while the interval still includes chance, makes the probe inconclusive rather than clean.
KEPT_SKILL_INCONCLUSIVE = 0.5


def skill_kept(intact: Evaluation, without: Evaluation) -> float:
    """The share of the intact ROC-AUC's skill above chance kept without the lungs:
    (AUC without - 0.5) / (AUC intact - 0.5); NaN when the intact AUC is not above 0.5."""
    base, auc = intact.metrics["roc_auc"], without.metrics["roc_auc"]
    if not (math.isfinite(base) and math.isfinite(auc)) or base <= 0.5:
        return math.nan
    return (auc - 0.5) / (base - 0.5)


def shortcut_finding(intact: Evaluation, without: Evaluation) -> tuple[str, str]:
    """The one rule of both shortcut probes (central box hidden, real lungs removed):
    a key of :data:`FINDINGS` and its sentence, from the ROC-AUCs (95% intervals)
    intact and without the lungs.

    In order: an AUC that is undefined says nothing; a model whose intact interval
    includes 0.5 (not better than chance) cannot show what it relies on, since there
    is no skill to lose; an interval without the lungs above 0.5 is a shortcut, one
    below 0.5 an inverted ranking (also a shortcut); an interval that includes chance
    is inconclusive when at least :data:`KEPT_SKILL_INCONCLUSIVE` of the skill above
    chance is kept, and no evidence of shortcuts otherwise.
    """
    values = [
        intact.metrics["roc_auc"],
        *intact.intervals["roc_auc"],
        without.metrics["roc_auc"],
        *without.intervals["roc_auc"],
    ]
    if not all(math.isfinite(value) for value in values):
        key = "undefined"
    elif intact.intervals["roc_auc"][0] <= 0.5:
        key = "chance"
    elif without.intervals["roc_auc"][0] > 0.5:
        key = "shortcuts"
    elif without.intervals["roc_auc"][1] < 0.5:
        key = "inverted"
    elif skill_kept(intact, without) >= KEPT_SKILL_INCONCLUSIVE:
        key = "inconclusive"
    else:
        key = "no shortcuts"
    kept = skill_kept(intact, without)
    kept_text = (
        f" (keeps {max(kept, 0.0):.0%} of its skill above chance)" if math.isfinite(kept) else ""
    )
    return key, FINDINGS[key].format(kept=kept_text)


def shortcut_verdict(intact: Evaluation, hidden: Evaluation) -> str:
    """One sentence on the central-box probe: the AUCs and :func:`shortcut_finding`'s reading."""
    said = (
        f"ROC-AUC {intact.line('roc_auc')} intact, {hidden.line('roc_auc')} with the lung field "
        "hidden"
    )
    return f"{said}: {shortcut_finding(intact, hidden)[1]}"
