"""The report's title block (run information, unfinished or skipped cells) and footer
(how to reproduce the study)."""

from __future__ import annotations

import shlex
from html import escape
from pathlib import Path

import cxrlab
from cxrlab.study.report.html import MISSING, _duration, _note
from cxrlab.study.report.study import Study


def _synthetic_caveat_notes(caveats: object) -> list[str]:
    """Notes saying, in words, which classifier cells trained on synthetic images taken
    unverified or made from data preprocessed otherwise (study.json ``synthetic_caveats``)."""
    if not isinstance(caveats, dict) or not caveats:
        return []
    notes = []
    unverified = sorted(
        c for c, said in caveats.items() if any("unverified" in str(n) for n in said)
    )
    if unverified:
        notes.append(
            f"{len(unverified)} classifier cell(s) trained on synthetic images taken unverified "
            "(--synthetic-unverified): they carry no provenance, so whether their generator "
            "learned validation or test images is not known: " + ", ".join(unverified)
        )
    mismatch = {
        cell: [str(n).split(" differ in ", 1)[-1] for n in said if str(n).startswith("preprocessing mismatch")]
        for cell, said in caveats.items()
    }  # fmt: skip
    mismatch = {cell: differences for cell, differences in mismatch.items() if differences}
    if mismatch:
        differences = sorted({d for found in mismatch.values() for d in found})
        notes.append(
            f"{len(mismatch)} classifier cell(s) trained on synthetic images from data "
            f"preprocessed otherwise, allowed ({'; '.join(differences)}: the generator "
            "learned the nearest power-of-two size and its images were resized): "
            + ", ".join(sorted(mismatch))
        )
    return [_note(text) for text in notes]


def title_section(study: Study) -> str:
    info = study.info
    description = info.get("description") or study.spec.get("description") or ""
    cells = [c for c in info.get("cells", []) if isinstance(c, dict)]
    finished = sum(c.get("status") == "finished" for c in cells)
    pending = [str(c.get("id", "?")) for c in cells if c.get("status") != "finished"]
    planned = info.get("planned_cells")
    total = max(len(cells), planned if isinstance(planned, int) else 0)
    not_started = total - len(cells)
    meta = [
        ("updated", escape(str(info.get("updated", MISSING)))),
        ("time (all cells)", escape(_duration(info.get("wall_seconds")))),
        ("device", escape(str(info.get("device", MISSING)))),
        ("cells finished", f"{finished} / {total}" if total else MISSING),
    ]
    parts = [f"<header>\n<h1>{escape(study.name)}</h1>"]
    if description:
        parts.append(f"<p>{escape(str(description))}</p>")
    parts.append(
        '<table class="meta">'
        + "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in meta)
        + "</table>"
    )
    if pending or not_started > 0:
        shown = ", ".join(escape(p) for p in pending[:10])
        if len(pending) > 10:
            shown += f" and {len(pending) - 10} more"
        if not_started > 0:
            shown += f"{'; ' if shown else ''}{not_started} not started yet"
        parts.append(
            f'<div class="warning" role="alert"><strong>Unfinished study:</strong> '
            f"{total - finished} of {total} cells are not finished ({shown}); "
            "the numbers below cover the finished cells only.</div>"
        )
    skipped = info.get("skipped_cells") or {}
    if isinstance(skipped, dict) and skipped:
        reasons = sorted(set(map(str, skipped.values())))
        parts.append(
            _note(f"{len(skipped)} cells skipped ({'; '.join(reasons)}): " + ", ".join(skipped))
        )
    parts.extend(_synthetic_caveat_notes(info.get("synthetic_caveats")))
    if not info:
        parts.append(_note("study.json not found: no run information."))
    parts.extend(_note(n) for n in study.notes)
    parts.append("</header>")
    return "\n".join(parts)


def _reproduce_html(study: Study) -> str:
    """Commands that rerun and report the study, with absolute paths so they work from
    any folder."""
    out = study.root.resolve()
    recorded = Path(str(study.info.get("spec") or ""))
    note = ""
    if str(recorded) not in ("", ".") and recorded.is_absolute():
        spec, target = recorded, out  # the spec as run; the same folder resumes/skips
    else:
        # only the copy in the study folder is known, and a study may not be written
        # into the folder holding its spec: run it into a new folder
        spec, target = out / "spec.yaml", out.with_name(out.name + "-rerun")
        note = (
            " (the copy of the spec kept in the study folder; its relative paths are "
            "relative to that folder, so copy it beside its data if it has any)"
        )
    run = f"cxrlab study run {shlex.quote(str(spec))} --out {shlex.quote(str(target))}"
    report = f"cxrlab study report {shlex.quote(str(target))}"
    return f"<code>{escape(run)}</code>{escape(note)}, then <code>{escape(report)}</code>."


def footer_section(study: Study) -> str:
    version = getattr(cxrlab, "__version__", "unknown")
    return (
        f"<footer>\n<p>Reproduce (from any folder): {_reproduce_html(study)}</p>\n"
        f"<p>Written by cxrlab {escape(str(version))}.</p>\n"
        '<p id="image-count"></p>\n</footer>'
    )
