"""The COVID-19 image data collection (ieee8023/covid-chestxray-dataset).

Cohen, Morrison, Dao (2020), "COVID-19 image data collection", arXiv:2003.11597,
https://github.com/ieee8023/covid-chestxray-dataset. Layout: ``metadata.csv`` and
``images/`` (CT volumes in ``volumes/``). It is the ``cohen`` source of COVIDx.

Rows are checked in this order, the first failing check naming the reject reason:
modality is X-ray, the file exists, view is selected, finding is a label,
the file was not listed by an earlier row.

Views: the ``view`` column maps to a view class (:mod:`cxrlab.data.sources.views`), so
``AP erect`` and ``AP semi erect`` are ``AP``. The default keeps PA, AP and AP Supine;
a blank view is ``unknown`` and is left out by default, since the collection also
holds laterals (``--views PA,AP,AP Supine,unknown`` keeps it). The manifest's ``view``
is the class; ``view_as_written`` keeps the metadata's spelling.

Sites: ``site_from`` picks the metadata column the ``site`` comes from (``location``:
its country; ``url``: the publishing site; ``doi``: the publisher's prefix; ``none``);
an empty or ``?`` value is ``unknown`` (:mod:`cxrlab.data.sources.sites`).

Lung masks: ``annotations/lungVAE-masks/<image stem>_mask.png`` (0/255 at the image's
size, for a few hundred images upstream) are recorded in the ``mask_path`` column
(empty when an image has none). They are lungVAE predictions (Selvan et al. 2020),
pseudo-labels rather than manual outlines.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from cxrlab.data.io import REASON_MISSING
from cxrlab.data.manifest import (
    REASON_LISTED_TWICE,
    REASON_NO_LABEL,
    REASON_NOT_XRAY,
    REASON_VIEW,
    Candidate,
    Reject,
    SourceScan,
)
from cxrlab.data.sources.labels import LabelError, harmonise
from cxrlab.data.sources.sites import choose_site_from, site_of_record
from cxrlab.data.sources.views import DEFAULT_VIEWS, parse_views, view_class
from cxrlab.errors import DatasetError

#: Metadata columns copied into the manifest.
KEPT_COLUMNS = ("finding", "license", "url", "doi", "location", "offset", "sex", "age")

#: Where the collection keeps its lungVAE lung masks, relative to the dataset folder.
MASK_FOLDER = Path("annotations") / "lungVAE-masks"


def lung_mask_path(root: Path, filename: str) -> str:
    """The absolute path of ``filename``'s lungVAE mask, or "" when it has none."""
    mask = root / MASK_FOLDER / f"{Path(filename).stem}_mask.png"
    return str(mask.resolve()) if mask.is_file() else ""


def _reject(
    rejects: list[Reject],
    source: str,
    row: str,
    image_id: str,
    file_path: Path,
    patient: str,
    reason: str,
    detail: str,
    same_as: str = "",
) -> None:
    rejects.append(Reject(source, row, image_id, str(file_path), reason, detail, patient, same_as))


def scan_ieee8023(
    path: str | Path,
    *,
    views: tuple[str, ...] | list[str] = DEFAULT_VIEWS,
    source: str = "ieee8023",
    site_from: str | None = None,
) -> SourceScan:
    """Scan a covid-chestxray-dataset checkout (a folder with ``metadata.csv``).

    Args:
        path: the dataset folder.
        views: view classes to keep (PA, AP, AP Supine, lateral, unknown, other), or
            spellings of them: each is mapped by :func:`~cxrlab.data.sources.views.view_class`.
        source: name recorded in the manifest and used to prefix ids.
        site_from: where the ``site`` comes from: ``location``, ``url``, ``doi`` or
            ``none``; None: ``location``, or the first of url, doi the metadata has
            (with a warning; the bundled sample has no location column).

    Raises:
        DatasetError: for a missing ``metadata.csv`` or column, or a ``site_from`` whose
            column the metadata lacks.
    """
    root = Path(path)
    metadata = root / "metadata.csv" if root.is_dir() else root
    if root.is_file():
        root = root.parent
    if not metadata.is_file():
        raise DatasetError(
            f"{metadata} not found: point ieee8023 at a covid-chestxray-dataset folder "
            "(git clone https://github.com/ieee8023/covid-chestxray-dataset)"
        )
    table = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    needed = {"patientid", "finding", "view", "modality", "filename"}
    if not needed <= set(table.columns):
        raise DatasetError(f"{metadata} lacks the columns {sorted(needed - set(table.columns))}")
    wanted_views = parse_views(views)
    site_from, warnings = choose_site_from(site_from, table.columns, str(metadata))
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    first_row: dict[str, str] = {}
    for number, record in enumerate(table.to_dict("records"), start=1):
        row = str(number)
        folder = record.get("folder") or "images"
        file_path = root / folder / record["filename"]
        image_id = f"{source}:{record['filename']}"
        patient = f"{source}:{record['patientid']}"
        # reject(reason, detail[, same_as]): this row's reject, with its patient
        reject = functools.partial(_reject, rejects, source, row, image_id, file_path, patient)

        modality = record["modality"].strip()
        view_written = record["view"].strip()
        view = view_class(view_written)
        if modality != "X-ray":
            reject(REASON_NOT_XRAY, f"modality {modality!r}")
            continue
        if not file_path.is_file():
            reject(REASON_MISSING, "file named in metadata.csv is absent")
            continue
        if view not in wanted_views:
            reject(REASON_VIEW, f"view {view_written!r} ({view}) not in {list(wanted_views)}")
            continue
        try:
            label = harmonise(record["finding"])
        except LabelError as error:
            reject(REASON_NO_LABEL, str(error))
            continue
        if label is None:
            reject(REASON_NO_LABEL, f"finding {record['finding']!r}")
            continue
        if image_id in first_row:  # upstream lists some files for two patients
            reject(REASON_LISTED_TWICE, f"row {first_row[image_id]} names the same file", image_id)
            continue
        first_row[image_id] = row
        candidates.append(
            Candidate(
                id=image_id,
                path=file_path,
                label=label[0],
                covid=label[1],
                patient_id=patient,
                source=source,
                view=view,
                row=row,
                site=site_of_record(site_from, record),
                extra={
                    **{k: record.get(k, "") for k in KEPT_COLUMNS},
                    "view_as_written": view_written,
                    "mask_path": lung_mask_path(root, record["filename"]),
                },
            )
        )
    return SourceScan(
        source,
        candidates,
        rejects,
        len(table),
        {"path": str(root), "views": list(wanted_views), "site_from": site_from},
        warnings,
    )
