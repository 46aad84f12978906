"""Findings as sentences for the report: each change with its interval and verdict."""

from __future__ import annotations

from collections.abc import Iterable

from cxrlab.study.findings.terms import ALPHA, CLASSIFIER_METRICS, CON, GROUPS, PRO, UNCLEAR
from cxrlab.study.findings.verdicts import Change, Finding


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("+0.000", "0.000").replace("-0.000", "0.000")


def describe_change(change: Change) -> str:
    """``ROC-AUC +0.031 (95% CI -0.012 to +0.074, 6 pairs)`` or
    ``training time ×1.08 (one pair: no interval)``."""
    if change.kind == "ratio":
        value = f"×{change.mean:.2f}"
        interval = (
            None
            if change.low is None or change.high is None
            else f"×{change.low:.2f} to ×{change.high:.2f}"
        )
    else:
        value = _signed(change.mean)
        interval = (
            None
            if change.low is None or change.high is None
            else f"{_signed(change.low)} to {_signed(change.high)}"
        )
    if interval is None:
        detail = "one pair: no interval"
    else:
        detail = f"95% CI {interval}, {change.n_pairs} pairs"
    if change.test_low is not None and change.test_high is not None:
        over_test = f"{_signed(change.test_low)} to {_signed(change.test_high)}"
        detail = (
            f"95% CI over seeds and settings {interval or 'n/a'}, {change.n_pairs} pairs; "
            f"over test patients {over_test}"
        )
    direction = ""
    if change.kind == "difference" and change.metric not in CLASSIFIER_METRICS:
        direction = ", higher is better" if change.higher_is_better else ", lower is better"
    if (
        change.p_adjusted is not None
        and change.p_adjusted >= ALPHA
        and change.p_value is not None
        and change.p_value < ALPHA
    ):  # significant alone, not among the report's tests
        direction += (
            f"; p {change.p_value:.3f}, Holm-adjusted {change.p_adjusted:.3f} over "
            f"{change.n_tests} tests: not significant"
        )
    return f"{change.label} {value} ({detail}{direction})"


def verdict_words(change: Change) -> str:
    """What a change means in words: better / worse / no clear effect; for time:
    slower / faster / similar time."""
    if change.kind == "ratio":
        return {CON: "costs more time", PRO: "saves time", UNCLEAR: "similar time"}[change.verdict]
    return {PRO: "better", CON: "worse", UNCLEAR: "no clear effect"}[change.verdict]


def subject(finding: Finding) -> str:
    """``equalize clahe vs none``."""
    return f"{finding.factor} {finding.level} vs {finding.reference}"


def render_finding(finding: Finding) -> str:
    """One sentence of everything measured for a level, with each change's verdict.

    Example: ``equalize clahe vs none: ROC-AUC +0.031 (95% CI -0.012 to +0.074,
    6 pairs): no clear effect; training time ×1.08 (...): similar time.``
    """
    clauses = [f"{describe_change(c)}: {verdict_words(c)}" for c in finding.changes]
    if not clauses:
        return f"{subject(finding)}: {finding.n_pairs} pairs but no values to compare."
    return f"{subject(finding)}: " + "; ".join(clauses) + "."


def grouped_statements(findings: Iterable[Finding]) -> dict[tuple[str, str], dict[str, list[str]]]:
    """Statements per factor, sorted into Pros, Cons and No clear effect.

    Each level contributes at most one statement to each group, holding the changes
    with that verdict (a level can be a pro for ROC-AUC and a con for time).

    Returns:
        ``{(table, factor): {"Pros": [...], "Cons": [...], "No clear effect": [...]}}``
        in the order the findings came.
    """
    grouped: dict[tuple[str, str], dict[str, list[str]]] = {}
    for finding in findings:
        groups = grouped.setdefault(
            (finding.table, finding.factor), {title: [] for title in GROUPS.values()}
        )
        for verdict, title in GROUPS.items():
            chosen = [c for c in finding.changes if c.verdict == verdict]
            if chosen:
                text = "; ".join(
                    describe_change(c) + ("" if c.kind == "difference" else f": {verdict_words(c)}")
                    for c in chosen
                )
                groups[title].append(f"{subject(finding)}: {text}.")
    return grouped
