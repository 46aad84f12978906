"""The report's opening: a summary in plain words, and how to read the report.

The summary says what was compared, what the intervals say (a "no clear effect" is a
finding too), and which classifier cell was chosen and how (on validation, never on
the test split). Every sentence is made from the study's numbers.
"""

from __future__ import annotations

import math
from html import escape

from cxrlab.study.findings import (
    CON,
    MIN_PAIRS,
    PRO,
    SELECTION_METRIC,
    UNCLEAR,
    Finding,
    best_classifier,
    best_generators,
    levels_in_order,
    matching_baseline,
    metric_label,
    rows_of,
    study_factors,
    subject,
    summarise_classifiers,
)
from cxrlab.study.numbers import number_text
from cxrlab.study.report.generators import has_generators
from cxrlab.study.report.study import Study

#: Clear changes named in the summary; the rest are in "Pros and cons".
SHOWN_CLEAR = 6


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _compared(study: Study) -> list[str]:
    """``equalize (none, clahe)`` for each classifier factor with two or more levels."""
    rows = rows_of(study.results, "classifier")
    factors = study_factors(study.results, study.axes)["classifier"]
    compared = []
    for factor in factors:
        levels = levels_in_order(rows, factor)
        if len(levels) >= 2:
            compared.append(f"{factor} ({', '.join(levels)})")
    return compared


def _verdict_counts(findings: list[Finding]) -> tuple[list[str], list[str], int]:
    """Comparisons with a clear gain, with a clear loss (one line each: the first changed
    metric with its value and interval, then the other metrics that moved the same way;
    time left out), and the number of comparisons with no clear effect on any metric."""
    gains, losses, unclear = [], [], 0
    for finding in findings:
        measured = [c for c in finding.changes if c.kind == "difference"]
        if measured and all(c.verdict == UNCLEAR for c in measured):
            unclear += 1
        for verdict, lines in ((PRO, gains), (CON, losses)):
            moved = [c for c in measured if c.verdict == verdict]
            if not moved:
                continue
            first = moved[0]
            interval = (
                ""
                if first.low is None
                else f" [{number_text(first.low, signed=True)}, "
                f"{number_text(first.high, signed=True)}]"
            )
            line = f"{subject(finding)}: {first.label} {number_text(first.mean, signed=True)}"
            line += interval + "".join(f", {c.label}" for c in moved[1:])
            lines.append(line)
    return gains, losses, unclear


def _chosen(study: Study) -> str:
    """The sentence on the chosen classifier cell, or "" without one."""
    by = study.classifier_selected_by
    best = best_classifier(study.results, study.axes, by)
    if best is None:
        return ""
    summary = summarise_classifiers(study.results, study.axes).set_index("cell")
    settings = ", ".join(f"{k} {v}" for k, v in best.factors.items() if v != "")
    seeds = f"{best.n_seeds} seed{'s' if best.n_seeds != 1 else ''}"
    how = (
        f"the highest mean {metric_label(by)} over its {seeds} ({number_text(best.chosen_value)})"
        if by != SELECTION_METRIC
        else f"the highest mean validation ROC-AUC over its {seeds} "
        f"({number_text(best.val_roc_auc)})"
    )
    text = (
        f"<p><strong>Chosen classifier:</strong> {escape(best.cell)} ({escape(settings)}), "
        f"chosen on validation: {escape(how)}; the test split took no part in the choice. "
    )
    row = summary.loc[best.cell]
    if math.isfinite(best.roc_auc):
        low, high = row.get("test_roc_auc_low"), row.get("test_roc_auc_high")
        interval = (
            f" [{number_text(low)}, {number_text(high)}]"
            if low is not None and high is not None and math.isfinite(low) and math.isfinite(high)
            else ""
        )
        text += f"On the test split its ROC-AUC is {number_text(best.roc_auc)}{interval}"
        baseline = matching_baseline(study.results, best, study.axes)
        if baseline is not None and baseline != best.cell and baseline in summary.index:
            auc = summary.at[baseline, "test_roc_auc"]
            text += (
                f"; its real-only baseline ({escape(baseline)}) scores {number_text(auc)} "
                "(their difference is in the pros and cons, with its interval)"
            )
        text += "."
    return text + "</p>"


def _generators_line(study: Study) -> str:
    rows = rows_of(study.results, "generator")
    if rows.empty:
        return ""
    flaws = study.checks.flaws(rows)
    flawed = {flaw: int((flaws == flaw).sum()) for flaw in dict.fromkeys(flaws) if flaw}
    text = f"<p><strong>Generators:</strong> {len(rows)} trained"
    if flawed:
        text += " (" + ", ".join(f"{n} {flaw}" for flaw, n in flawed.items()) + ")"
    best = best_generators(study.results, study.select_by, study.checks)
    if best:
        text += (
            "; chosen on validation images by "
            f"{escape(metric_label(study.select_by))}: "
            + ", ".join(escape(b.cell) for b in best.values())
        )
    else:
        text += "; none passed the checks, so no synthetic images were drawn from them"
    skipped = study.info.get("skipped_cells") or {}
    if isinstance(skipped, dict) and skipped:
        text += f"; {len(skipped)} classifier cell(s) needing their images were skipped"
    return text + ".</p>"


def summary_section(study: Study) -> str:
    """The opening summary: what was compared, what the intervals say, what was chosen."""
    classifiers = rows_of(study.results, "classifier")
    parts = []
    if classifiers.empty:
        parts.append("<p>No classifier results yet: nothing has been compared.</p>")
    else:
        compared = _compared(study)
        cells = classifiers["cell"].nunique() if "cell" in classifiers else len(classifiers)
        seeds = classifiers["seed"].nunique() if "seed" in classifiers else 1
        what = (
            f"compares {escape(_join(compared))}"
            if compared
            else "varies no classifier setting (one level each)"
        )
        parts.append(
            f"<p><strong>What was compared:</strong> this study {what}, over {cells} "
            f"classifier cell{'s' if cells != 1 else ''} trained with {seeds} "
            f"seed{'s' if seeds != 1 else ''} each, scored on the held-out test split.</p>"
        )
        gains, losses, unclear = _verdict_counts(study.findings)
        total = len([f for f in study.findings if any(c.kind == "difference" for c in f.changes)])
        if total:
            said = (
                f"<p><strong>What the intervals say:</strong> of {total} comparison"
                f"{'s' if total != 1 else ''} (each level against its reference, on cells "
                f"that differ in it only), {unclear} show{'s' if unclear == 1 else ''} "
                "<em>no clear effect</em>: the 95% interval of the difference includes zero, "
                "so at this size the data cannot tell the level from its reference. That is a "
                "finding, not a failure: the interval bounds how large the effect can be. "
            )
            clear = [("a clear gain", gains), ("a clear loss", losses)]
            counts = [f"{len(lines)} {name}" for name, lines in clear if lines]
            if counts:  # "3 show a clear gain and 1 a clear loss"
                first = int(counts[0].split()[0])
                counts[0] = counts[0].replace(" ", f" show{'s' if first == 1 else ''} ", 1)
            said += (" and ".join(counts) + ":") if counts else "None shows a clear gain or loss."
            said += "</p>"
            # one line per clear comparison: its first metric with value and interval
            items = [(name, line) for name, lines in clear for line in lines[:SHOWN_CLEAR]]
            if items:
                said += '<ul class="clear">' + "".join(
                    f"<li>{'gain' if name.endswith('gain') else 'loss'}: {escape(line)}</li>"
                    for name, line in items
                )
                more = sum(max(0, len(lines) - SHOWN_CLEAR) for _, lines in clear)
                said += (f"<li>and {more} more (see Pros and cons)</li>" if more else "") + "</ul>"
            parts.append(said)
        else:
            parts.append(
                "<p><strong>What the intervals say:</strong> nothing yet: no factor has two "
                "levels on matching cells.</p>"
            )
        parts.append(_chosen(study))
    parts.append(_generators_line(study))
    body = '<div class="summary">' + "\n".join(p for p in parts if p) + "</div>"
    return f'<section id="summary">\n<h2>Summary</h2>\n{body}\n{reading_note(study)}\n</section>'


def reading_note(study: Study) -> str:
    """What the report's words and marks mean, with this study's thresholds."""
    checks = study.checks
    entries = [
        (
            "a cell",
            "one combination of settings (preprocessing variant, classifier settings, amount "
            "of synthetic images), trained once per seed; its name lists the settings.",
        ),
        (
            "[low, high]",
            "the 95% interval of the number before it. In the tables: of a cell's mean over "
            "its seeds, holding the seeds' spread and the test patients' (a patient "
            "bootstrap); with one seed, that seed's bootstrap. In the pros and cons: of the "
            "mean difference between paired cells. Narrow: the number is pinned down; wide: "
            "it is not.",
        ),
        (
            "★ best, chosen on validation",
            "the cell picked by its validation score (the validation split, or leave-site-out "
            "folds), never by the test split, so its test numbers are an honest estimate "
            "rather than the luckiest of many.",
        ),
        (
            "no clear effect",
            "the interval of a difference includes zero: the study cannot tell the level from "
            "its reference. A result in itself: the interval bounds the effect. With fewer "
            f"than {MIN_PAIRS} pairs there is no interval ('too few pairs').",
        ),
        (
            "pro / con",
            f"a difference whose interval excludes zero on the good ({PRO}) or bad ({CON}) side, "
            "over the seeds and over the test patients, after Holm's correction for the "
            "report's many comparisons.",
        ),
    ]
    generators = has_generators(study)
    if generators and checks.collapse_ratio is not None:
        entries.append(
            (
                "collapsed",
                f"a generator whose images are more than {number_text(checks.collapse_ratio)} "
                "times as alike as real images (mean MS-SSIM): few distinct images. Never "
                "chosen.",
            )
        )
    if generators and checks.memorization_limit is not None:
        entries.append(
            (
                "memorizes",
                f"more than {number_text(100 * checks.memorization_limit, count=float(100 * checks.memorization_limit).is_integer())}% of a "
                "generator's "
                "images "
                "are closer to a training image than almost all held-out real images are "
                "(near-copies). Never chosen; the nearest-image pairs show it.",
            )
        )
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in entries)
    return f'<div class="reading"><h3>How to read this report</h3><dl>{items}</dl></div>'
