"""Dataset statistics: the thesis' figures 4.1-4.3 and table 4.3, as PNG + JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cxrlab.data.manifest import read_manifest, read_rejects
from cxrlab.utils.fs import atomic_dir, atomic_path, atomic_write_text
from cxrlab.utils.outputs import STATS, check_output

#: Splits in the order a reader expects them; any others follow alphabetically.
SPLIT_ORDER = ("train", "val", "test")


def class_balance(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per split (rows: train, val, test, then any others) and label (columns)."""
    split = manifest["split"].replace("", "unsplit")
    balance = pd.crosstab(split, manifest["label"])
    known = [s for s in SPLIT_ORDER if s in balance.index]
    others = sorted(s for s in balance.index if s not in SPLIT_ORDER)
    return balance.reindex(known + others)


def compute_stats(manifest: pd.DataFrame, rejects: pd.DataFrame | None = None) -> dict:
    """Numbers behind the figures: class balance per split, sizes, modes, sources, duplicates."""
    balance = class_balance(manifest)
    source_label = pd.crosstab(manifest["source"], manifest["label"])
    dup = manifest[manifest["duplicate_group"] != ""]
    exact = manifest[manifest.duplicated("sha256", keep=False)]
    groups_across_splits = 0
    if len(dup):
        groups_across_splits = int((dup.groupby("duplicate_group")["split"].nunique() > 1).sum())
    stats = {
        "images": int(len(manifest)),
        "patients": int(manifest["patient_id"].nunique()),
        "covid_positive": int(manifest["covid"].sum()),
        "class_balance_per_split": {
            k: {c: int(v) for c, v in row.items()} for k, row in balance.iterrows()
        },
        "source_by_label": {
            k: {c: int(v) for c, v in row.items()} for k, row in source_label.iterrows()
        },
        "modes": {str(k): int(v) for k, v in manifest["mode"].value_counts().items()},
        "width_px": _describe(manifest["width"]),
        "height_px": _describe(manifest["height"]),
        "duplicates": {
            "images_in_groups": int(len(dup)),
            "groups": int(dup["duplicate_group"].nunique()),
            "exact_copies": int(len(exact)),
            "groups_spanning_splits": groups_across_splits,
        },
    }
    if rejects is not None:
        stats["rejected_by_reason"] = {
            str(k): int(v) for k, v in rejects["reason"].value_counts().items()
        }
    return stats


def _describe(values: pd.Series) -> dict[str, float]:
    described = values.describe()
    return {k: float(described[k]) for k in ("min", "25%", "50%", "75%", "max", "mean")}


def write_stats(dataset: str | Path, out: str | Path, *, force: bool = False) -> dict:
    """Write ``stats.json`` and the PNG figures into the folder ``out``; return the stats.

    ``out`` may be ``DATASET/stats`` (the default place) but no other place inside, at
    or above the dataset; an existing ``out`` that is not a stats folder is replaced
    only with ``force``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    own_place = out.resolve() == (Path(dataset) / "stats").resolve()
    check_output(out, kind=STATS, inputs=[] if own_place else [dataset], force=force)
    manifest = read_manifest(dataset)
    stats = compute_stats(manifest, read_rejects(dataset))
    with atomic_dir(out) as staging:
        _write_figures(manifest, stats, staging, plt)
    return stats


def _write_figures(manifest: pd.DataFrame, stats: dict, out: Path, plt) -> None:

    def save(figure, name: str) -> None:
        with atomic_path(out / name) as tmp:
            figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 3.5))
    class_balance(manifest).plot.bar(ax=axis, rot=0)
    axis.set_ylabel("images")
    axis.set_title("Class balance per split")
    save(figure, "class_balance.png")

    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.boxplot([manifest["width"], manifest["height"]], tick_labels=["width", "height"])
    axis.set_ylabel("pixels")
    axis.set_title("Image sizes")
    save(figure, "sizes.png")

    figure, axis = plt.subplots(figsize=(5, 3.5))
    manifest["mode"].value_counts().plot.bar(ax=axis, rot=30)
    axis.set_ylabel("images")
    axis.set_title("Image modes")
    save(figure, "modes.png")

    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    atomic_write_text(
        out / "source_by_label.csv",
        pd.crosstab(manifest["source"], manifest["label"]).to_csv(lineterminator="\n"),
    )


def format_stats(stats: dict) -> str:
    """A short text summary for the terminal."""
    lines = [
        f"{stats['images']} images, {stats['patients']} patients, "
        f"{stats['covid_positive']} COVID-positive",
        "class balance per split:",
    ]
    for split, labels in stats["class_balance_per_split"].items():
        lines.append(f"  {split:9s} " + ", ".join(f"{k} {v}" for k, v in labels.items() if v))
    widths, heights = stats["width_px"], stats["height_px"]
    lines.append(
        f"width {widths['min']:.0f}-{widths['max']:.0f} px (median {widths['50%']:.0f}), "
        f"height {heights['min']:.0f}-{heights['max']:.0f} px (median {heights['50%']:.0f})"
    )
    lines.append("modes: " + ", ".join(f"{k} {v}" for k, v in stats["modes"].items()))
    dup = stats["duplicates"]
    lines.append(
        f"duplicates: {dup['groups']} groups holding {dup['images_in_groups']} images "
        f"({dup['exact_copies']} exact copies); groups spanning splits: {dup['groups_spanning_splits']}"
    )
    return "\n".join(lines)
