"""The COVID-Net partner collections: Figure1 and Actualmed.

* Figure 1 COVID-19 Chest X-ray Dataset Initiative,
  https://github.com/agchung/Figure1-COVID-chestxray-dataset: ``metadata.csv``
  (ISO-8859-1) with ``patientid, finding, view, modality``; the image is
  ``images/<patientid>.jpg`` or ``.png``.
* Actualmed COVID-19 Chest X-ray Dataset Initiative,
  https://github.com/agchung/Actualmed-COVID-chestxray-dataset: ``metadata.csv``
  with ``patientid, finding, view, modality, imagename``; the image is
  ``images/<imagename>``.

Every finding of a comma-separated list counts (a row whose findings include
COVID-19 is COVID; the manifest's ``finding`` keeps them all). Views map to view
classes (:mod:`cxrlab.data.sources.views`: ``AP erect`` is ``AP``) and only the
selected classes are kept: laterals are rejected as ``view not selected``, so they
never enter a frontal study. Both collections hold frontal images only, and Figure1
leaves the view blank for most of them, so a blank view (class ``unknown``) is kept
by default here (default ``PA, AP, AP Supine, unknown``; ``--views PA,AP,AP Supine``
drops it).

Sites: neither collection's metadata says where an image was made, beyond the
collection itself, so the ``site`` is the collection's name (``figure1``,
``actualmed``), whatever ``source`` the rows are given.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrlab.data.io import REASON_MISSING
from cxrlab.data.manifest import (
    REASON_NO_LABEL,
    REASON_NOT_XRAY,
    REASON_VIEW,
    Candidate,
    Reject,
    SourceScan,
)
from cxrlab.data.sources.labels import LabelError, harmonise
from cxrlab.data.sources.views import (
    DEFAULT_VIEWS_FRONTAL_SOURCE,
    UNKNOWN,
    parse_views,
    view_class,
)
from cxrlab.errors import DatasetError

#: The collections' names, recorded as every row's site.
FIGURE1, ACTUALMED = "figure1", "actualmed"


def _read_metadata(root: Path, encoding: str) -> pd.DataFrame:
    metadata = root / "metadata.csv"
    if not metadata.is_file():
        raise DatasetError(
            f"{metadata} not found: point at the repository folder holding metadata.csv and images/"
        )
    table = pd.read_csv(metadata, dtype=str, keep_default_na=False, encoding=encoding)
    if {"filename", "folder"} <= set(table.columns):  # the ieee8023 layout, not a partner's
        raise DatasetError(
            f"{metadata} is the ieee8023 collection's metadata (it has filename and folder "
            f"columns), not a Figure1 or Actualmed one: import it with `cxrlab data import "
            f"ieee8023 {root}`"
        )
    return table


def _scan_partner(
    root: Path,
    table: pd.DataFrame,
    source: str,
    image_name,
    views: tuple[str, ...] | list[str],
    site: str,
) -> SourceScan:
    if "patientid" not in table.columns or "finding" not in table.columns:
        raise DatasetError(f"{root}/metadata.csv lacks patientid/finding columns")
    wanted_views = parse_views(views)
    warnings = []
    if "view" not in table.columns and UNKNOWN in wanted_views:  # every view is unknown
        warnings.append(
            f"{root}/metadata.csv has no view column: every view is 'unknown' and was kept, "
            "so lateral images may be included"
        )
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    for number, record in enumerate(table.to_dict("records"), start=1):
        name = image_name(record)
        file_path = root / "images" / name if name else root / "images"
        image_id = f"{source}:{name or record['patientid']}"

        def reject(reason: str, detail: str, image_id=image_id, file_path=file_path, row=number):
            rejects.append(Reject(source, str(row), image_id, str(file_path), reason, detail))

        modality = str(record.get("modality", "")).strip()
        if modality and modality.lower() not in {"x-ray", "xray", "cxr"}:
            reject(REASON_NOT_XRAY, f"modality {modality!r}")
            continue
        view_written = str(record.get("view", "")).strip()
        view = view_class(view_written)
        if view not in wanted_views:
            reject(REASON_VIEW, f"view {view_written!r} ({view}) not in {list(wanted_views)}")
            continue
        try:
            label = harmonise(str(record["finding"]))  # every finding of the list counts
        except LabelError:
            label = None
        if label is None:
            reject(REASON_NO_LABEL, f"finding {record['finding']!r}")
            continue
        if not name or not file_path.is_file():
            reject(REASON_MISSING, "image file is absent")
            continue
        candidates.append(
            Candidate(
                id=image_id,
                path=file_path,
                label=label[0],
                covid=label[1],
                patient_id=f"{source}:{record['patientid']}",
                source=source,
                view=view,
                row=str(number),
                site=site,
                extra={"finding": str(record["finding"]), "view_as_written": view_written},
            )
        )
    options = {"path": str(root), "views": list(wanted_views)}
    return SourceScan(source, candidates, rejects, len(table), options, warnings)


def scan_figure1(
    path: str | Path,
    *,
    views: tuple[str, ...] | list[str] = DEFAULT_VIEWS_FRONTAL_SOURCE,
    source: str = "figure1",
) -> SourceScan:
    """Scan a Figure1-COVID-chestxray-dataset checkout."""
    root = Path(path)
    table = _read_metadata(root, "ISO-8859-1")

    def image_name(record: dict) -> str:
        for suffix in (".jpg", ".png", ".jpeg"):
            if (root / "images" / f"{record['patientid']}{suffix}").is_file():
                return f"{record['patientid']}{suffix}"
        return ""

    return _scan_partner(root, table, source, image_name, views, FIGURE1)


def scan_actualmed(
    path: str | Path,
    *,
    views: tuple[str, ...] | list[str] = DEFAULT_VIEWS_FRONTAL_SOURCE,
    source: str = "actualmed",
) -> SourceScan:
    """Scan an Actualmed-COVID-chestxray-dataset checkout."""
    root = Path(path)
    table = _read_metadata(root, "utf-8")
    if "imagename" not in table.columns:
        raise DatasetError(f"{root}/metadata.csv lacks the imagename column")
    return _scan_partner(
        root, table, source, lambda record: str(record["imagename"]).strip(), views, ACTUALMED
    )
