"""Turn source scans into a dataset folder: decode, hash, deduplicate, account for every input."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrlab import __version__
from cxrlab.data.duplicates import (
    DEFAULT_NEAR_DISTANCE,
    HASH_SIDE,
    duplicate_groups,
    near_distance_setting,
    phash_hex,
)
from cxrlab.data.io import DEFAULT_MAX_PIXELS, read_image
from cxrlab.data.manifest import (
    DATASET_JSON,
    LINKED_PATIENTS,
    MANIFEST_COLUMNS,
    REASON_DUPLICATE,
    REJECT_COLUMNS,
    REJECTS,
    SITE,
    UNKNOWN_SITE,
    Candidate,
    Reject,
    SourceScan,
    read_dataset_info,
    read_manifest,
    write_manifest,
    write_table,
)
from cxrlab.data.sources.views import view_counts
from cxrlab.errors import DatasetError, ImageReadError
from cxrlab.utils.fs import atomic_dir, atomic_write_text, sha256_file
from cxrlab.utils.outputs import DATASET, OutputError, check_output
from cxrlab.utils.parallel import parallel_map

#: Below this share of accepted inputs an import warns loudly.
LOW_ACCEPTANCE = 0.10

#: The import summary names this many sites (the largest first); dataset.json has all.
SITES_SHOWN = 8

#: What to check when most inputs share one reject reason.
REASON_HINTS = {
    "missing": "the image files are not where the source says: check PATH, or --images "
    "for covidx (the folder holding the label file's images)",
    "view not selected": "check --views (e.g. --views 'PA,AP,AP Supine,unknown' keeps "
    "images whose view the metadata leaves blank)",
    "no label": "the findings or class names are not in the labels vocabulary (README: labels)",
    "not an X-ray": "the source holds mostly CT or other modalities",
    "unreadable": "the files are not images cxrlab can decode",
    "exact duplicate": "most inputs are byte-identical copies (--dedup)",
    "file listed twice": "the label file lists the same files repeatedly",
    "malformed row": "the label file is not in the source's format: check FORMAT",
}


@dataclass
class IngestReport:
    """Counts of one import or build: ``n_inputs == n_accepted + n_rejected`` always."""

    out: Path
    n_inputs: int
    n_accepted: int
    n_rejected: int
    reasons: dict[str, int]
    n_duplicate_groups: int
    warnings: list[str] = field(default_factory=list)
    views: dict[str, int] = field(default_factory=dict)
    sites: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"{self.out}: {self.n_inputs} inputs = {self.n_accepted} accepted "
            f"+ {self.n_rejected} rejected"
        ]
        if self.views:
            lines.append(
                "  accepted views: " + ", ".join(f"{k} {v}" for k, v in self.views.items())
            )
        if self.sites:
            known = {k: v for k, v in self.sites.items() if k != UNKNOWN_SITE}
            shown = ", ".join(f"{k} {v}" for k, v in list(known.items())[:SITES_SHOWN])
            more = f", ... ({len(known) - SITES_SHOWN} more)" if len(known) > SITES_SHOWN else ""
            lines.append(
                f"  accepted sites: {len(known)}"
                + (f" ({shown}{more})" if known else "")
                + f"; site unknown: {self.sites.get(UNKNOWN_SITE, 0)} images"
            )
        for reason, count in sorted(self.reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  rejected, {reason}: {count}")
        if self.n_duplicate_groups:
            lines.append(f"  duplicate groups (exact or near): {self.n_duplicate_groups}")
        return "\n".join(lines)


def _probe(job: tuple[str, int]) -> dict:
    """Worker: read one image and return its facts, or the reason it cannot be read."""
    path, max_pixels = job
    try:
        # the pixels serve the hash only: decode no larger than it needs (every file is
        # still decoded whole, so a truncated or corrupt one is still found)
        image = read_image(path, max_pixels=max_pixels, draft_px=HASH_SIDE)
    except ImageReadError as error:
        return {"ok": False, "reason": error.reason, "detail": error.detail}
    return {
        "ok": True,
        "width": image.width,
        "height": image.height,
        "mode": image.mode,
        "bit_depth": image.bit_depth,
        "format": image.format,
        "sha256": sha256_file(path),
        "phash": phash_hex(image.pixels),
    }


def ingest(
    scans: list[SourceScan],
    out: str | Path,
    *,
    dedup: bool = False,
    near_distance: int | None = DEFAULT_NEAR_DISTANCE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
    inputs: list[str | Path] | None = None,
) -> IngestReport:
    """Decode every candidate of every scan and write the dataset folder ``out``.

    Args:
        scans: what each source importer found.
        out: the dataset folder to write (``manifest.csv``, ``rejects.csv``, ``dataset.json``).
        dedup: reject later exact (byte-identical) duplicates of an accepted image.
        near_distance: perceptual-hash distance for near duplicates (None or -1: exact only).
        max_pixels: the decompression-bomb limit passed to the image reader.
        workers: decoding threads (default: all cores).
        progress: show a progress bar.
        force: replace an ``out`` of another kind, made with other settings, or split.
        inputs: files or folders ``out`` may not be, lie inside or hold (besides each
            scan's ``path`` and ``images``).

    Returns:
        The counts; ``rows in = accepted + rejected`` is checked before anything is written.
        Its ``warnings`` say when a source's options look wrong or almost nothing was accepted.

    Raises:
        OutputError: before any work, when ``out`` would destroy an input or something
            the user did not ask to replace (see :mod:`cxrlab.utils.outputs`).
    """
    out = Path(out)
    try:
        near_distance = near_distance_setting(near_distance)
    except ValueError as error:
        raise DatasetError(str(error)) from None
    options = {"dedup": dedup, "near_distance": near_distance, "max_pixels": max_pixels}
    sources = [{"name": s.name, "inputs": s.n_inputs, **s.options} for s in scans]
    _check_out(out, scans, sources, options, force, inputs or [])
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    for scan in scans:
        scan.check()
        candidates.extend(scan.candidates)
        rejects.extend(scan.rejects)
    n_inputs = sum(scan.n_inputs for scan in scans)

    seen_ids: set[str] = set()
    for candidate in candidates:
        if candidate.id in seen_ids:
            raise DatasetError(
                f"two inputs have the id {candidate.id!r}; give each source a distinct name"
            )
        seen_ids.add(candidate.id)

    facts = parallel_map(
        _probe,
        [(str(c.path), max_pixels) for c in candidates],
        workers=workers,
        desc="decoding",
        progress=progress,
    )
    rows: list[dict] = []
    accepted_by_sha: dict[str, str] = {}
    for candidate, fact in zip(candidates, facts, strict=True):
        if not fact["ok"]:
            rejects.append(
                Reject(
                    candidate.source,
                    candidate.row,
                    candidate.id,
                    str(candidate.path),
                    fact["reason"],
                    fact["detail"],
                )
            )
            continue
        if dedup and fact["sha256"] in accepted_by_sha:
            rejects.append(
                Reject(
                    candidate.source,
                    candidate.row,
                    candidate.id,
                    str(candidate.path),
                    REASON_DUPLICATE,
                    f"same bytes as accepted image {accepted_by_sha[fact['sha256']]}",
                    candidate.patient_id,
                    accepted_by_sha[fact["sha256"]],
                )
            )
            continue
        accepted_by_sha.setdefault(fact["sha256"], candidate.id)
        row = {
            "id": candidate.id,
            "path": str(Path(candidate.path).resolve()),
            "label": candidate.label,
            "covid": int(candidate.covid),
            "patient_id": candidate.patient_id,
            "source": candidate.source,
            "site": candidate.site or UNKNOWN_SITE,
            "view": candidate.view,
            "width": fact["width"],
            "height": fact["height"],
            "mode": fact["mode"],
            "bit_depth": fact["bit_depth"],
            "sha256": fact["sha256"],
            "phash": fact["phash"],
            "duplicate_group": "",
            "split": "",
            LINKED_PATIENTS: "",
            "format": fact["format"],
        }
        row.update(candidate.extra)
        rows.append(row)

    if n_inputs != len(rows) + len(rejects):
        raise DatasetError(
            f"accounting error: {n_inputs} inputs but {len(rows)} accepted + "
            f"{len(rejects)} rejected (a bug: please report it)"
        )
    _link_rejected_patients(rows, rejects)
    manifest = pd.DataFrame(rows, columns=_columns(rows))
    if len(manifest):
        manifest["duplicate_group"] = duplicate_groups(
            manifest["sha256"].tolist(), manifest["phash"].tolist(), near_distance
        )
    rejected = pd.DataFrame([r.as_dict() for r in rejects], columns=REJECT_COLUMNS)

    reasons = rejected["reason"].value_counts().to_dict() if len(rejected) else {}
    groups = manifest["duplicate_group"] if len(manifest) else pd.Series([], dtype=str)
    n_groups = int(groups[groups != ""].nunique())
    warnings = [w for scan in scans for w in scan.warnings]
    warnings += _acceptance_warnings(n_inputs, len(manifest), reasons)
    views = view_counts(manifest["view"]) if len(manifest) else {}
    sites = _site_counts(manifest)
    warnings += _straddling_patients(manifest)
    info = {
        "cxrlab_version": __version__,
        "sources": sources,
        "options": options,
        "counts": {
            "inputs": n_inputs,
            "accepted": len(manifest),
            "rejected": len(rejected),
            "rejected_by_reason": reasons,
            "accepted_by_view": views,
            "accepted_by_site": sites,
        },
        "warnings": warnings,
    }
    # one rename: a replaced folder (with --force) keeps nothing of what was there
    with atomic_dir(out) as staging:
        write_manifest(staging, manifest)
        write_table(staging / REJECTS, rejected)
        atomic_write_text(staging / DATASET_JSON, json.dumps(info, indent=2, default=str) + "\n")
    return IngestReport(
        out, n_inputs, len(manifest), len(rejected), reasons, n_groups, warnings, views, sites
    )


def _check_out(
    out: Path,
    scans: list[SourceScan],
    sources: list[dict],
    options: dict,
    force: bool,
    inputs: list[str | Path],
) -> None:
    """Refuse an ``out`` that is an input, another kind, or a dataset made otherwise or split."""
    scanned = [s.options.get(key) for s in scans for key in ("path", "images")]
    existing = check_output(out, kind=DATASET, inputs=[*inputs, *scanned], force=True)
    if existing != DATASET or force:
        check_output(out, kind=DATASET, force=force)  # another kind: refused unless --force
        return
    recorded = read_dataset_info(out)
    wanted = json.loads(json.dumps({"sources": sources, "options": options}, default=str))
    same = {k: recorded.get(k) for k in wanted} == wanted
    check_output(out, kind=DATASET, same_settings=same)
    try:
        split = read_manifest(out)["split"]
    except DatasetError:
        return
    if (split != "").any():
        raise OutputError(
            f"--out {out} holds a dataset that is split ({', '.join(sorted(set(split) - {''}))}); "
            "importing again would erase its split: choose another --out, or pass --force"
        )


def _link_rejected_patients(rows: list[dict], rejects: list[Reject]) -> None:
    """Record, on each accepted row, the patients of rejected rows that named its image.

    A ``file listed twice`` or ``exact duplicate`` reject drops a row but not the fact
    that its patient had this image; without the link one image's two patients could
    land in different splits.
    """
    by_id = {row["id"]: row for row in rows}
    for reject in rejects:
        row = by_id.get(reject.same_as)
        if row is None or not reject.patient_id or reject.patient_id == row["patient_id"]:
            continue
        linked = [p for p in row[LINKED_PATIENTS].split(";") if p]
        if reject.patient_id not in linked:
            row[LINKED_PATIENTS] = ";".join([*linked, reject.patient_id])


def _site_counts(manifest: pd.DataFrame) -> dict[str, int]:
    """Accepted images per site, the largest first (ties by name)."""
    if not len(manifest):
        return {}
    counts = manifest[SITE].value_counts()
    return {str(k): int(counts[k]) for k in sorted(counts.index, key=lambda k: (-counts[k], k))}


def _straddling_patients(manifest: pd.DataFrame) -> list[str]:
    """A warning when a patient's images name more than one site.

    The importer never picks one: the metadata disagrees with itself, and a split
    keeps the patient whole, so a held-out site takes the patient's other images along.
    """
    if not len(manifest):
        return []
    known = manifest[manifest[SITE] != UNKNOWN_SITE]
    per_patient = known.groupby("patient_id")[SITE].nunique()
    straddling = per_patient[per_patient > 1]
    if straddling.empty:
        return []
    example = straddling.index[0]
    names = sorted(set(known.loc[known["patient_id"] == example, SITE]))
    return [
        f"patients with images of more than one site: {len(straddling)} (e.g. {example}: "
        f"{', '.join(names)}); the metadata disagrees with itself, and a split keeps "
        "each patient whole, so a held-out site takes such a patient's other images along"
    ]


def _acceptance_warnings(n_inputs: int, n_accepted: int, reasons: dict[str, int]) -> list[str]:
    """A loud warning when nothing, or almost nothing, was accepted."""
    if n_inputs == 0 or n_accepted >= LOW_ACCEPTANCE * n_inputs:
        return []
    share = "none" if n_accepted == 0 else f"only {n_accepted}"
    text = f"{share} of {n_inputs} inputs accepted"
    if reasons:
        reason, count = max(reasons.items(), key=lambda kv: kv[1])
        text += f"; most were rejected as {reason!r} ({count})"
        if reason in REASON_HINTS:
            text += f": {REASON_HINTS[reason]}"
    return [text]


def _columns(rows: list[dict]) -> list[str]:
    columns = list(MANIFEST_COLUMNS)
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns
