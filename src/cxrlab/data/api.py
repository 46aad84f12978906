"""Functions behind ``cxrlab data import|build|split``."""

from __future__ import annotations

from pathlib import Path

import yaml

from cxrlab.data.duplicates import DEFAULT_NEAR_DISTANCE
from cxrlab.data.ingest import IngestReport, ingest
from cxrlab.data.io import DEFAULT_MAX_PIXELS
from cxrlab.data.manifest import read_manifest, write_manifest
from cxrlab.data.sources import IMPORTERS
from cxrlab.data.split import SplitReport, assign_splits, split_report
from cxrlab.errors import DatasetError


def _importer(format_name: str):
    try:
        return IMPORTERS[format_name]
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
    **options,
) -> IngestReport:
    """Import one source (``ieee8023``, ``covidx``, ``folders``, ...) into dataset folder ``out``.

    ``options`` go to the source's importer (``views=`` for ieee8023, ``images=`` for covidx...).
    """
    scan = _importer(format_name)(path, **options)
    return ingest(
        [scan],
        out,
        dedup=dedup,
        near_distance=near_distance,
        max_pixels=max_pixels,
        workers=workers,
        progress=progress,
    )


def build_dataset(
    spec_path: str | Path, out: str | Path, *, workers: int | None = None, progress: bool = True
) -> IngestReport:
    """Merge several sources named in a YAML spec into one dataset.

    Spec::

        dedup: true               # reject byte-identical copies across sources
        near_distance: 6          # perceptual-hash bits for near duplicates (null: off)
        sources:
          - format: ieee8023
            path: ../covid-chestxray-dataset   # relative to the spec file
            views: [PA, AP]
          - format: covidx
            path: labels/train_COVIDx8B.txt
            images: data/train
            source: covidx-train               # distinct names keep ids unique
    """
    spec_path = Path(spec_path)
    if not spec_path.is_file():
        raise DatasetError(f"spec {spec_path} not found")
    spec = yaml.safe_load(spec_path.read_text()) or {}
    return build_from_spec(
        spec, out, base=spec_path.parent, where=str(spec_path), workers=workers, progress=progress
    )


def build_from_spec(
    spec: dict,
    out: str | Path,
    *,
    base: str | Path = ".",
    where: str = "the spec",
    workers: int | None = None,
    progress: bool = True,
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
            entry["views"] = list(entry["views"])
        scans.append(_importer(format_name)(path, **entry))
    return ingest(
        scans,
        out,
        dedup=bool(spec.get("dedup", False)),
        near_distance=spec.get("near_distance", DEFAULT_NEAR_DISTANCE),
        max_pixels=int(spec.get("max_pixels", DEFAULT_MAX_PIXELS)),
        workers=workers,
        progress=progress,
    )


def split_dataset(
    dataset: str | Path,
    ratios: tuple[float, ...] = (0.6, 0.2, 0.2),
    *,
    seed: int = 0,
    holdout_source: str | None = None,
) -> SplitReport:
    """Write the ``split`` column of a dataset's manifest (see :mod:`cxrlab.data.split`)."""
    manifest = read_manifest(dataset)
    if manifest.empty:
        raise DatasetError(f"{dataset} has no accepted images to split; see its rejects.csv")
    manifest["split"] = assign_splits(
        manifest, tuple(ratios), seed=seed, holdout_source=holdout_source
    )
    write_manifest(dataset, manifest)
    return split_report(manifest)
