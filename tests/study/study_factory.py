"""A fake study folder, laid out as the study runner writes it, made in milliseconds.

Tiny PNGs (PIL), small CSVs and JSON: enough for the report to find every input
without training anything. The numbers are made up but follow known rules, so tests
know the answer: ``equalize clahe`` adds 0.05 ROC-AUC, ``augment mild`` 0.02,
``synthetic 100`` 0.03, and the best classifier cell is therefore
``clf/64px-clahe/simple-cnn-aug_mild-syn_100``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml
from PIL import Image, ImageDraw

VARIANTS = {"64px-none": (64, "none"), "64px-clahe": (64, "clahe")}
GENERATORS = {"dcgan": "dcgan", "vae": "vae"}
SAMPLE_STEPS = (200, 1000)
METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "roc_auc")
BEST_CELL = "clf/64px-clahe/simple-cnn-aug_mild-syn_100"
BASELINE_CELL = "clf/64px-clahe/simple-cnn-aug_none-syn_0"
#: The description holds markup (must be escaped) and a URL in text (allowed).
DESCRIPTION = "Fake study <b>for tests</b> & checks; see https://example.org/study"


def png(path: Path, size: tuple[int, int] = (24, 16), shade: int = 0) -> Path:
    """A small RGB PNG with a diagonal line, different for each ``shade``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (shade % 256, 90, 160))
    ImageDraw.Draw(image).line((0, 0, size[0] - 1, size[1] - 1), fill=(255, 255, 255))
    image.save(path, format="PNG")
    return path


def _stats(root: Path) -> None:
    stats = root / "data" / "stats"
    stats.mkdir(parents=True, exist_ok=True)
    (stats / "stats.json").write_text(
        json.dumps(
            {
                "images": 150,
                "patients": 96,
                "covid_positive": 94,
                "class_balance_per_split": {
                    "test": {"covid": 18, "normal": 1, "pneumonia": 11},
                    "train": {"covid": 57, "normal": 2, "pneumonia": 31},
                },
                "source_by_label": {"sample": {"covid": 94, "normal": 5, "pneumonia": 51}},
                "modes": {"L": 150},
                "width_px": {"min": 100.0, "50%": 128.0, "max": 128.0},
                "height_px": {"min": 89.0, "50%": 125.0, "max": 128.0},
                "duplicates": {"images_in_groups": 0, "groups": 0, "groups_spanning_splits": 0},
                "rejected_by_reason": {},
            }
        )
    )
    (stats / "source_by_label.csv").write_text("source,covid,normal,pneumonia\nsample,94,5,51\n")
    for shade, name in enumerate(("class_balance", "sizes", "modes")):
        png(stats / f"{name}.png", shade=10 + shade)


def _dataset(root: Path) -> None:
    dataset = root / "data" / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    (dataset / "manifest.csv").write_text("id,label,split\na,covid,train\nb,normal,test\n")
    (dataset / "rejects.csv").write_text("path,reason\n")
    (dataset / "dataset.json").write_text(
        json.dumps({"counts": {"inputs": 150, "accepted": 150, "rejected": 0}})
    )


def _generator(root: Path, variant: str, name: str, index: int) -> dict:
    folder = root / "gen" / variant / name
    folder.mkdir(parents=True, exist_ok=True)
    loss_columns = ["loss_recon", "loss_kl"] if name == "vae" else ["loss_d", "loss_g"]
    rows = []
    for step in range(100, 1001, 100):
        row = {"step": step, "seconds": step / 50}
        for k, column in enumerate(loss_columns):
            row[column] = 1.0 / (step / 100 + k + index)
        if step % 500 == 0:  # metrics at save intervals only
            row.update(
                swd=0.5 / step * 100 + 0.01 * index,
                ms_ssim_fake=0.3 + 0.01 * index,
                ms_ssim_real=0.35,
                memorization_share=0.04 + 0.01 * index,
                fid=200 - step / 10 + index,
                metrics_seconds=1.5,
            )
        rows.append(row)
    columns = ["step", "seconds", *loss_columns, "swd", "ms_ssim_fake", "ms_ssim_real"]
    columns += ["memorization_share", "fid", "metrics_seconds"]
    pd.DataFrame(rows, columns=columns).to_csv(folder / "metrics.csv", index=False)
    for step in SAMPLE_STEPS:
        # the last grid is larger, so a test can tell which one was embedded
        png(folder / "samples" / f"step_{step:06d}.png", (32 if step == 1000 else 8, 32), step)
        # the nearest-training-image pairs of the memorization check, at the same steps
        png(
            folder / "metrics" / f"memorization_step_{step:06d}.png",
            (48 if step == 1000 else 12, 24),
            step + 7,
        )
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": GENERATORS[name]}))
    last = rows[-1]
    return {
        "generator": name,
        "model": GENERATORS[name],
        "gen_augment": "none",
        "steps": 1000,
        "seconds": 20.0 + 5 * index,
        "swd": last["swd"],
        "ms_ssim_fake": last["ms_ssim_fake"],
        "ms_ssim_real": last["ms_ssim_real"],
        "memorization_share": last["memorization_share"],
        "fid": last["fid"],
    }


def _classifier_values(equalize: str, augment: str, synthetic: int, seed: int) -> dict:
    auc = (
        0.70
        + 0.05 * (equalize == "clahe")
        + 0.02 * (augment == "mild")
        + 0.03 * (synthetic > 0)
        + 0.01 * seed
    )
    values = {"val_roc_auc": auc}  # what the best cell is chosen by
    for metric in METRICS:
        value = auc if metric == "roc_auc" else auc - 0.05
        values[f"test_{metric}"] = value
        values[f"test_{metric}_low"] = value - 0.04
        values[f"test_{metric}_high"] = value + 0.04
    return values


def _classifier(
    root: Path, folder: str, seeds: tuple[int, ...], external: bool, gradcam: bool
) -> None:
    base = root / folder
    (base / "run").mkdir(parents=True, exist_ok=True)
    (base / "run" / "metrics.json").write_text(json.dumps({"seeds": list(seeds)}))
    for seed in seeds:
        epochs = base / "run" / f"seed_{seed}" / "epochs.csv"
        epochs.parent.mkdir(parents=True, exist_ok=True)
        epochs.write_text(
            "epoch,lr,train_loss,val_loss,val_auc,best,seconds\n1,0.001,0.6,0.65,0.7,1,2.0\n"
        )
        test = base / "eval-test" / f"seed_{seed}"
        png(test / "confusion_matrix_test.png", shade=seed + 1)
        png(test / "roc_test.png", shade=seed + 2)
        if gradcam:
            png(test / "gradcam.png", shade=seed + 3)
        if external:
            png(
                base / "eval-external" / f"seed_{seed}" / "confusion_matrix_external.png",
                shade=seed + 4,
            )


def make_study(
    root: Path,
    *,
    generators: bool = True,
    classifiers: bool = True,
    stats: bool = True,
    previews: bool = True,
    external: bool = True,
    seeds: tuple[int, ...] = (0, 1),
    pending: bool = False,
) -> Path:
    """Write a fake study folder at ``root`` and return it.

    Args:
        root: the study folder to create.
        generators: generator runs and rows (two per variant).
        classifiers: classifier runs and rows (augment none/mild x synthetic 0/100 per
            variant; synthetic needs ``generators``).
        stats: ``data/stats`` (numbers and figures).
        previews: ``previews/VARIANT.png``.
        external: external-test columns and confusion matrices.
        seeds: classifier seeds.
        pending: mark the last cell as pending in ``study.json``.
    """
    root.mkdir(parents=True, exist_ok=True)
    spec = {"name": "fake-study", "description": DESCRIPTION}
    if generators:
        spec["generators"] = {"runs": [{"name": name} for name in GENERATORS]}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    _dataset(root)
    if stats:
        _stats(root)
    rows: list[dict] = []
    cells = [{"id": "data", "kind": "data", "folder": "data", "status": "finished", "seconds": 1}]
    selected: dict[str, str] = {}
    for v, (variant, (size, equalize)) in enumerate(VARIANTS.items()):
        common = {"variant": variant, "size": size, "equalize": equalize}
        cells.append(
            {
                "id": f"preprocess/{variant}",
                "kind": "preprocess",
                "folder": f"preprocess/{variant}",
                "status": "finished",
                "seconds": 2.0,
            }
        )
        if previews:
            png(root / "previews" / f"{variant}.png", (40, 20), 50 + v)
        if generators:
            for g, name in enumerate(GENERATORS):
                cell = f"gen/{variant}/{name}"
                values = _generator(root, variant, name, g + v)
                rows.append(
                    {
                        "kind": "generator",
                        "cell": cell,
                        "folder": cell,
                        **common,
                        "seed": 0,
                        **values,
                        "selected": int(g == 0),
                    }
                )
                cells.append(
                    {
                        "id": cell,
                        "kind": "generator",
                        "folder": cell,
                        "status": "finished",
                        "seconds": values["seconds"],
                    }
                )
            selected[variant] = f"gen/{variant}/dcgan"
        if not classifiers:
            continue
        for augment in ("none", "mild"):
            for synthetic in (0, 100) if generators else (0,):
                cell = f"clf/{variant}/simple-cnn-aug_{augment}-syn_{synthetic}"
                _classifier(root, cell, seeds, external, gradcam=augment == "none")
                cells.append(
                    {
                        "id": cell,
                        "kind": "classifier",
                        "folder": cell,
                        "status": "finished",
                        "seconds": 10.0,
                    }
                )
                for seed in seeds:
                    row = {
                        "kind": "classifier",
                        "cell": cell,
                        "folder": cell,
                        **common,
                        "seed": seed,
                        "seconds": 10.0 * (1.5 if synthetic else 1.0),
                        "arch": "simple-cnn",
                        "augment": augment,
                        "synthetic": synthetic,
                        "synthetic_from": selected.get(variant, "") if synthetic else "",
                        "threshold": 0.5,
                        "test_n_images": 30,
                        "test_n_positive": 18,
                        **_classifier_values(equalize, augment, synthetic, seed),
                    }
                    if external:
                        row["external_roc_auc"] = row["test_roc_auc"] - 0.1
                        row["external_roc_auc_low"] = row["external_roc_auc"] - 0.05
                        row["external_roc_auc_high"] = row["external_roc_auc"] + 0.05
                    rows.append(row)
    if pending:
        cells[-1]["status"] = "pending"
        cells[-1]["seconds"] = None
    (root / "study.json").write_text(
        json.dumps(
            {
                "name": "fake-study",
                "description": DESCRIPTION,
                "updated": "2024-05-01T12:00:00+00:00",
                "device": "cpu",
                "wall_seconds": 3723.0,
                "axes": {
                    "preprocess": ["size", "equalize"],
                    "generator": ["generator", "gen_augment"],
                    "classifier": ["arch", "augment", "synthetic"],
                },
                "select_by": "swd",
                "selected_generators": selected,
                "cells": cells,
            },
            indent=2,
        )
    )
    if rows:
        pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    return root
