"""The report's generated samples: each generator's last sample grid beside its nearest
training images (the memorization check made visible), labelled with the generator,
its check results and its memorization share."""

from __future__ import annotations

import math
import re
from html import escape
from pathlib import Path

import pandas as pd

from cxrlab.study.findings import best_generators, level_text
from cxrlab.study.numbers import number_text
from cxrlab.study.report.generators import _generator_rows, _generator_runs, has_generators
from cxrlab.study.report.html import _figure, _note, _section
from cxrlab.study.report.study import Study

SAMPLE_PATTERN = re.compile(r"step_(\d+)\.png$")
#: What the generator trainer writes at each metrics step when memorization is measured.
MEMORIZATION_PATTERN = re.compile(r"memorization_step_(\d+)\.png$")


def _last(paths, pattern: re.Pattern) -> Path | None:
    found = [(int(m.group(1)), path) for path in paths if (m := pattern.search(path.name))]
    return max(found)[1] if found else None


def last_sample(folder: Path) -> Path | None:
    """The ``samples/step_NNNNNN.png`` of the highest step in a generator run, or None."""
    return _last((folder / "samples").glob("step_*.png"), SAMPLE_PATTERN)


def last_memorization(folder: Path) -> Path | None:
    """The ``metrics/memorization_step_NNNNNN.png`` of the highest step (the generated
    images closest to a training image, each beside it), or None."""
    return _last((folder / "metrics").glob("memorization_step_*.png"), MEMORIZATION_PATTERN)


def _step(path: Path, pattern: re.Pattern) -> int:
    return int(pattern.search(path.name).group(1))


def _label(study: Study, row: pd.Series | None, best: set[str]) -> str:
    """``collapsed; memorization share 0.040 (limit 0.100); MS-SSIM ×1.9 the real
    images'``: the generator's check results and the values they read."""
    if row is None:
        return "no results row (not finished?)"
    checks = study.checks
    flaw = checks.flaw(row)
    words = [flaw or "passes the checks"]
    if str(row["cell"]) in best:
        words.append("★ chosen on validation")
    share = pd.to_numeric(row.get("memorization_share"), errors="coerce")
    if pd.notna(share):
        limit = checks.memorization_limit
        words.append(
            f"memorization share {number_text(share)}"
            + (f" (limit {number_text(limit)})" if limit is not None else "")
        )
    fake = pd.to_numeric(row.get("ms_ssim_fake"), errors="coerce")
    real = pd.to_numeric(row.get("ms_ssim_real"), errors="coerce")
    if pd.notna(fake) and pd.notna(real) and real > 0 and math.isfinite(fake / real):
        words.append(f"MS-SSIM ×{number_text(fake / real)} the real images'")
    return "; ".join(words)


def samples_section(study: Study) -> str:
    if not has_generators(study):
        return ""
    rows = _generator_rows(study)
    by_folder: dict[Path, pd.Series] = {}
    for _, row in rows.iterrows():
        folder = study.path(level_text(row.get("folder")) or str(row["cell"]))
        if folder is not None:
            by_folder[folder] = row
    best = {b.cell for b in best_generators(study.results, study.select_by, study.checks).values()}
    parts = []
    for _variant, named in _generator_runs(study).items():
        for _name, folder in named:
            sample, nearest = last_sample(folder), last_memorization(folder)
            if sample is None and nearest is None:
                continue
            name = str(folder.relative_to(study.root.resolve()))
            label = _label(study, by_folder.get(folder), best)
            figures = []
            if sample is not None:
                figures.append(
                    _figure(
                        study,
                        sample.relative_to(study.root.resolve()),
                        f"generated samples, step {_step(sample, SAMPLE_PATTERN)}",
                    )
                )
            if nearest is not None:
                figures.append(
                    _figure(
                        study,
                        nearest.relative_to(study.root.resolve()),
                        "nearest training images (each pair: generated, then its nearest "
                        f"training image), step {_step(nearest, MEMORIZATION_PATTERN)}",
                    )
                )
            else:
                figures.append(
                    _note("no nearest-training-image pairs (memorization not measured).")
                )
            parts.append(
                f'<div class="generator-samples"><h3>{escape(name)}</h3>'
                f"<p>{escape(label)}</p>"
                f'<div class="pairs">{"".join(figures)}</div></div>'
            )
    body = "\n".join(parts) if parts else _note("no generator samples found.")
    intro = (
        "<p>Each generator's last samples beside its generated images that came closest to "
        "a training image. A near-copy (closer than nearly all real held-out images come) "
        "is what the memorization check counts; a page of near-identical samples is what "
        "'collapsed' means.</p>"
    )
    return _section("samples", "Generated samples and their nearest training images", intro + body)
