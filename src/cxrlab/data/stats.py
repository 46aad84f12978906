"""Dataset statistics: the thesis' figures 4.1-4.3 and table 4.3, as PNG + JSON, and sites.

Duplicates: ``duplicates.csv`` lists every row of a duplicate group (exact or near
copies, from the import) and ``duplicates.png`` shows the groups side by side, one
per row, those that span splits first.

Sites: images per site and label (``site_by_label.csv``), how many sites are usable
for leave-site-out validation, and every site that holds one class only. Such a
site is the classic shortcut (DeGrave et al. 2021): a model can learn the hospital,
its scanner or its markers instead of the disease and still score well on a split
that mixes sites. The stats say so in the terminal, ``stats.json`` and the CSV.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cxrlab.data.manifest import SITE, UNKNOWN_SITE, read_manifest, read_rejects, require_folder
from cxrlab.utils.fs import atomic_dir, atomic_path, atomic_write_text
from cxrlab.utils.outputs import STATS, check_output

#: Splits in the order a reader expects them; any others follow alphabetically.
SPLIT_ORDER = ("train", "val", "test")

#: A site is usable for leave-site-out validation with this many images of both classes.
USABLE_SITE_IMAGES = 10

#: The terminal lists this many sites (the largest first); the CSV and JSON list all.
SITES_SHOWN = 12

#: duplicates.png shows this many groups (those spanning splits first, then the
#: largest), each as one row of at most DUPLICATES_PER_ROW images.
DUPLICATE_GROUPS_SHOWN = 12
DUPLICATES_PER_ROW = 4
DUPLICATE_TILE_PX = 160
DUPLICATE_COLUMNS = ["duplicate_group", "id", "split", "label", "patient_id", "exact_copy", "path"]

#: The sentence every single-class warning carries.
SHORTCUT = (
    "a model can learn the site instead of the disease (the classic shortcut), and a "
    "split that mixes sites will not show it"
)


def site_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per site (rows, the largest first, ``unknown`` last) and label (columns),
    then ``images``, ``covid_positive``, ``covid_negative`` and ``single_class`` (a
    known site whose images are all COVID-positive or all negative)."""
    sites = manifest[SITE] if SITE in manifest else pd.Series(UNKNOWN_SITE, index=manifest.index)
    table = pd.crosstab(sites, manifest["label"])
    table["images"] = table.sum(axis=1)
    positives = manifest.groupby(sites)["covid"].sum()
    table["covid_positive"] = positives.reindex(table.index).astype(int)
    table["covid_negative"] = table["images"] - table["covid_positive"]
    one_class = (table["covid_positive"] == 0) | (table["covid_negative"] == 0)
    table["single_class"] = one_class & (table.index != UNKNOWN_SITE)
    order = sorted(table.index, key=lambda s: (s == UNKNOWN_SITE, -table.at[s, "images"], s))
    table.index.name = SITE
    return table.reindex(order)


def site_summary(manifest: pd.DataFrame) -> dict:
    """Sites known, usable (>= :data:`USABLE_SITE_IMAGES` images, both classes),
    images of unknown site, and the single-class sites (largest first)."""
    table = site_table(manifest)
    known = table[table.index != UNKNOWN_SITE]
    usable = known[
        (known["images"] >= USABLE_SITE_IMAGES)
        & (known["covid_positive"] > 0)
        & (known["covid_negative"] > 0)
    ]
    single = known[known["single_class"]]
    return {
        "known_sites": int(len(known)),
        "usable_sites": [str(s) for s in usable.index],
        "unknown_site_images": int(table["images"].get(UNKNOWN_SITE, 0)),
        "single_class_sites": [
            {
                "site": str(site),
                "images": int(row["images"]),
                "class": "COVID-positive" if row["covid_positive"] else "COVID-negative",
            }
            for site, row in single.iterrows()
        ],
        "single_class_images": int(single["images"].sum()),
    }


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
        "site_by_label": {
            str(k): {c: int(v) for c, v in row.items() if c != "single_class"}
            for k, row in site_table(manifest).iterrows()
        },
        "sites": site_summary(manifest),
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
    require_folder(dataset)
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
    # horizontal tick labels: modes are one or a few letters (a rotated "L" read badly)
    manifest["mode"].value_counts().plot.bar(ax=axis, rot=0)
    axis.set_ylabel("images")
    axis.set_title("Image modes")
    save(figure, "modes.png")

    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    atomic_write_text(
        out / "source_by_label.csv",
        pd.crosstab(manifest["source"], manifest["label"]).to_csv(lineterminator="\n"),
    )
    atomic_write_text(out / "site_by_label.csv", site_table(manifest).to_csv(lineterminator="\n"))
    duplicates = duplicate_rows(manifest)
    atomic_write_text(out / "duplicates.csv", duplicates.to_csv(index=False, lineterminator="\n"))
    if len(duplicates):
        from cxrlab.data.show import save_grid

        save_grid(duplicates_figure(duplicates), out / "duplicates.png")


def duplicate_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """The rows in a duplicate group (columns :data:`DUPLICATE_COLUMNS`), groups that span
    splits first (a copy across train and test inflates results), then the largest."""
    dup = manifest[manifest["duplicate_group"] != ""].copy()
    if dup.empty:
        return pd.DataFrame(columns=DUPLICATE_COLUMNS)
    dup["exact_copy"] = dup.duplicated("sha256", keep=False).astype(int)
    groups = dup.groupby("duplicate_group")
    order = pd.DataFrame(
        {"spans": groups["split"].nunique() > 1, "size": groups.size()}
    ).sort_values(["spans", "size"], ascending=False, kind="stable")
    rank = {group: i for i, group in enumerate(order.index)}
    dup["rank"] = dup["duplicate_group"].map(rank)
    dup = dup.sort_values(["rank", "split", "id"], kind="stable")
    return dup[DUPLICATE_COLUMNS].reset_index(drop=True)


def duplicates_figure(duplicates: pd.DataFrame):
    """One row per duplicate group (the first :data:`DUPLICATE_GROUPS_SHOWN` of
    :func:`duplicate_rows`): its images, fitted into squares, captioned with split,
    label and id. Returns an RGB uint8 image."""
    import numpy as np
    from PIL import Image

    from cxrlab.data.io import read_image
    from cxrlab.data.show import labelled_grid
    from cxrlab.errors import ImageReadError

    groups = list(dict.fromkeys(duplicates["duplicate_group"]))
    shown = groups[:DUPLICATE_GROUPS_SHOWN]
    side = DUPLICATE_TILE_PX
    per_row = min(
        DUPLICATES_PER_ROW,
        int(
            duplicates[duplicates["duplicate_group"].isin(shown)]["duplicate_group"]
            .value_counts()
            .max()
        ),
    )
    tiles, captions = [], []
    for group in shown:
        rows = duplicates[duplicates["duplicate_group"] == group].head(per_row)
        for row in rows.itertuples():
            tile = Image.new("L", (side, side), 0)
            try:
                # decoded no larger than the tile needs (JPEGs in the DCT domain)
                pixels = read_image(row.path, draft_px=side).pixels
                image = Image.fromarray(
                    (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels
                )
                image.thumbnail((side, side))
                tile.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            except ImageReadError:
                pass  # the caption still names it; the tile stays black
            tiles.append(np.asarray(tile))
            copy = "exact, " if row.exact_copy else ""
            captions.append(
                f"{copy}{row.split or 'unsplit'}, {row.label}: {row.id.rsplit('/', 1)[-1]}"
            )
        for _ in range(per_row - len(rows)):
            tiles.append(np.zeros((side, side), dtype=np.uint8))
            captions.append("")
    more = f" (the first {len(shown)} of {len(groups)})" if len(groups) > len(shown) else ""
    title = (
        f"{len(groups)} duplicate group{'s' if len(groups) > 1 else ''}{more}, one per row, groups that span splits first; "
        "all rows in duplicates.csv"
    )
    return labelled_grid(np.stack(tiles), captions, title=title, columns=per_row)


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
    lines += _format_sites(stats)
    return "\n".join(lines)


def _format_sites(stats: dict) -> list[str]:
    """Images per site and label, usable sites, and a warning per single-class site."""
    sites, per_site = stats["sites"], stats["site_by_label"]
    lines = [
        f"sites: {sites['known_sites']} known, {len(sites['usable_sites'])} usable for "
        f"leave-site-out (>= {USABLE_SITE_IMAGES} images, both classes); site unknown: "
        f"{sites['unknown_site_images']} images"
    ]
    if sites["known_sites"] == 0:
        return lines
    lines.append("images per site and label (site_by_label.csv has every site):")
    named = list(per_site.items())
    shown = named[:SITES_SHOWN] + [kv for kv in named[SITES_SHOWN:] if kv[0] == UNKNOWN_SITE]
    labels = [
        c
        for c in next(iter(per_site.values()))
        if c not in {"images", "covid_positive", "covid_negative"}
    ]
    for site, counts in shown:
        detail = ", ".join(f"{label} {counts[label]}" for label in labels if counts[label])
        lines.append(f"  {site[:28]:28s} {counts['images']:5d}  {detail}")
    if len(named) > len(shown):
        lines.append(f"  ... {len(named) - len(shown)} more sites")
    single = sites["single_class_sites"]
    if single:
        listed = ", ".join(
            f"{s['site']} ({s['images']}, all {s['class']})" for s in single[:SITES_SHOWN]
        )
        more = f" and {len(single) - SITES_SHOWN} more" if len(single) > SITES_SHOWN else ""
        lines.append(
            f"warning: {len(single)} sites hold one class only ({sites['single_class_images']} "
            f"images): {listed}{more}; {SHORTCUT}"
        )
    return lines
