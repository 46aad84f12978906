"""The report's "Pros and cons" section: the findings as sentences, grouped by verdict."""

from __future__ import annotations

from html import escape

from cxrlab.study.findings import (
    GROUPS,
    MIN_PAIRS,
    TIME_RATIO_CON,
    best_generators,
    grouped_statements,
    metric_label,
)
from cxrlab.study.numbers import number_text
from cxrlab.study.report.html import _note, _section
from cxrlab.study.report.study import Study


def findings_section(study: Study) -> str:
    findings = study.findings
    if not findings:
        body = _note(
            "no factor has two or more levels with matching pairs of cells, so no effect "
            "can be measured."
        )
        return _section("findings", "Pros and cons", body)
    parts = [
        "<p>Each level is compared with the factor's reference level on pairs of cells "
        "that differ in that factor only (same other settings, same seed); each amount of "
        "synthetic images is also compared with its control arm (as many real positives "
        "oversampled), which tells the images' effect from the class prevalence's. Differences "
        "are level minus reference with a 95% t-interval over the pairs (training "
        "variation: seeds and the other settings) and, for classifier metrics, a 95% "
        "interval from one patient bootstrap of the shared test images applied to every "
        "pair (the test set's sampling variation); a pro or con needs both intervals to "
        "exclude zero, and, with the many comparisons of one report, its p-value (the larger "
        "of the two) must stay below 0.05 after Holm's correction across all of them. With "
        f"fewer than {MIN_PAIRS} pairs there is no interval ('too few pairs') and no verdict. "
        "Time "
        f"is the geometric mean ratio of training seconds: above ×{TIME_RATIO_CON:.2f}, with its "
        f"interval wholly above ×1, it counts as a con, below ×{1 / TIME_RATIO_CON:.2f} (interval wholly below ×1) as a pro. Generator effects use "
        f"{escape(metric_label(study.select_by))} and are compared only within a "
        "preprocessing variant (each variant's generators are measured against its own "
        "preprocessed images).</p>"
    ]
    classes = {"Pros": "pros", "Cons": "cons", "No clear effect": "unclear"}
    for (table, factor), groups in grouped_statements(findings).items():
        parts.append(f"<h3>{escape(factor)} ({escape(table)}s)</h3>")
        for title in GROUPS.values():
            items = groups[title]
            if items:
                parts.append(
                    f'<h4 class="{classes[title]}">{escape(title)}</h4><ul>'
                    + "".join(f"<li>{escape(item)}</li>" for item in items)
                    + "</ul>"
                )
    best = best_generators(study.results, study.select_by, study.checks)
    if best:
        parts.append(
            "<p>Best generator per variant, chosen on validation images by "
            f"{escape(metric_label(study.select_by))}: "
            + "; ".join(
                f"{escape(v)}: {escape(b.cell)} ({number_text(b.value)})" for v, b in best.items()
            )
            + ".</p>"
        )
    return _section("findings", "Pros and cons", "\n".join(parts))
