"""Folder-per-class datasets, including the COVID-19 Radiography Database layout.

``ROOT/<class>/**/<image>``: each immediate sub-folder of ROOT is a class. Files
anywhere below a class folder are inputs, except those in folders named ``masks``
(the Radiography Database keeps lung masks beside ``images/``) and hidden files.
Class names map through the one vocabulary (:mod:`cxrlab.data.sources.labels`), so the
common public layouts import right: COVID-19 Radiography Database (``COVID``,
``Normal``, ``Lung_Opacity``, ``Viral Pneumonia``), COVID-QU-Ex (``COVID-19``,
``Non-COVID``, ``Normal``), COVIDx binary (``positive``, ``negative``). A class folder
whose name is ambiguous or states no class is an error naming it, never a guess.
Patients are unknown in such sets: each image is its own patient, unless
``--patient-regex`` extracts an id from the file name.

Sites are unknown too, unless ``--site-level N`` names the folder level that holds
them (``ROOT/<class>/<site>/...`` is level 1: the N-th folder below the class folder)
or ``--site-regex``'s first group, searched in the path below ROOT
(``COVID/hospital_a/x.png``), names them. A file without that level, or whose path
the regex does not match, has site ``unknown`` (counted, with a warning); a regex
that matches no path is an error.

Lung masks: an image in ``<class>/images/`` whose namesake exists in
``<class>/masks/`` (the Radiography Database layout) gets that file in the
``mask_path`` column (empty otherwise). The database's masks are themselves
model-assisted: treat them as pseudo-labels.
"""

from __future__ import annotations

import re
from pathlib import Path

from cxrlab.data.manifest import UNKNOWN_SITE, Candidate, SourceScan
from cxrlab.data.sources.labels import class_label
from cxrlab.data.sources.sites import grouped_pattern, site_pattern
from cxrlab.errors import DatasetError

SKIPPED_FOLDERS = {"masks", "mask", "__macosx"}
MASK_FOLDERS = ("masks", "mask")


def lung_mask_path(file_path: Path) -> str:
    """The mask beside an image in an ``images/`` folder (``../masks/<name>``, any case,
    the same name or the same stem as PNG), or "" when there is none."""
    if file_path.parent.name.lower() != "images":
        return ""
    for folder in MASK_FOLDERS:
        for name in (file_path.name, f"{file_path.stem}.png"):
            for candidate in (
                file_path.parent.parent / folder / name,
                file_path.parent.parent / folder.capitalize() / name,
            ):
                if candidate.is_file():
                    return str(candidate.resolve())
    return ""


def scan_folders(
    path: str | Path,
    *,
    source: str = "folders",
    patient_regex: str | None = None,
    site_level: int | None = None,
    site_regex: str | None = None,
) -> SourceScan:
    """Scan ``ROOT/<class>/...``.

    Args:
        path: the root folder.
        source: name recorded in the manifest.
        patient_regex: a regular expression whose first group, searched in the file
            name, is the patient id (default: one patient per image).
        site_level: the folder level below each class folder that names the site
            (1: ``<class>/<site>/...``).
        site_regex: a regular expression whose first group, searched in the path
            below ``path`` (``/``-separated), is the site. At most one of the two;
            neither: every site is ``unknown``.

    Raises:
        DatasetError: for a missing root or class folders, a bad regex, a
            ``site_level`` below 1, both site options, or a regex matching nothing.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder: folders expects ROOT/<class>/<images>")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DatasetError(
            f"{root} has no class sub-folders (expected e.g. {root}/COVID, {root}/Normal)"
        )
    pattern = _patient_pattern(patient_regex) if patient_regex else None
    if site_level is not None and site_regex:
        raise DatasetError("give --site-level or --site-regex, not both")
    if site_level is not None and int(site_level) < 1:
        raise DatasetError(
            f"--site-level {site_level}: 1 is the first folder below the class folder "
            "(ROOT/<class>/<site>/...); give 1 or more"
        )
    sites = site_pattern(site_regex) if site_regex else None
    labels = {d.name: class_label(d.name, f"class folder {d}") for d in class_dirs}
    candidates: list[Candidate] = []
    n_matched = 0
    for class_dir in class_dirs:
        label, covid = labels[class_dir.name]
        files = sorted(
            f
            for f in class_dir.rglob("*")
            if f.is_file()
            and not f.name.startswith(".")
            and not SKIPPED_FOLDERS & {p.lower() for p in f.relative_to(class_dir).parts[:-1]}
        )
        for file_path in files:
            relative = file_path.relative_to(root).as_posix()
            patient = relative
            if pattern and (match := pattern.search(file_path.name)) and match.group(1):
                patient = match.group(1)
                n_matched += 1
            site = UNKNOWN_SITE
            folders_below_class = file_path.relative_to(class_dir).parts[:-1]
            if site_level is not None and len(folders_below_class) >= int(site_level):
                site = folders_below_class[int(site_level) - 1]
            elif sites and (match := sites.search(relative)) and match.group(1):
                site = match.group(1)
            candidates.append(
                Candidate(
                    id=f"{source}:{relative}",
                    path=file_path,
                    label=label,
                    covid=covid,
                    patient_id=f"{source}:{patient}",
                    source=source,
                    row=relative,
                    site=site,
                    extra={
                        "class_folder": class_dir.name,
                        "mask_path": lung_mask_path(file_path),
                    },
                )
            )
    warnings = []
    if pattern and candidates and n_matched < len(candidates):
        example = candidates[0].path.name
        if n_matched == 0:
            raise DatasetError(
                f"--patient-regex {patient_regex!r} matched none of the {len(candidates)} file "
                f"names (e.g. {example!r}); fix it, or leave it out for one patient per file"
            )
        warnings.append(
            f"--patient-regex {patient_regex!r} matched {n_matched} of {len(candidates)} file "
            f"names; the other {len(candidates) - n_matched} are one patient per file"
        )
    if pattern is None and len(candidates) > 1:
        warnings.append(
            f"no --patient-regex: each of the {len(candidates)} images is its own patient, so "
            "a patient's other images can land in another split (leakage) if the set holds "
            "several per patient; give --patient-regex with a group for the patient id in the "
            "file names (e.g. '^(P\\d+)_')"
        )
    warnings += _site_warnings(candidates, site_level, site_regex)
    options = {
        "path": str(root),
        "patient_regex": patient_regex,
        "site_level": site_level,
        "site_regex": site_regex,
    }
    return SourceScan(source, candidates, [], len(candidates), options, warnings)


def _site_warnings(
    candidates: list[Candidate], site_level: int | None, site_regex: str | None
) -> list[str]:
    """What the site options left unknown: an error when nothing, a warning when some."""
    if (site_level is None and not site_regex) or not candidates:
        return []
    unknown = [c for c in candidates if c.site == UNKNOWN_SITE]
    option = (
        f"--site-level {site_level}" if site_level is not None else f"--site-regex {site_regex!r}"
    )
    if len(unknown) == len(candidates):
        raise DatasetError(
            f"{option} found a site for none of the {len(candidates)} files (e.g. "
            f"{unknown[0].row!r}); fix it, or leave it out (every site unknown)"
        )
    if not unknown:
        return []
    return [
        f"{option} found no site for {len(unknown)} of {len(candidates)} files (e.g. "
        f"{unknown[0].row!r}): their site is 'unknown'"
    ]


def _patient_pattern(patient_regex: str) -> re.Pattern:
    return grouped_pattern(patient_regex, "--patient-regex", "patient id", r"p(\d+)_")
