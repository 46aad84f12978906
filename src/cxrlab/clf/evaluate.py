"""Evaluating trained classifiers: predictions, metrics with intervals, plots, probes.

``evaluate_run`` loads every seed's best checkpoint (and its validation threshold)
from a run folder, predicts the real images of a split of any PACKED (the test
split, an ``external`` split, or ``all`` images of a dataset from another source),
and writes per seed: ``predictions_SPLIT.csv``, ``confusion_matrix_SPLIT.png``,
``roc_SPLIT.png`` and ``metrics.json``; optionally Grad-CAM grids and the
lung-hidden shortcut probe (see :mod:`cxrlab.clf.explain`).

With ``lung_masks`` (a MASKS folder of ``cxrlab seg predict``) the probe uses real
lung masks: each evaluated image's mask is found by id, taken through the PACKED's
own geometry (top crop, lung box, square resize: ``preprocess_lung_mask`` with the
options in its meta.json) and resized to the model's input like the images; the
model is evaluated intact, with the lungs removed and with only the lungs kept, on
the images that have a mask (the others are left out and counted), and Grad-CAM's
heat share inside the lungs is measured on those masks. Both probes read their AUCs
with one rule, :func:`cxrlab.clf.explain.shortcut_finding`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_curve

from cxrlab.clf.config import ClfConfig
from cxrlab.clf.data import ImageSet, data_preprocessing, evaluation_set, trained_preprocessing
from cxrlab.clf.explain import (
    LUNG_BOX,
    choose_examples,
    explain_images,
    hide_lungs,
    keep_only_lungs,
    shortcut_finding,
    shortcut_verdict,
)
from cxrlab.clf.metrics import Evaluation, evaluate_predictions, seeds_table, summarise_seeds
from cxrlab.clf.predict import BEST, load_trained, predict, predictions_frame
from cxrlab.data.packed import Packed, open_packed
from cxrlab.data.provenance import check_preprocessing
from cxrlab.data.show import image_grid, save_grid
from cxrlab.errors import CxrlabError
from cxrlab.utils import outputs
from cxrlab.utils.device import resolve_device
from cxrlab.utils.fs import atomic_path, atomic_write_text
from cxrlab.utils.outputs import OutputError, check_output


def write_predictions(predictions: pd.DataFrame, threshold: float, path: str | Path) -> Path:
    """predictions CSV: id, patient_id, source, split, covid, probability, predicted, threshold."""
    frame = predictions.copy()
    frame["predicted"] = (frame["probability"] >= threshold).astype(int)
    frame["threshold"] = threshold
    frame["probability"] = frame["probability"].map(lambda p: f"{p:.6f}")
    columns = [
        "id",
        "patient_id",
        "source",
        "split",
        "covid",
        "probability",
        "predicted",
        "threshold",
    ]
    path = Path(path)
    atomic_write_text(path, frame[columns].to_csv(index=False, lineterminator="\n"))
    return path


def _save_figure(figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_confusion_matrix(evaluation: Evaluation, path: str | Path, title: str = "") -> Path:
    """A 2 x 2 confusion matrix with counts and row percentages, as PNG."""
    from matplotlib.figure import Figure

    counts = np.asarray(evaluation.confusion, dtype=np.int64)
    figure = Figure(figsize=(4.2, 3.8))
    axes = figure.add_subplot()
    axes.imshow(counts, cmap="Blues")
    names = ["not COVID-19", "COVID-19"]
    for (row, column), count in np.ndenumerate(counts):
        share = count / max(counts[row].sum(), 1)
        dark = count > counts.max() / 2
        axes.text(
            column,
            row,
            f"{count}\n{share:.0%}",
            ha="center",
            va="center",
            color="white" if dark else "black",
        )
    axes.set_xticks([0, 1], names)
    axes.set_yticks([0, 1], names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(
        title
        or f"{evaluation.split}: threshold {evaluation.threshold:.3f}\n"
        f"sens {evaluation.line('sensitivity')}, spec {evaluation.line('specificity')}",
        fontsize=8,
    )
    return _save_figure(figure, Path(path))


def plot_roc(
    predictions: pd.DataFrame, evaluation: Evaluation, path: str | Path, title: str = ""
) -> Path:
    """The ROC curve with its AUC (95% CI) and the operating point of the threshold, as PNG."""
    from matplotlib.figure import Figure

    covid = predictions["covid"].to_numpy().astype(np.int64)
    probability = predictions["probability"].to_numpy().astype(np.float64)
    figure = Figure(figsize=(4.2, 4.0))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    if len(np.unique(covid)) == 2:
        fpr, tpr, _ = roc_curve(covid, probability)
        axes.plot(fpr, tpr, linewidth=2, label=f"AUC {evaluation.line('roc_auc')}")
        sensitivity = evaluation.metrics["sensitivity"]
        specificity = evaluation.metrics["specificity"]
        axes.plot(
            1 - specificity,
            sensitivity,
            "o",
            color="red",
            label=f"threshold {evaluation.threshold:.3f}",
        )
        axes.legend(loc="lower right", fontsize=8)
    else:
        axes.text(0.5, 0.5, "one class only:\nno ROC curve", ha="center", va="center")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("1 - specificity")
    axes.set_ylabel("sensitivity")
    axes.set_title(
        title
        or f"ROC, {evaluation.split} ({evaluation.n_images} images, {evaluation.n_patients} patients)",
        fontsize=8,
    )
    return _save_figure(figure, Path(path))


# ------------------------------------------------------------------ a trained run
@dataclass
class RunEvaluation:
    """``cxrlab clf evaluate``'s outcome: per-seed evaluations, files and the text report."""

    out: Path
    seeds: dict[int, Evaluation]
    report: str
    explanations: dict[int, dict] = field(default_factory=dict)
    probes: dict[int, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def seed_folders(run: str | Path) -> dict[int, Path]:
    """seed -> folder of every trained seed (``seed_N/best.pt``) of a run folder."""
    run = Path(run)
    found = {}
    for folder in run.glob("seed_*"):
        suffix = folder.name.removeprefix("seed_")
        if suffix.lstrip("-").isdigit() and (folder / BEST).is_file():
            found[int(suffix)] = folder
    if not found and (run / "cv.json").is_file():
        folds = sorted(p.name for p in run.glob("fold-*") if p.is_dir())
        raise CxrlabError(
            f"{run} is a leave-site-out run: its models are in its folds; evaluate one fold's "
            f"model, e.g. `cxrlab clf evaluate {run / (folds[0] if folds else 'fold-00')} "
            "--data PACKED` (its out-of-site figures are in cv.json)"
        )
    if not found:
        raise CxrlabError(
            f"{run} holds no trained seed (seed_N/{BEST}); train one with "
            f"`cxrlab clf train --out {run} ...`"
        )
    return dict(sorted(found.items()))


def _leak_notes(run: Path, data: Packed, split: str, rows: pd.DataFrame) -> list[str]:
    """Warnings when evaluation images were also training images."""
    notes = []
    try:
        config = ClfConfig.read(run / "config.yaml")
        training = open_packed(config.data).manifest
    except CxrlabError:
        return ["cannot read the run's training data: overlap with training images not checked"]
    training = training[training["split"] == "train"]
    if Path(config.data).resolve() == data.path.resolve() and split == "all":
        inside = int(rows["split"].eq("train").sum())
        if inside:
            notes.append(
                f"{inside} evaluated images are the model's training images: numbers are optimistic"
            )
    elif "sha256" in data.manifest.columns:
        hashes = set(training["sha256"]) - {""}
        identical = int(data.manifest.loc[rows.index, "sha256"].isin(hashes).sum())
        if identical:
            notes.append(f"{identical} evaluated images are byte-identical to training images")
    return notes


def evaluate_run(
    run: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    explain: int = 0,
    shortcut_probe: bool = False,
    out: str | Path | None = None,
    device: str = "auto",
    bootstrap: int = 2000,
    batch_size: int = 64,
    lung_masks: str | Path | None = None,
    allow_mismatch: bool = False,
    progress: bool = False,
) -> RunEvaluation:
    """Evaluate every seed of a trained run on ``split`` of the PACKED ``data``.

    Args:
        run: a run folder of ``cxrlab clf train``.
        data: a PACKED folder: the training one, or one from another source.
        split: ``test``, ``external``, ``val`` or ``all`` (real images only, always).
        explain: Grad-CAM overlays of this many images per seed (0: none).
        shortcut_probe: evaluate again with the lung field blacked out.
        out: where to write (default ``RUN/eval/<data folder>-<split>``).
        device: ``auto``, ``cpu`` or ``cuda``.
        bootstrap: patient-bootstrap resamples.
        lung_masks: a MASKS folder: the probe removes, then keeps only, these lungs,
            and Grad-CAM's heat share inside the lungs is measured on them (needs
            ``shortcut_probe`` or ``explain``); both then use only the images that have
            a mask.
        allow_mismatch: evaluate on images preprocessed otherwise than the run's
            training data (size, equalization, crop, lungs, bit depth); the report names
            the differences. Without it such images are refused.
        progress: a bar per prediction pass over the images.

    Each seed's threshold is the one chosen on its validation split at training.
    """
    run = Path(run)
    notes: list[str] = []
    if lung_masks is not None and not shortcut_probe and explain <= 0:
        raise CxrlabError(
            "--lung-masks is used by the shortcut probe and Grad-CAM's lung share: add "
            "--shortcut-probe or --explain N"
        )
    folders = seed_folders(run)
    torch_device = resolve_device(device)
    packed = open_packed(data)
    learned, learned_from = trained_preprocessing(run)
    if learned is not None:  # a model judged on images made otherwise says little
        notes += check_preprocessing(
            learned,
            data_preprocessing(packed),
            what=f"the images {run} learned from ({learned_from}) and --data {packed.path}",
            allow_mismatch=allow_mismatch,
            fix="evaluate on a PACKED made with the options of the training data "
            "(`cxrlab data preprocess DATASET --out PACKED` with the same options)",
        )
    masks_by_id = None
    if lung_masks is not None:
        from cxrlab.data.masks import mask_paths_by_id

        masks_by_id = mask_paths_by_id(lung_masks)
        lungs = packed.meta.get("options", {}).get("lungs", "none")
        if lungs != "none":
            notes.append(
                f"{packed.path} was made with --lungs {lungs}: its images show little or "
                "nothing outside the lungs, so the shortcut probe is not meaningful there"
            )
    out = Path(out) if out else run / "eval" / f"{packed.path.name}-{split}"
    if run.resolve().is_relative_to(out.resolve()):
        raise OutputError(
            f"--out {out} is or holds the run {run}; writing it would overwrite the run's own "
            "metrics: choose another --out (default: RUN/eval/<data>-<split>)"
        )
    check_output(out, kind=outputs.EVALUATION, inputs=[data, lung_masks])
    evaluations, explanations, probes = {}, {}, {}
    for seed, folder in folders.items():
        model, state = load_trained(folder, torch_device)
        threshold = float(state["threshold"])
        size_px = int(state["spec"]["size_px"])
        images = evaluation_set(packed, split, size_px=size_px)
        if seed == next(iter(folders)):
            if int(packed.images.shape[-1]) != size_px:
                notes.append(
                    f"images resized from {packed.images.shape[-1]} to the model's {size_px} px"
                )
            notes += _leak_notes(run, packed, split, packed.manifest.iloc[images.table["row"]])
        probability, _ = predict(
            model,
            images,
            device=torch_device,
            batch_size=batch_size,
            progress=progress,
            desc=f"seed {seed}, {split}",
        )
        predictions = predictions_frame(images, probability)
        evaluation = evaluate_predictions(
            predictions, threshold, split=split, n_resamples=bootstrap, seed=seed
        )
        evaluations[seed] = evaluation
        target = out / f"seed_{seed}"
        write_predictions(predictions, threshold, target / f"predictions_{split}.csv")
        plot_confusion_matrix(evaluation, target / f"confusion_matrix_{split}.png")
        plot_roc(
            predictions,
            evaluation,
            target / f"roc_{split}.png",
            title=f"seed {seed}, {packed.path.name} {split}",
        )
        values = {
            "seed": seed,
            "run": str(run),
            "data": str(packed.path),
            "evaluation": evaluation.as_dict(),
        }
        # Given lung masks are the lung field of both Grad-CAM and the probe: the
        # images that have one, with the mask aligned to the model's input.
        masked = None
        if masks_by_id is not None:
            masked = _with_lung_masks(packed, images, masks_by_id, lung_masks)
        if explain > 0:
            shown = images if masked is None else masked[0]
            positions = choose_examples(shown.labels, explain, seed=seed)
            explanations[seed] = explain_images(
                model,
                shown,
                positions,
                target / "gradcam.png",
                device=torch_device,
                threshold=threshold,
                lung_field="" if masked is None else f"lung masks from {lung_masks}",
            )
            values["gradcam"] = explanations[seed]
        if shortcut_probe:
            if masked is not None:  # real lung masks: lungs removed and lungs only
                probe, subject = _lung_mask_probe, masked
            else:  # the central box as the lung field
                probe, subject = functools.partial(_probe, intact=evaluation), images
            probes[seed] = probe(
                model, subject, threshold, torch_device, batch_size, bootstrap, seed, target,
                progress=progress,
            )  # fmt: skip
            values["shortcut_probe"] = probes[seed]
        atomic_write_text(target / "metrics.json", json.dumps(values, indent=2) + "\n")
    report = _evaluation_report(
        run, packed, split, evaluations, folders, out, explanations, probes, notes
    )
    summary = {
        "run": str(run),
        "data": str(packed.path),
        "split": split,
        "metrics": summarise_seeds(evaluations),
        "per_seed": {str(s): e.as_dict() for s, e in evaluations.items()},
        "gradcam": {str(s): e for s, e in explanations.items()},
        "shortcut_probe": {str(s): p for s, p in probes.items()},
        "notes": notes,
    }
    atomic_write_text(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "report.txt", report + "\n")
    return RunEvaluation(out, evaluations, report, explanations, probes, notes)


def _evaluate_shown(
    model, images, transform, threshold, what, *, device, batch_size, bootstrap, seed, progress
) -> Evaluation:
    """The evaluation of ``images`` as ``transform`` shows them (None: as they are),
    named ``what``."""
    probability, _ = predict(
        model,
        images,
        device=device,
        batch_size=batch_size,
        transform=transform,
        progress=progress,
        desc=f"seed {seed}, {what}",
    )
    return evaluate_predictions(
        predictions_frame(images, probability),
        threshold,
        split=what,
        n_resamples=bootstrap,
        seed=seed,
    )


def _probe(
    model, images, threshold, device, batch_size, bootstrap, seed, target, *, intact, progress
) -> dict:
    """Evaluate with the lung field hidden; a grid shows what the model was shown."""

    def transform(batch, positions):
        return hide_lungs(batch, images.lung_mask(positions))

    hidden = _evaluate_shown(
        model, images, transform, threshold, f"{intact.split}, lung field hidden",
        device=device, batch_size=batch_size, bootstrap=bootstrap, seed=seed, progress=progress,
    )  # fmt: skip
    shown = np.arange(min(16, len(images)))
    masked = transform(images.batch(shown), shown)[:, 0].numpy()
    grid = save_grid(
        image_grid(np.round(masked * 255).astype(np.uint8)), target / "lungs_hidden_examples.png"
    )
    return {
        "lung_field": "lung masks" if images.mask is not None else f"central box {LUNG_BOX}",
        "hidden": hidden.as_dict(),
        "finding": shortcut_finding(intact, hidden)[0],
        "verdict": shortcut_verdict(intact, hidden),
        "examples": str(grid),
    }


def _with_lung_masks(
    packed: Packed, images: ImageSet, masks_by_id: dict[str, str], folder: str | Path
) -> tuple[ImageSet, int, str]:
    """The images of ``images`` that have a usable mask in ``masks_by_id``, with their
    (n, S, S) masks aligned to the model's input; the count left out; the folder.

    Raises:
        CxrlabError: when the PACKED lacks its preprocessing options, or no image has a mask.
    """
    from cxrlab.data.masks import read_lung_mask
    from cxrlab.preprocess.transforms import PreprocessOptions, preprocess_lung_mask

    if "options" not in packed.meta:
        raise CxrlabError(
            f"{packed.path}/meta.json records no preprocessing options: lung masks cannot be "
            "aligned with its images; make it with `cxrlab data preprocess`"
        )
    options = PreprocessOptions(**packed.meta["options"])
    rows = packed.manifest.iloc[images.table["row"].to_numpy()]
    kept, masks = [], []
    for position, (image_id, height, width) in enumerate(
        zip(rows["id"], rows["height"], rows["width"], strict=True)
    ):
        try:
            mask = read_lung_mask(masks_by_id.get(image_id, ""))
            square = preprocess_lung_mask(mask, (int(height), int(width)), options)
        except CxrlabError:  # no usable mask: missing, unreadable, empty
            continue
        kept.append(position)
        masks.append(square)
    if not kept:
        raise CxrlabError(
            f"--lung-masks {folder}: no evaluated image of {packed.path} has a usable mask "
            "(ids are matched with masks.csv: was it predicted for this dataset?)"
        )
    stacked = torch.from_numpy(np.stack(masks)).float()[:, None]
    if stacked.shape[-1] != images.size_px:  # the same resize the images get, kept binary
        stacked = F.interpolate(stacked, size=(images.size_px, images.size_px), mode="nearest")
    subset = ImageSet(
        images.parts, images.table.iloc[kept], images.size_px, stacked[:, 0].numpy() > 0.5
    )
    return subset, len(images) - len(kept), str(folder)


def lung_mask_verdict(intact: Evaluation, removed: Evaluation, only: Evaluation) -> str:
    """One sentence on the AUCs with the lungs removed and with only the lungs kept,
    read by :func:`shortcut_finding` (intact against lungs removed), the rule of the
    central-box probe too."""
    said = (
        f"ROC-AUC {intact.line('roc_auc')} intact, {removed.line('roc_auc')} with the lungs "
        f"removed, {only.line('roc_auc')} with only the lungs"
    )
    # The same rule as the central-box probe: only the words before it differ.
    return f"{said}: {shortcut_finding(intact, removed)[1]}"


def _lung_mask_probe(
    model, masked, threshold, device, batch_size, bootstrap, seed, target, *, progress
) -> dict:
    """Evaluate the images that have lung masks intact, lungs removed and lungs only."""
    images, left_out, folder = masked
    evaluations, grids = {}, {}
    variants = {
        "intact": None,
        "lungs removed": lambda batch, positions: hide_lungs(batch, images.lung_mask(positions)),
        "lungs only": lambda batch, positions: keep_only_lungs(batch, images.lung_mask(positions)),
    }
    for name, transform in variants.items():
        evaluations[name] = _evaluate_shown(
            model, images, transform, threshold, f"probe, {name}",
            device=device, batch_size=batch_size, bootstrap=bootstrap, seed=seed, progress=progress,
        )  # fmt: skip
        if transform is not None:
            shown = np.arange(min(16, len(images)))
            pixels = transform(images.batch(shown), shown)[:, 0].numpy()
            file_name = f"{name.replace(' ', '_')}_examples.png"
            grids[name] = str(
                save_grid(image_grid(np.round(pixels * 255).astype(np.uint8)), target / file_name)
            )
    return {
        "lung_field": f"lung masks from {folder}",
        "n_images": len(images),
        "n_left_out_without_mask": left_out,
        "intact": evaluations["intact"].as_dict(),
        "lungs_removed": evaluations["lungs removed"].as_dict(),
        "lungs_only": evaluations["lungs only"].as_dict(),
        "finding": shortcut_finding(evaluations["intact"], evaluations["lungs removed"])[0],
        "verdict": lung_mask_verdict(*evaluations.values()),
        "examples": grids,
    }


def _evaluation_report(
    run, packed, split, evaluations, folders, out, explanations, probes, notes
) -> str:
    first = next(iter(evaluations.values()))
    lines = [
        f"{run} on {packed.path} [{split}]: {first.n_images} images, {first.n_patients} patients, "
        f"{first.n_positive} COVID-19; thresholds from each seed's validation split; 95% patient-bootstrap CIs",
        seeds_table(evaluations),
    ]
    for seed in evaluations:
        target = out / f"seed_{seed}"
        files = [target / f"confusion_matrix_{split}.png", target / f"roc_{split}.png"]
        if seed in explanations:
            files.append(Path(explanations[seed]["path"]))
        lines.append(f"seed {seed}: " + ", ".join(str(f) for f in files))
        if seed in explanations:
            explained = explanations[seed]
            lines.append(
                f"  Grad-CAM at {explained['layer']}: {explained['mean_heat_share_in_lung_field']} "
                f"of the heat inside the lung field ({explained['lung_field']}, "
                f"{explained['lung_field_area']:.0%} of the image)"
            )
        if seed in probes:
            probe = probes[seed]
            if "n_left_out_without_mask" in probe:
                lines.append(
                    f"  shortcut probe with {probe['lung_field']} on {probe['n_images']} images "
                    f"({probe['n_left_out_without_mask']} without a mask left out): "
                    f"{probe['verdict']}"
                )
            else:
                lines.append(f"  shortcut probe: {probe['verdict']}")
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)
