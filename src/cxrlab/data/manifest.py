"""The dataset folder format: ``manifest.csv`` + ``rejects.csv`` + ``dataset.json``.

A dataset is a folder. ``manifest.csv`` has one row per accepted image, in the
columns of :data:`MANIFEST_COLUMNS` (sources may add more, such as ``finding`` or
``license``). ``rejects.csv`` has one row per input that was not accepted, with a
specific reason. Every input row or file of every source ends in exactly one of
the two. ``dataset.json`` records the sources, options and counts.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrlab.errors import DatasetError
from cxrlab.utils.fs import atomic_write_text

MANIFEST = "manifest.csv"
REJECTS = "rejects.csv"
DATASET_JSON = "dataset.json"

#: The columns every manifest has, in this order.
MANIFEST_COLUMNS = [
    "id",
    "path",
    "label",
    "covid",
    "patient_id",
    "source",
    "site",
    "view",
    "width",
    "height",
    "mode",
    "bit_depth",
    "sha256",
    "phash",
    "duplicate_group",
    "split",
]

#: The site column, and its value where the source does not state one (manifests
#: written before sites existed read as all ``unknown``).
SITE = "site"
UNKNOWN_SITE = "unknown"

#: Optional manifest column: ";"-separated patients of rejected rows that named the
#: same image (``file listed twice``, ``exact duplicate``); splits group them too.
LINKED_PATIENTS = "linked_patients"

REJECT_COLUMNS = ["source", "row", "id", "path", "reason", "detail"]

#: Split names. ``external`` holds a whole held-out source.
SPLITS = ("train", "val", "test", "external")

# Reasons written to rejects.csv (the image reader adds its own: missing, unreadable,
# decompression bomb, unsupported DICOM encoding).
REASON_NOT_XRAY = "not an X-ray"
REASON_VIEW = "view not selected"
REASON_NO_LABEL = "no label"
REASON_DUPLICATE = "exact duplicate"
REASON_BAD_ROW = "malformed row"
REASON_LISTED_TWICE = "file listed twice"


@dataclass
class Candidate:
    """An input that a source's metadata accepts; its image is still to be read.

    Attributes:
        id: unique within the dataset (sources prefix their own ids).
        path: the image file.
        label: harmonised class: ``covid``, ``negative``, ``normal``, ``pneumonia`` or
            ``other`` (see :mod:`cxrlab.data.sources.labels`).
        covid: 1 for COVID-19 positive, 0 otherwise.
        patient_id: unique within the dataset (prefixed with the source name).
        source: the source's name (``ieee8023``, ``covidx:sirm``, ...).
        site: where the image was made, as the source states it (a country, a
            publishing site, a collection, a folder...: see
            :mod:`cxrlab.data.sources.sites`); ``unknown`` when it does not say.
        view: view class (PA, AP, AP Supine, lateral, unknown, other: see
            :mod:`cxrlab.data.sources.views`); ``unknown`` when the source does not say.
        row: the metadata row number (1-based, header excluded) or file path, for rejects.
        extra: source-specific columns kept in the manifest (finding, license, url...).
    """

    id: str
    path: Path
    label: str
    covid: int
    patient_id: str
    source: str
    view: str = "unknown"
    row: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    site: str = "unknown"


@dataclass
class Reject:
    """An input that was not accepted, and why.

    ``patient_id`` and ``same_as`` (the id of the candidate whose image this row also
    names, for ``file listed twice`` and ``exact duplicate``) keep the patient link a
    rejected row carried: the accepted image lists the patient in ``linked_patients``,
    so a split keeps both patients together.
    """

    source: str
    row: str
    id: str
    path: str
    reason: str
    detail: str = ""
    patient_id: str = ""
    same_as: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "row": self.row,
            "id": self.id,
            "path": self.path,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass
class SourceScan:
    """What a source importer found: candidates to decode and rejects from metadata.

    ``n_inputs`` counts the source's input rows (or files); it must equal
    ``len(candidates) + len(rejects)``.
    """

    name: str
    candidates: list[Candidate]
    rejects: list[Reject]
    n_inputs: int
    options: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.n_inputs != len(self.candidates) + len(self.rejects):
            raise DatasetError(
                f"source {self.name}: {self.n_inputs} inputs but {len(self.candidates)} "
                f"candidates + {len(self.rejects)} rejects (a bug: please report it)"
            )


def dataframe_to_csv_text(frame: pd.DataFrame) -> str:
    """Deterministic CSV text (LF line ends, no index)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def write_table(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, dataframe_to_csv_text(frame))


def require_folder(path: str | Path, what: str = "dataset") -> Path:
    """The one check of every command that reads a dataset (or PACKED) folder: ``path``
    is a folder holding ``manifest.csv``, not that file itself nor anything else.

    Raises:
        DatasetError: naming ``path`` and the folder to give instead.
    """
    path = Path(path)
    if path.is_file():
        hint = (
            f"give its folder {path.parent}" if path.name == MANIFEST else f"give a {what} folder"
        )
        raise DatasetError(f"{path} is a file, not a {what} folder: {hint}")
    if not path.is_dir():
        raise DatasetError(
            f"{path} not found: give a {what} folder (make one with `cxrlab data import "
            "FORMAT PATH --out DATASET`)"
        )
    if not (path / MANIFEST).is_file():
        raise DatasetError(
            f"{path} has no {MANIFEST}: is it a {what} folder? Make one with "
            "`cxrlab data import FORMAT PATH --out DATASET`."
        )
    return path


def describe_splits(manifest: pd.DataFrame) -> str:
    """``"its splits: train, val"``, or what to do when the rows were never split."""
    splits = sorted({str(s) for s in manifest["split"]} - {""}) if "split" in manifest else []
    if not splits:
        return "it is not split yet: run `cxrlab data split DATASET` (then preprocess again)"
    return f"its splits: {', '.join(splits)}"


def read_manifest(dataset: str | Path) -> pd.DataFrame:
    """Read a dataset's (or packed folder's) ``manifest.csv`` with stable dtypes.

    Raises:
        DatasetError: if the folder has no manifest or the manifest lacks columns.
    """
    dataset = Path(dataset)
    path = dataset / MANIFEST if dataset.is_dir() else dataset
    if not path.is_file():
        raise DatasetError(
            f"{path} not found: is {dataset} a dataset folder? "
            "Make one with `cxrlab data import FORMAT PATH --out DATASET`."
        )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if SITE not in frame.columns:  # written before cxrlab recorded sites: none is known
        frame.insert(frame.columns.get_loc("source") + 1 if "source" in frame else 0, SITE, "")
    frame[SITE] = frame[SITE].replace("", UNKNOWN_SITE)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path} lacks the columns {missing}; was it written by cxrlab?")
    for column in ("covid", "width", "height", "bit_depth"):
        frame[column] = frame[column].astype(int)
    return frame


def read_rejects(dataset: str | Path) -> pd.DataFrame:
    path = Path(dataset) / REJECTS
    if not path.is_file():
        return pd.DataFrame(columns=REJECT_COLUMNS)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_manifest(dataset: str | Path, frame: pd.DataFrame) -> None:
    """Write ``manifest.csv`` atomically, the standard columns first."""
    columns = MANIFEST_COLUMNS + [c for c in frame.columns if c not in MANIFEST_COLUMNS]
    write_table(Path(dataset) / MANIFEST, frame[columns])


def manifest_digest(dataset: str | Path) -> str:
    """SHA-256 of a dataset's manifest file: identifies exactly which rows and splits."""
    return hashlib.sha256((Path(dataset) / MANIFEST).read_bytes()).hexdigest()


def read_dataset_info(dataset: str | Path) -> dict:
    path = Path(dataset) / DATASET_JSON
    return json.loads(path.read_text()) if path.is_file() else {}
