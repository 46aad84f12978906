"""The report's "Generator results" table, and the generator runs other sections read."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

import pandas as pd

from cxrlab.metrics.registry import VALUES, value_info
from cxrlab.study.findings import (
    CHECK_VALUES,
    NOT_MEASURED,
    best_generators,
    is_generator_metric,
    level_text,
    metric_label,
    rows_of,
    study_factors,
)
from cxrlab.study.numbers import number_text
from cxrlab.study.report.html import (
    _cell_name,
    _duration,
    _note,
    _number,
    _section,
    _short_text,
    _table,
)
from cxrlab.study.report.study import Study


def _generator_rows(study: Study) -> pd.DataFrame:
    return rows_of(study.results, "generator")


def has_generators(study: Study) -> bool:
    """Whether the study trains generators: its spec has a ``generators`` block, or it
    left generator rows or runs. A study without any shows no generator sections."""
    if study.spec.get("generators") or not _generator_rows(study).empty:
        return True
    return any((study.root / "gen").glob("*/*/metrics.csv"))


#: Metric columns of the generator table besides ``select_by`` and the checks' values;
#: the rest go into a folded table, so the table fits the page.
MAIN_TABLE_LIMIT = 5


def generator_section(study: Study) -> str:
    if not has_generators(study):
        return ""
    rows = _generator_rows(study)
    if rows.empty:
        return _section("generators", "Generator results", _note("no generator results yet."))
    checks = study.checks
    # every value a check that is on reads has a column, "not measured" where it is missing
    checked = [value for metric in checks.metrics() for value in CHECK_VALUES[metric]]
    metrics = _ordered_metrics(rows, study.select_by)
    metrics += [value for value in checked if value not in metrics]
    # the table shows what the choice reads: select_by and the checks' values; the other
    # metrics (FID, per-resolution values...) are folded below it
    main = [m for m in metrics if m == study.select_by or m in checked][:MAIN_TABLE_LIMIT]
    folded = [m for m in metrics if m not in main]
    factors = study_factors(study.results, study.axes)["generator"]
    extra = [c for c in ("model", "steps") if c in rows.columns and c not in factors]
    best = {b.cell for b in best_generators(study.results, study.select_by, checks).values()}
    flaws = checks.flaws(rows)
    has_selected = "selected" in rows.columns
    named = ["cell"] if "generator" not in factors else []
    # 'selected' right after the mark, where it is seen first
    chosen = ["selected"] if has_selected else []
    settings = [*named, *factors, *extra]
    headers = ["", *chosen, *settings, *[metric_label(m) for m in main], "time"]
    table_rows, classes, folded_rows = [], [], []
    for index, row in rows.iterrows():
        is_best = row["cell"] in best
        mark = "★ best" if is_best else flaws.loc[index]
        cells = [mark]
        if has_selected:
            cells.append("yes" if level_text(row["selected"]) == "1" else "no")
        names = [_cell_name(row["cell"]) for _ in named]
        names += [_short_text(level_text(row[c])) for c in [*factors, *extra]]
        cells += names
        cells += [_checked_number(row.get(m), m in checked) for m in main]
        cells.append(_duration(row.get("seconds")))
        table_rows.append(cells)
        classes.append("best" if is_best else "")
        folded_rows.append([_cell_name(row["cell"]), *[_number(row.get(m)) for m in folded]])
    start = 1 + len(chosen) + len(settings)
    info = value_info(study.select_by)
    direction = info.direction if info else "lower is better"
    marks = []
    if checks.collapse_ratio is not None:
        marks.append(
            f"'collapsed' marks generators whose images are more than "
            f"{number_text(checks.collapse_ratio)} times as alike as real ones (mean MS-SSIM)"
        )
    if checks.memorization_limit is not None:
        marks.append(
            "'memorizes' those with a memorization share (near-copies of training images) "
            f"above {number_text(checks.memorization_limit)}"
        )
    if marks:
        marks.append(
            f"'{NOT_MEASURED}' those lacking a value one of these checks reads (they could not "
            "be checked); none of them is ever chosen"
        )
    caption = (
        "Final metric values, measured against held-out real images of the class drawn (the "
        "validation split of each variant's own preprocessing, so values compare only within "
        f"a variant). ★ marks each variant's best generator, chosen on validation by "
        f"{metric_label(study.select_by)} ({direction})"
        + "".join(f"; {mark}" for mark in marks)
        + ". 'selected' is the runner's choice for the synthetic images; time is training time."
    )
    parts = [
        _table(
            headers,
            table_rows,
            numeric=set(range(start, start + len(main) + 1)),
            row_classes=classes,
            caption=caption,
        )
    ]
    if folded:
        parts.append(
            f"<details><summary>All {len(folded)} other generator metrics "
            f"({escape(', '.join(metric_label(m) for m in folded[:4]))}"
            f"{'...' if len(folded) > 4 else ''})</summary>"
            + _table(
                ["cell", *[metric_label(m) for m in folded]],
                folded_rows,
                numeric=set(range(1, len(folded) + 1)),
            )
            + "</details>"
        )
    return _section("generators", "Generator results", "\n".join(parts))


def _checked_number(value: object, checked: bool) -> str:
    """A generator metric value; one a generator check reads says it was not measured
    when it is missing, rather than nothing."""
    try:
        measured = math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        measured = False
    return NOT_MEASURED if checked and not measured else _number(value, 4)


def _ordered_metrics(frame: pd.DataFrame, first: str) -> list[str]:
    """Generator metric columns of ``frame``: ``first``, then the registry's order, then
    per-resolution values; spreads (``kid_std``) are left out."""
    present = [
        c
        for c in frame.columns
        if is_generator_metric(c)
        and not c.endswith("_std")
        and pd.to_numeric(frame[c], errors="coerce").notna().any()
    ]
    known = [m for m in (first, *VALUES) if m in present]
    return list(dict.fromkeys(known + sorted(present)))


def _generator_runs(study: Study) -> dict[str, list[tuple[str, Path]]]:
    """Generator run folders by variant: ``{variant: [(name, folder), ...]}``."""
    runs: dict[str, list[tuple[str, Path]]] = {}
    seen: set[Path] = set()
    rows = _generator_rows(study)
    for _, row in rows.iterrows():
        folder = study.path(level_text(row.get("folder")) or str(row["cell"]))
        if folder is None or folder in seen or not folder.is_dir():
            continue
        seen.add(folder)
        variant = level_text(row.get("variant")) or folder.parent.name
        # the run folder's name is unique within a variant (``gan-aug_mild``)
        runs.setdefault(variant, []).append((folder.name, folder))
    for path in sorted((study.root / "gen").glob("*/*/metrics.csv")):
        folder = path.parent.resolve()
        if folder not in seen:
            seen.add(folder)
            runs.setdefault(folder.parent.name, []).append((folder.name, folder))
    return runs
