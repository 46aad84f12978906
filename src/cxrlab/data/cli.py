"""``cxrlab data``: import public sources into datasets, split, describe, preprocess, augment, show."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cxrlab.cli_common import (
    Force,
    LabelChoice,
    ListOptionsCommand,
    Quiet,
    Workers,
    covid_value,
    friendly_errors,
    warn,
)
from cxrlab.data.sources import IMPORTERS, SITE_FROM

app = typer.Typer(
    help="Import public CXR sources into datasets, split them by patient, describe them.",
    no_args_is_help=True,
)


#: ``data import FORMAT`` choices: the importer registry's names.
SourceFormat = Enum("SourceFormat", {name: name for name in IMPORTERS}, type=str)

#: ``data import --site-from`` choices.
SiteFrom = Enum("SiteFrom", {name: name for name in SITE_FROM}, type=str)


@app.command("import")
@friendly_errors
def data_import(
    format_name: Annotated[SourceFormat, typer.Argument(metavar="FORMAT", help="Source layout.")],
    path: Annotated[
        Path | None,
        typer.Argument(
            help="The source's folder (or label file for covidx). Not needed for 'sample'."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")] = Path(
        "dataset"
    ),
    views: Annotated[
        str | None,
        typer.Option(
            help="ieee8023, figure1, actualmed, sample: comma-separated view classes to keep, "
            "of PA, AP, AP Supine, lateral, unknown (blank view), other. Each metadata "
            "value maps to one class, case and punctuation aside (AP erect, AP semi erect, "
            "AP portable: AP; L, LL, lateral: lateral), and so does each value here (--views "
            "'AP erect' keeps every AP). Others are rejected as 'view not selected'. "
            "Default: PA,AP,AP Supine; figure1 and actualmed (frontal-only collections) "
            "also keep unknown."
        ),
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="covidx: the folder holding the images of the label file.")
    ] = None,
    patient_regex: Annotated[
        str | None,
        typer.Option(help="folders: regex whose first group in a file name is the patient id."),
    ] = None,
    site_from: Annotated[
        SiteFrom | None,
        typer.Option(
            help="ieee8023, sample: the metadata column the 'site' comes from: location (its "
            "country), url (the publishing site's host), doi (the publisher's prefix) or none. "
            "Default: location (the most usable sites on the ieee8023 dev data, README: Sites; "
            "the sample, which has no location column: url). Empty values are 'unknown'."
        ),
    ] = None,
    site_level: Annotated[
        int | None,
        typer.Option(
            help="folders: the folder level below each class folder that names the site "
            "(1: ROOT/<class>/<site>/...). Default: every site 'unknown'."
        ),
    ] = None,
    site_regex: Annotated[
        str | None,
        typer.Option(
            help="folders: regex whose first group, searched in the path below ROOT "
            "(e.g. COVID/hospital_a/x.png), is the site. Non-matching files: 'unknown'."
        ),
    ] = None,
    source: Annotated[str | None, typer.Option(help="Name recorded as the rows' source.")] = None,
    dedup: Annotated[
        bool, typer.Option(help="Reject byte-identical copies of accepted images.")
    ] = False,
    near_distance: Annotated[
        int,
        typer.Option(
            help="Perceptual-hash bits within which images are near duplicates "
            "(-1: off; in a build spec, near_distance: null or -1)."
        ),
    ] = 6,
    max_pixels: Annotated[
        int, typer.Option(help="Images with more pixels are rejected as decompression bombs.")
    ] = 64_000_000,
    workers: Workers = None,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Import one public source into a dataset folder (manifest.csv + rejects.csv).

    Every input row or file ends in exactly one of manifest.csv (accepted) or
    rejects.csv (with a reason: missing, unreadable, not an X-ray, view not
    selected, no label, decompression bomb, unsupported DICOM encoding, exact duplicate).
    """
    from cxrlab.data.api import import_source

    options: dict = {}
    view_formats = (SourceFormat.ieee8023, SourceFormat.figure1, SourceFormat.actualmed)
    if views is not None:
        if format_name not in (*view_formats, SourceFormat.sample):
            raise typer.BadParameter(
                f"{format_name.value} has no view metadata (its views are 'unknown'); "
                "leave --views out",
                param_hint="--views",
            )
        options["views"] = [v.strip() for v in views.split(",") if v.strip()]
    if format_name == SourceFormat.covidx:
        options["images"] = images
    if format_name == SourceFormat.folders and patient_regex:
        options["patient_regex"] = patient_regex
    site_options = {
        "--site-from": (site_from, "site_from", (SourceFormat.ieee8023, SourceFormat.sample)),
        "--site-level": (site_level, "site_level", (SourceFormat.folders,)),
        "--site-regex": (site_regex, "site_regex", (SourceFormat.folders,)),
    }
    for flag, (value, name, formats) in site_options.items():
        if value is None:
            continue
        if format_name not in formats:
            raise typer.BadParameter(
                f"only {' and '.join(f.value for f in formats)} take it; {format_name.value}'s "
                "site is its collection (covidx: each line's source)",
                param_hint=flag,
            )
        options[name] = value.value if isinstance(value, Enum) else value
    if source:
        options["source"] = source
    if path is None and format_name != SourceFormat.sample:
        raise typer.BadParameter(f"{format_name.value} needs a PATH", param_hint="PATH")
    if path is not None and format_name == SourceFormat.sample:
        from cxrlab.errors import CxrlabError

        raise CxrlabError(
            f"'sample' is the bundled sample and takes no PATH; to import {path}, name its "
            "format (e.g. `cxrlab data import ieee8023 PATH`)"
        )
    report = import_source(
        format_name.value,
        path,
        out,
        dedup=dedup,
        near_distance=None if near_distance < 0 else near_distance,
        max_pixels=max_pixels,
        workers=workers,
        progress=not quiet,
        force=force,
        **options,
    )
    typer.echo(report.summary())
    warn(report.warnings)


@app.command("build")
@friendly_errors
def data_build(
    spec: Annotated[Path, typer.Argument(help="YAML spec listing the sources to merge.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")] = Path(
        "dataset"
    ),
    workers: Workers = None,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Merge several sources into one dataset, the way COVIDx is assembled.

    The spec lists sources (format, path and the importer's options), and whether
    to drop exact duplicates across them; see `cxrlab.data.api.build_dataset`.
    """
    from cxrlab.data.api import build_dataset

    report = build_dataset(spec, out, workers=workers, progress=not quiet, force=force)
    typer.echo(report.summary())
    warn(report.warnings)


@app.command("repair-covidx")
@friendly_errors
def data_repair_covidx(
    label_file: Annotated[Path, typer.Argument(help="A COVIDx label file of any version.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Repaired label file to write.")],
    force: Annotated[
        bool, typer.Option(help="Replace an existing, different --out file (never the input).")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Write a COVIDx label file with exactly 4 fields per line (id filename label source).

    Repairs ids containing spaces (joined with '_') and lines without a source.
    """
    from cxrlab.data.sources.covidx import repair_covidx

    counts = repair_covidx(label_file, out, force=force)
    typer.echo(
        f"{out}: {counts['lines']} lines in and out, {counts['repaired']} repaired, "
        f"{counts['unchanged']} unchanged"
    )


class SplitBy(str, Enum):
    patient = "patient"


@app.command("split", cls=ListOptionsCommand)
@friendly_errors
def data_split(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    by: Annotated[
        SplitBy,
        typer.Option(help="Grouping unit; duplicates of one image are always kept together too."),
    ] = SplitBy.patient,
    ratios: Annotated[
        str,
        typer.Option(
            metavar="TRAIN VAL [TEST]",
            help="Train, validation and (optional) test shares summing to 1: --ratios 0.6 0.2 0.2 "
            "or --ratios 0.6,0.2,0.2 (2 values: no test split).",
        ),
    ] = "0.6,0.2,0.2",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same split.")] = 0,
    holdout_source: Annotated[
        str | None, typer.Option(help="Put this whole source into an 'external' test split.")
    ] = None,
    holdout_site: Annotated[
        str | None,
        typer.Option(
            metavar="NAME[,NAME]",
            help="Put these sites (the manifest's site column) into the 'external' split, "
            "with every patient or duplicate group they share with other sites.",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Split a dataset into train/val/test, stratified by label, with no patient in two splits.

    Each split gets at least one patient group of each class when there are enough;
    otherwise a warning names the split that lacks one, and another any split whose
    share of a class is far from its ratio (both also kept in dataset.json).
    """
    from cxrlab.data.api import split_dataset
    from cxrlab.data.split import parse_ratios

    report = split_dataset(
        dataset,
        parse_ratios(ratios),
        seed=seed,
        holdout_source=holdout_source,
        holdout_site=holdout_site,
    )
    typer.echo(f"{dataset}: {report.n_groups} patient/duplicate groups")
    typer.echo(report.summary())
    if holdout_source:
        followers = report.external_followers
        detail = ", ".join(f"{source} {n}" for source, n in followers.items())
        typer.echo(
            f"external: {holdout_source} plus {sum(followers.values())} images of other "
            "sources that share a patient or duplicate group with it"
            + (f" ({detail})" if detail else "")
        )
    if holdout_site is not None:
        followers = report.external_site_followers
        detail = ", ".join(f"{site} {n}" for site, n in followers.items())
        typer.echo(
            f"external: site(s) {holdout_site} plus {sum(followers.values())} images of other "
            "sites that share a patient or duplicate group with them"
            + (f" ({detail})" if detail else "")
        )
    warn(report.warnings)


@app.command("stats")
@friendly_errors
def data_stats(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for PNG + JSON (default DATASET/stats)."),
    ] = None,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Class balance per split, image sizes and modes, sources x labels, duplicates."""
    from cxrlab.data.stats import format_stats, write_stats

    out = out or dataset / "stats"
    stats = write_stats(dataset, out, force=force)
    typer.echo(format_stats(stats))
    typer.echo(f"figures and stats.json in {out}")


class ResizeChoice(str, Enum):
    stretch = "stretch"
    pad = "pad"
    crop = "crop"


class EqualizeChoice(str, Enum):
    none = "none"
    hist = "hist"
    clahe = "clahe"


class LungsChoice(str, Enum):
    none = "none"
    crop = "crop"
    mask = "mask"


class PresetChoice(str, Enum):
    severe = "severe"
    mild = "mild"
    anatomical = "anatomical"


@app.command("preprocess")
@friendly_errors
def data_preprocess(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (from data import/build).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PACKED folder to write.")],
    size: Annotated[int, typer.Option(help="Side of the square output in px (32-1024).")] = 64,
    resize: Annotated[
        ResizeChoice, typer.Option(help="Aspect: stretch, pad (black borders) or crop (centre).")
    ] = ResizeChoice.stretch,
    crop_top: Annotated[
        float, typer.Option(help="Fraction of the height cut from the top (COVID-Net: 0.08).")
    ] = 0.0,
    equalize: Annotated[
        EqualizeChoice, typer.Option(help="Contrast: none, hist (global) or clahe.")
    ] = EqualizeChoice.none,
    clahe_clip: Annotated[float, typer.Option(help="CLAHE clip limit.")] = 2.0,
    clahe_grid: Annotated[int, typer.Option(help="CLAHE tiles per side.")] = 8,
    gamma: Annotated[float, typer.Option(help="Gamma on [0, 1] (1: none).")] = 1.0,
    bit_depth: Annotated[int, typer.Option(help="Output bits per pixel: 8 or 16.")] = 8,
    splits: Annotated[
        str | None, typer.Option(help="Comma-separated splits to keep (default: all rows).")
    ] = None,
    lungs: Annotated[
        LungsChoice,
        typer.Option(
            help="none; crop (to the lung box + margin, before resizing); mask (zero outside "
            "the lungs). Needs --lung-masks."
        ),
    ] = LungsChoice.none,
    lung_masks: Annotated[
        Path | None,
        typer.Option(
            help="MASKS folder of `cxrlab seg predict`; also stored as masks.npy. Images "
            "without a usable mask are rejected."
        ),
    ] = None,
    lung_margin: Annotated[
        float, typer.Option(help="--lungs crop: margin as a fraction of the lung box's sides.")
    ] = 0.05,
    draft: Annotated[
        bool,
        typer.Option(help="Allow reduced-scale JPEG decoding when the output is much smaller."),
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            help="Redo the work even if an identical PACKED exists; replace an --out of "
            "another kind or made with other settings (never the input)."
        ),
    ] = False,
    workers: Workers = None,
    quiet: Quiet = False,
) -> None:
    """Preprocess a dataset into a PACKED folder (images.npy + manifest.csv + meta.json).

    The same options on the same dataset give byte-identical files, and a second
    run with them does nothing. Writes are atomic.
    """
    from cxrlab.data.packed import preprocess_dataset
    from cxrlab.preprocess.transforms import PreprocessOptions

    options = PreprocessOptions(
        size_px=size,
        resize=resize.value,
        crop_top=crop_top,
        equalize=equalize.value,
        clahe_clip=clahe_clip,
        clahe_grid=clahe_grid,
        gamma=gamma,
        bit_depth=bit_depth,
        draft=draft,
        lungs=lungs.value,
        lung_margin=lung_margin,
    )
    split_list = [s.strip() for s in splits.split(",") if s.strip()] if splits else None
    report = preprocess_dataset(
        dataset,
        out,
        options,
        splits=split_list,
        lung_masks=lung_masks,
        workers=workers,
        progress=not quiet,
        force=force,
    )
    typer.echo(report.summary())


@app.command("augment")
@friendly_errors
def data_augment(
    packed: Annotated[Path, typer.Argument(help="PACKED folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PACKED folder to write.")],
    preset: Annotated[
        PresetChoice, typer.Option(help="Keras ImageDataGenerator preset of the thesis.")
    ] = PresetChoice.mild,
    per_image: Annotated[int, typer.Option(help="Augmented copies per train image.")] = 10,
    label: Annotated[
        LabelChoice | None, typer.Option(help="Augment only this class (default: both).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    force: Annotated[
        bool,
        typer.Option(
            help="Redo the work even if an identical result exists; replace an --out of "
            "another kind or made with other settings (never the input)."
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Add augmented copies of the train images (never val/test) to a packed dataset.

    Presets (rotation, zoom, width shift, height shift, shear in degrees, flip):
    severe 30/0.15/0.2/0.2/0.15/flip, mild 15/0.15/0.1/0.1/0.15/flip,
    anatomical = mild without the flip.
    """
    from cxrlab.data.augmented import augment_packed

    report = augment_packed(
        packed,
        out,
        preset=preset.value,
        per_image=per_image,
        covid=covid_value(label),
        seed=seed,
        progress=not quiet,
        force=force,
    )
    typer.echo(report.summary())


@app.command("show")
@friendly_errors
def data_show(
    packed: Annotated[Path, typer.Argument(help="PACKED folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("grid.png"),
    n: Annotated[int, typer.Option(help="Images in the grid.")] = 64,
    augment: Annotated[
        PresetChoice | None,
        typer.Option(help="Show one image's augmented variants with this preset."),
    ] = None,
    index: Annotated[int, typer.Option(help="With --augment: which image (in the split).")] = 0,
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for the choice or the augmentation.")] = 0,
    force: Annotated[
        bool,
        typer.Option(help="Replace an existing --out file that is not a PNG (never the input)."),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Write an image grid of a packed dataset, or of one image's augmented variants."""
    from cxrlab.data.show import show_packed

    path = show_packed(
        packed,
        out,
        n=n,
        augment=augment.value if augment else None,
        index=index,
        split=split,
        seed=seed,
        force=force,
    )
    typer.echo(f"wrote {path}")
