"""COVIDx label files (COVID-Net, lindawangg/COVID-Net, ``labels/``).

Wang, Lin, Wong (2020), "COVID-Net", Scientific Reports 10:19549. A label file has
one image per line, ``patient_id filename label source``, but the published files
differ:

* ``test_COVIDx3.txt`` has lines with only 3 fields (no source);
* versions 3 and 9A use 3-class labels (``normal``/``pneumonia``/``COVID-19``),
  8B uses binary ones (``positive``/``negative``);
* in ``train_COVIDx8B.txt`` 943 ids contain a space (``COVID 1 COVID(1).png positive sirm``),
  which breaks naive whitespace splitting into 5 fields.

:func:`parse_covidx_line` repairs all of these: the filename is the field with an
image extension, the id is everything before it (spaces become ``_``), the label
and source follow. A missing source is inferred where the filename makes it
certain (RSNA's UUID names) and is ``unknown`` otherwise. That source (``cohen``,
``fig1``, ``actmed``, ``sirm``, ``rsna``, ``ricord``...) is each row's ``site``: the
finest the label file states; ``train_COVIDx9A.txt`` spells RSNA ``rnsa`` on 199
lines (all RSNA's UUID file names), and their site is ``rsna``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cxrlab.data.manifest import (
    REASON_BAD_ROW,
    REASON_LISTED_TWICE,
    REASON_NO_LABEL,
    Candidate,
    Reject,
    SourceScan,
)
from cxrlab.data.sources.labels import LabelError, harmonise
from cxrlab.errors import DatasetError
from cxrlab.utils.fs import atomic_write_text
from cxrlab.utils.outputs import FILE, check_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".bmp", ".tif", ".tiff", ".webp", ".gif")

#: COVIDx label vocabulary -> (harmonised label, covid), from the one vocabulary.
LABELS = {
    name: harmonise(name)
    for name in ("positive", "COVID-19", "COVID", "negative", "normal", "pneumonia")
}

#: Misspelt sources of the published label files -> the site they name.
SITE_SPELLINGS = {"rnsa": "rsna"}

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.(png|dcm)$")


@dataclass(frozen=True)
class CovidxLine:
    """One repaired label-file line."""

    patient_id: str
    filename: str
    label: str
    source: str
    repaired: str = ""  # what was repaired, empty if nothing

    def as_text(self) -> str:
        return f"{self.patient_id} {self.filename} {self.label} {self.source}"


def parse_covidx_line(line: str) -> CovidxLine:
    """Parse one COVIDx label line of any published version.

    Raises:
        DatasetError: if no field looks like an image filename or no label follows it.
    """
    fields = line.split()
    file_index = next(
        (i for i, f in enumerate(fields) if f.lower().endswith(IMAGE_SUFFIXES) and i > 0), None
    )
    if file_index is None or file_index + 1 >= len(fields):
        raise DatasetError(f"no 'id filename label [source]' fields in {line.strip()!r}")
    notes = []
    id_fields = fields[:file_index]
    patient_id = "_".join(id_fields)
    if len(id_fields) > 1:
        notes.append("id with spaces joined by _")
    filename = fields[file_index]
    label = fields[file_index + 1]
    rest = fields[file_index + 2 :]
    if rest:
        source = "_".join(rest)
    else:
        source = "rsna" if _UUID.match(filename.lower()) else "unknown"
        notes.append(f"missing source set to {source}")
    return CovidxLine(patient_id, filename, label, source, "; ".join(notes))


def read_covidx_file(
    path: str | Path,
) -> tuple[list[tuple[int, CovidxLine]], list[tuple[int, str, str]]]:
    """Parse a label file. Returns (line number, parsed) pairs and (line number, text, error) for bad lines."""
    parsed, bad = [], []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append((number, parse_covidx_line(line)))
        except DatasetError as error:
            bad.append((number, line, str(error)))
    return parsed, bad


def repair_covidx(
    in_path: str | Path, out_path: str | Path, *, force: bool = False
) -> dict[str, int]:
    """Write a repaired label file: every line with exactly 4 space-separated fields.

    Raises:
        DatasetError: if ``in_path`` is not a file or a line cannot be parsed at all
            (nothing is written then).
        OutputError: if ``out_path`` is the input, a folder, or a different existing file
            (the latter two unless ``force``).

    Returns:
        Counts: ``lines``, ``repaired`` and ``unchanged``.
    """
    if not Path(in_path).is_file():
        raise DatasetError(
            f"{in_path} not found: give a COVIDx label file such as train_COVIDx8B.txt"
        )
    check_output(out_path, kind=FILE, inputs=[in_path], force=True)
    parsed, bad = read_covidx_file(in_path)
    if bad:
        number, line, error = bad[0]
        raise DatasetError(f"{in_path}:{number}: {error}; {len(bad)} such lines in all")
    text = "".join(p.as_text() + "\n" for _, p in parsed)
    existing = Path(out_path)
    same = existing.is_file() and existing.read_text(encoding="utf-8", errors="replace") == text
    check_output(out_path, kind=FILE, force=force, same_settings=same)
    atomic_write_text(out_path, text)
    repaired = sum(1 for _, p in parsed if p.repaired)
    return {"lines": len(parsed), "repaired": repaired, "unchanged": len(parsed) - repaired}


def scan_covidx(
    path: str | Path, *, images: str | Path | None = None, source: str = "covidx"
) -> SourceScan:
    """Scan a COVIDx label file whose images are in ``images`` (default: beside the file).

    Each line's own source (cohen, sirm, rsna...) is recorded as ``covidx:<source>``.
    """
    label_file = Path(path)
    if label_file.is_dir():
        texts = sorted(p.name for p in label_file.glob("*.txt"))
        raise DatasetError(
            f"{label_file} is a folder; covidx reads one COVIDx label file"
            + (f": give one of {', '.join(texts[:5])}" if texts else " such as train_COVIDx8B.txt")
        )
    if not label_file.is_file():
        raise DatasetError(
            f"{label_file} not found: give a COVIDx label file such as train_COVIDx8B.txt"
        )
    image_dir = Path(images) if images else label_file.parent
    parsed, bad = read_covidx_file(label_file)
    candidates: list[Candidate] = []
    rejects = [Reject(source, str(n), "", "", REASON_BAD_ROW, f"{err}") for n, _, err in bad]
    seen: set[str] = set()
    for number, line in parsed:
        image_id = f"{source}:{line.filename}"
        file_path = image_dir / line.filename
        try:
            mapped = harmonise(line.label)
        except LabelError:
            mapped = None
        if mapped is None:
            rejects.append(
                Reject(
                    source,
                    str(number),
                    image_id,
                    str(file_path),
                    REASON_NO_LABEL,
                    f"label {line.label!r}",
                )
            )
            continue
        if image_id in seen:
            rejects.append(
                Reject(
                    source,
                    str(number),
                    image_id,
                    str(file_path),
                    REASON_LISTED_TWICE,
                    "an earlier line names the same file",
                    patient_id=f"{source}:{line.source}:{line.patient_id}",
                    same_as=image_id,
                )
            )
            continue
        seen.add(image_id)
        candidates.append(
            Candidate(
                id=image_id,
                path=file_path,
                label=mapped[0],
                covid=mapped[1],
                patient_id=f"{source}:{line.source}:{line.patient_id}",
                source=f"{source}:{line.source}",
                row=str(number),
                site=SITE_SPELLINGS.get(line.source, line.source),
                extra={"covidx_label": line.label, "covidx_file": label_file.name},
            )
        )
    n_inputs = len(parsed) + len(bad)
    return SourceScan(
        source, candidates, rejects, n_inputs, {"path": str(label_file), "images": str(image_dir)}
    )
