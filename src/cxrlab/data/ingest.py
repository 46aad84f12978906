"""Turn source scans into a dataset folder: decode, hash, deduplicate, account for every input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrlab import __version__
from cxrlab.data.duplicates import DEFAULT_NEAR_DISTANCE, duplicate_groups, phash_hex
from cxrlab.data.io import DEFAULT_MAX_PIXELS, read_image
from cxrlab.data.manifest import (
    DATASET_JSON,
    MANIFEST_COLUMNS,
    REASON_DUPLICATE,
    REJECT_COLUMNS,
    REJECTS,
    Candidate,
    Reject,
    SourceScan,
    write_manifest,
    write_table,
)
from cxrlab.errors import DatasetError, ImageReadError
from cxrlab.utils.fs import atomic_write_text, sha256_file
from cxrlab.utils.parallel import parallel_map


@dataclass
class IngestReport:
    """Counts of one import or build: ``n_inputs == n_accepted + n_rejected`` always."""

    out: Path
    n_inputs: int
    n_accepted: int
    n_rejected: int
    reasons: dict[str, int]
    n_duplicate_groups: int

    def summary(self) -> str:
        lines = [
            f"{self.out}: {self.n_inputs} inputs = {self.n_accepted} accepted "
            f"+ {self.n_rejected} rejected"
        ]
        for reason, count in sorted(self.reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  rejected, {reason}: {count}")
        if self.n_duplicate_groups:
            lines.append(f"  duplicate groups (exact or near): {self.n_duplicate_groups}")
        return "\n".join(lines)


def _probe(job: tuple[str, int]) -> dict:
    """Worker: read one image and return its facts, or the reason it cannot be read."""
    path, max_pixels = job
    try:
        image = read_image(path, max_pixels=max_pixels)
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
) -> IngestReport:
    """Decode every candidate of every scan and write the dataset folder ``out``.

    Args:
        scans: what each source importer found.
        out: the dataset folder to write (``manifest.csv``, ``rejects.csv``, ``dataset.json``).
        dedup: reject later exact (byte-identical) duplicates of an accepted image.
        near_distance: perceptual-hash distance for near duplicates (None: exact only).
        max_pixels: the decompression-bomb limit passed to the image reader.
        workers: decoding processes (default: all cores).
        progress: show a progress bar.

    Returns:
        The counts; ``rows in = accepted + rejected`` is checked before anything is written.
    """
    out = Path(out)
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
            "view": candidate.view,
            "width": fact["width"],
            "height": fact["height"],
            "mode": fact["mode"],
            "bit_depth": fact["bit_depth"],
            "sha256": fact["sha256"],
            "phash": fact["phash"],
            "duplicate_group": "",
            "split": "",
            "format": fact["format"],
        }
        row.update(candidate.extra)
        rows.append(row)

    if n_inputs != len(rows) + len(rejects):
        raise DatasetError(
            f"accounting error: {n_inputs} inputs but {len(rows)} accepted + "
            f"{len(rejects)} rejected (a bug: please report it)"
        )
    manifest = pd.DataFrame(rows, columns=_columns(rows))
    if len(manifest):
        manifest["duplicate_group"] = duplicate_groups(
            manifest["sha256"].tolist(), manifest["phash"].tolist(), near_distance
        )
    rejected = pd.DataFrame([r.as_dict() for r in rejects], columns=REJECT_COLUMNS)

    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)
    write_table(out / REJECTS, rejected)
    reasons = rejected["reason"].value_counts().to_dict() if len(rejected) else {}
    groups = manifest["duplicate_group"] if len(manifest) else pd.Series([], dtype=str)
    n_groups = int(groups[groups != ""].nunique())
    info = {
        "cxrlab_version": __version__,
        "sources": [{"name": s.name, "inputs": s.n_inputs, **s.options} for s in scans],
        "options": {"dedup": dedup, "near_distance": near_distance, "max_pixels": max_pixels},
        "counts": {
            "inputs": n_inputs,
            "accepted": len(manifest),
            "rejected": len(rejected),
            "rejected_by_reason": reasons,
        },
    }
    atomic_write_text(out / DATASET_JSON, json.dumps(info, indent=2, default=str) + "\n")
    return IngestReport(out, n_inputs, len(manifest), len(rejected), reasons, n_groups)


def _columns(rows: list[dict]) -> list[str]:
    columns = list(MANIFEST_COLUMNS)
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns
