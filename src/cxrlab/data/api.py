"""Functions behind ``cxrlab data import|build|split``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from cxrlab.data.duplicates import DEFAULT_NEAR_DISTANCE
from cxrlab.data.ingest import IngestReport, ingest
from cxrlab.data.io import DEFAULT_MAX_PIXELS
from cxrlab.data.manifest import (
    DATASET_JSON,
    read_dataset_info,
    read_manifest,
    require_folder,
    write_manifest,
)
from cxrlab.data.sources import IMPORTERS, importer
from cxrlab.data.split import (
    SITE_COLUMN,
    SPLIT_NAMES,
    SplitReport,
    parse_ratios,
    plan_splits,
    site_names,
    split_report,
)
from cxrlab.errors import DatasetError
from cxrlab.utils.fs import atomic_write_text
from cxrlab.utils.outputs import DATASET, PACKED, check_output, folder_kind


def _importer(format_name: str):
    try:
        return importer(format_name)
    except KeyError:
        raise DatasetError(
            f"unknown source format {format_name!r}; choose one of {sorted(IMPORTERS)}"
        ) from None


def import_source(
    format_name: str,
    path: str | Path | None,
    out: str | Path,
    *,
    dedup: bool = False,
    near_distance: int | None = DEFAULT_NEAR_DISTANCE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
    **options,
) -> IngestReport:
    """Import one source (``ieee8023``, ``covidx``, ``folders``, ...) into dataset folder ``out``.

    ``options`` go to the source's importer (``views=`` for ieee8023, figure1,
    actualmed and sample, ``site_from=`` for ieee8023 and sample, ``site_level=`` or
    ``site_regex=`` for folders, ``images=`` for covidx...); a build spec's source
    entries take the same names. ``force`` replaces an ``out`` of another
    kind, made with other settings, or split (never an input).
    """
    inputs = [path, options.get("images")]
    ingest_check_inputs(out, inputs)
    scan = _importer(format_name)(path, **options)
    return ingest(
        [scan],
        out,
        dedup=dedup,
        near_distance=near_distance,
        max_pixels=max_pixels,
        workers=workers,
        progress=progress,
        force=force,
        inputs=[p for p in inputs if p is not None],
    )


def ingest_check_inputs(out: str | Path, inputs: list) -> None:
    """Refuse, before reading anything, an ``out`` that is, lies inside or holds an input."""
    check_output(out, kind=DATASET, inputs=inputs, force=True)


def build_dataset(
    spec_path: str | Path,
    out: str | Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> IngestReport:
    """Merge several sources named in a YAML spec into one dataset.

    Spec::

        dedup: true               # reject byte-identical copies across sources
        near_distance: 6          # perceptual-hash bits for near duplicates (null or -1: off)
        sources:
          - format: ieee8023
            path: ../covid-chestxray-dataset   # relative to the spec file
            views: [PA, AP]
            site_from: location                # location, url, doi or none
          - format: covidx
            path: labels/train_COVIDx8B.txt
            images: data/train
            source: covidx-train               # distinct names keep ids unique
    """
    spec_path = Path(spec_path)
    if not spec_path.is_file():
        raise DatasetError(f"spec {spec_path} not found")
    ingest_check_inputs(out, [spec_path])
    try:
        spec = yaml.safe_load(spec_path.read_text()) or {}
    except yaml.YAMLError as error:
        raise DatasetError(f"spec {spec_path} is not valid YAML ({error})") from None
    if not isinstance(spec, dict):
        raise DatasetError(f"spec {spec_path} must be a mapping with a 'sources' list")
    return build_from_spec(
        spec,
        out,
        base=spec_path.parent,
        where=str(spec_path),
        workers=workers,
        progress=progress,
        force=force,
        inputs=[spec_path],
    )


def build_from_spec(
    spec: dict,
    out: str | Path,
    *,
    base: str | Path = ".",
    where: str = "the spec",
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
    inputs: list[str | Path] | None = None,
) -> IngestReport:
    """:func:`build_dataset` on a spec already read: relative paths are relative to ``base``."""
    base = Path(base)
    sources = spec.get("sources")
    if not sources:
        raise DatasetError(f"{where}: 'sources' must list at least one source")
    scans = []
    for number, entry in enumerate(sources, start=1):
        entry = dict(entry)
        format_name = entry.pop("format", None)
        if not format_name:
            raise DatasetError(f"{where}: source {number} has no 'format'")
        path = entry.pop("path", None)
        if path is not None:
            path = (base / path).resolve()
        if "images" in entry:
            entry["images"] = (base / entry["images"]).resolve()
        if "views" in entry:
            views = entry["views"]
            entry["views"] = views.split(",") if isinstance(views, str) else list(views)
        ingest_check_inputs(out, [path, entry.get("images")])
        try:
            scans.append(_importer(format_name)(path, **entry))
        except TypeError as error:  # an option the importer does not take
            raise DatasetError(f"{where}: source {number} ({format_name}): {error}") from None
    return ingest(
        scans,
        out,
        dedup=bool(spec.get("dedup", False)),
        near_distance=spec.get("near_distance", DEFAULT_NEAR_DISTANCE),
        max_pixels=int(spec.get("max_pixels", DEFAULT_MAX_PIXELS)),
        workers=workers,
        progress=progress,
        force=force,
        inputs=inputs,
    )


def split_dataset(
    dataset: str | Path,
    ratios: tuple[float, ...] = (0.6, 0.2, 0.2),
    *,
    seed: int = 0,
    holdout_source: str | None = None,
    holdout_site: str | list[str] | None = None,
) -> SplitReport:
    """Write the ``split`` column of a dataset's manifest (see :mod:`cxrlab.data.split`).

    The split and its warnings (a class missing from a split) are recorded in
    ``dataset.json``. With ``holdout_source`` (``holdout_site``: a site name, names
    separated by commas, or a list), the report counts the images of other sources
    (sites) that followed it into ``external`` through a shared patient or duplicate
    group.

    Raises:
        DatasetError: for a PACKED folder (split the dataset it was made from), bad
            ratios, an unknown source or site, a site hold-out on a manifest without
            sites, or a hold-out that leaves train or val without both classes; the
            manifest is untouched then.
    """
    dataset = require_folder(dataset)
    if folder_kind(dataset) == PACKED:
        raise DatasetError(
            f"{dataset} is a packed dataset, not a dataset: split the dataset it was made "
            "from (its meta.json names it as source_dataset), then preprocess it again"
        )
    ratios = parse_ratios(ratios)
    manifest = read_manifest(dataset)
    if manifest.empty:
        raise DatasetError(f"{dataset} has no accepted images to split; see its rejects.csv")
    sites = site_names(holdout_site) if holdout_site is not None else None
    split, warnings = plan_splits(
        manifest, ratios, seed=seed, holdout_source=holdout_source, holdout_site=sites
    )
    followers: dict[str, int] = {}
    site_followers: dict[str, int] = {}
    external = split == "external"
    if holdout_source:
        followed = manifest[external & (manifest["source"] != holdout_source)]
        followers = {str(k): int(v) for k, v in followed["source"].value_counts().items()}
    if sites is not None:
        followed = manifest[external & ~manifest[SITE_COLUMN].astype(str).isin(sites)]
        site_followers = {str(k): int(v) for k, v in followed[SITE_COLUMN].value_counts().items()}
    if holdout_source or sites is not None:
        held_rows = np.zeros(len(manifest), dtype=bool)
        options, held_names = [], []
        if holdout_source:
            held_rows |= (manifest["source"] == holdout_source).to_numpy()
            options.append(f"--holdout-source {holdout_source}")
            held_names.append(holdout_source)
        if sites is not None:
            held_rows |= manifest[SITE_COLUMN].astype(str).isin(sites).to_numpy()
            options.append(f"--holdout-site {','.join(sites)}")
            held_names.extend(sites)
        option, held = " ".join(options), ", ".join(held_names)
        n_followers = int((external.to_numpy() & ~held_rows).sum())
        for name in SPLIT_NAMES[:2]:
            classes = set(manifest.loc[split == name, "covid"])
            if classes != {0, 1}:
                missing = sorted({0, 1} - classes)
                raise DatasetError(
                    f"{option}: {name} would have no images with covid={missing} once {held} "
                    f"(and {n_followers} images sharing a patient or duplicate group "
                    f"with it) is external; {dataset}/manifest.csv is unchanged. Hold out "
                    "another source or site, or add images of that class from other ones"
                )
    previous = manifest["split"].astype(str)
    if previous.ne("").any():
        moved = int((previous.to_numpy() != np.asarray(split, dtype=str)).sum())
        warnings = [
            *warnings,
            f"replaced the existing split of {dataset}: {moved} of {len(manifest)} images "
            "changed split; a PACKED or run made from the old split no longer matches it "
            "(preprocess again)"
            if moved
            else f"{dataset} was already split the same way; nothing changed",
        ]
    manifest["split"] = split
    write_manifest(dataset, manifest)
    report = split_report(manifest)
    report.warnings = warnings
    report.external_followers = followers
    report.external_site_followers = site_followers
    info = read_dataset_info(dataset)
    info["split"] = {
        "ratios": list(ratios),
        "seed": seed,
        "holdout_source": holdout_source,
        "holdout_site": sites,
        "external_followers": followers,
        "external_site_followers": site_followers,
        "warnings": warnings,
    }
    atomic_write_text(dataset / DATASET_JSON, json.dumps(info, indent=2, default=str) + "\n")
    return report
