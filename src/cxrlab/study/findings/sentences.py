"""Findings as sentences for the report: each change with its interval and verdict."""

from __future__ import annotations

from collections.abc import Iterable

from cxrlab.study.findings.terms import (
    ALPHA,
    CLASSIFIER_METRICS,
    CON,
    GROUPS,
    MIN_PAIRS,
    PRO,
    UNCLEAR,
)
from cxrlab.study.findings.verdicts import Change, Finding
from cxrlab.study.numbers import number_text


def _signed(value: float) -> str:
    """A difference in the report's number format, with its sign (``+0.031``)."""
    text = number_text(value, signed=True)
    return "0.000" if text.lstrip("+-") == "0.000" else text


def _too_few(n_pairs: int) -> str:
    pairs = "one pair" if n_pairs == 1 else f"{n_pairs} pairs"
    return f"{pairs}: too few pairs for an interval (at least {MIN_PAIRS})"


def describe_change(change: Change) -> str:
    """``ROC-AUC +0.031 (95% CI -0.012 to +0.074, 6 pairs)`` or
    ``training time ×1.08 (2 pairs: too few pairs for an interval (at least 3))``."""
    if change.kind == "ratio":
        value = f"×{number_text(change.mean)}"
        interval = (
            None
            if change.low is None or change.high is None
            else f"×{number_text(change.low)} to ×{number_text(change.high)}"
        )
    else:
        value = _signed(change.mean)
        interval = (
            None
            if change.low is None or change.high is None
            else f"{_signed(change.low)} to {_signed(change.high)}"
        )
    if interval is None:
        detail = _too_few(change.n_pairs)
    else:
        detail = f"95% CI {interval}, {change.n_pairs} pairs"
    if change.test_low is not None and change.test_high is not None:
        over_test = f"{_signed(change.test_low)} to {_signed(change.test_high)}"
        over_pairs = (
            _too_few(change.n_pairs)
            if interval is None
            else f"95% CI over seeds and settings {interval}, {change.n_pairs} pairs"
        )
        detail = f"{over_pairs}; over test patients {over_test}"
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
            f"; p {number_text(change.p_value)}, Holm-adjusted "
            f"{number_text(change.p_adjusted)} over "
            f"{change.n_tests} tests: not significant"
        )
    return f"{change.label} {value} ({detail}{direction})"


def verdict_words(change: Change) -> str:
    """What a change means in words: better / worse / no clear effect; for time:
    costs more time / saves time / no clear difference in time (an interval that
    includes ×1, or too few pairs to tell)."""
    if change.kind == "ratio":
        words = {CON: "costs more time", PRO: "saves time", UNCLEAR: "no clear difference in time"}
        return words[change.verdict]
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
