"""Pros, cons and no clear effect: each level of a factor measured against its reference
(:class:`Change`, :class:`Finding`), with Holm's correction across a report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from cxrlab.metrics.registry import value_info
from cxrlab.study.findings.pairing import (
    _pair_folders,
    levels_in_order,
    paired_rows,
    preprocess_factors,
    rows_of,
    study_factors,
)
from cxrlab.study.findings.significance import (
    PredictionLoader,
    _bootstrap_p_value,
    _interval,
    _t_p_value,
    paired_test_differences,
)
from cxrlab.study.findings.terms import (
    ALPHA,
    CLASSIFIER_METRICS,
    CON,
    MIN_PAIRS,
    PRO,
    TIME_RATIO_CON,
    TOLERANCE,
    UNCLEAR,
    control_level,
    higher_is_better,
    metric_label,
)


@dataclass(frozen=True)
class Change:
    """How one metric changed between paired rows.

    Attributes:
        metric: the result column (``test_roc_auc``, ``swd``, ``seconds``...).
        kind: ``difference`` (level minus reference) or ``ratio`` (level / reference).
        mean: mean difference, or geometric mean ratio.
        low: lower end of the 95% interval; None with fewer than two pairs.
        high: upper end of the 95% interval; None with fewer than two pairs.
        n_pairs: pairs where both rows have a value.
        higher_is_better: the metric's direction (time: False).
        verdict: :data:`PRO`, :data:`CON` or :data:`UNCLEAR`.
        test_low / test_high: 95% interval of the mean paired difference over a joint
            patient bootstrap of the shared test images (None where the predictions
            were not available): the uncertainty from the test set's small size,
            which the interval over pairs (seeds, other settings) does not contain.
        p_value: two-sided p of "no difference": the paired t-test's, or, with the test
            bootstrap, the larger of the two (a pro or con must hold in both).
        p_adjusted / n_tests: Holm's adjustment of ``p_value`` across the ``n_tests``
            comparisons of one report (:func:`holm_adjust`); None before it.
    """

    metric: str
    kind: str
    mean: float
    low: float | None
    high: float | None
    n_pairs: int
    higher_is_better: bool
    verdict: str
    test_low: float | None = None
    test_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    n_tests: int | None = None

    @property
    def label(self) -> str:
        info = value_info(self.metric)
        if info is not None and info.better == "ideal":
            return f"distance of {metric_label(self.metric)} from {info.ideal:g}"
        return metric_label(self.metric)


@dataclass(frozen=True)
class Finding:
    """The measured effect of one level of a factor against the factor's reference level.

    Attributes:
        table: ``classifier`` or ``generator``: which rows were compared.
        factor: the varied column.
        level: the level compared.
        reference: the reference level.
        n_pairs: pairs of rows that differ in ``factor`` only.
        changes: one :class:`Change` per compared metric (training time last).
    """

    table: str
    factor: str
    level: str
    reference: str
    n_pairs: int
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def verdicts(self) -> set[str]:
        return {change.verdict for change in self.changes}


def _difference(metric: str, level: pd.Series, reference: pd.Series) -> Change | None:
    both = pd.concat([level, reference], axis=1).dropna()
    if both.empty:
        return None
    level_values, reference_values = (
        both.iloc[:, 0].to_numpy(float),
        both.iloc[:, 1].to_numpy(float),
    )
    info = value_info(metric)
    better = higher_is_better(metric)
    if info is not None and info.better == "ideal":  # compared by distance to the ideal
        ideal = float(info.ideal)
        level_values, reference_values = abs(level_values - ideal), abs(reference_values - ideal)
    samples = level_values - reference_values
    mean, low, high = _pair_interval(samples)
    verdict = UNCLEAR
    if low is not None and high is not None:
        if low > TOLERANCE or high < -TOLERANCE:
            verdict = PRO if (low > TOLERANCE) == better else CON
    return Change(
        metric,
        "difference",
        mean,
        low,
        high,
        len(both),
        better,
        verdict,
        p_value=None if low is None else _t_p_value(samples),
    )


def _pair_interval(samples: np.ndarray) -> tuple[float, float | None, float | None]:
    """Mean and 95% t-interval of paired differences; no interval (None, None) with
    fewer than :data:`MIN_PAIRS` pairs, so they make no pro or con."""
    if len(samples) < MIN_PAIRS:
        return float(samples.mean()), None, None
    return _interval(samples)


def _ratio(metric: str, level: pd.Series, reference: pd.Series) -> Change | None:
    both = pd.concat([level, reference], axis=1).dropna()
    both = both[(both.iloc[:, 0] > 0) & (both.iloc[:, 1] > 0)]
    if both.empty:
        return None
    logs = np.log(both.iloc[:, 0].to_numpy(float) / both.iloc[:, 1].to_numpy(float))
    mean, low, high = _pair_interval(logs)
    ratio = math.exp(mean)
    verdict = UNCLEAR
    # a con or pro needs the interval wholly on its side of 1, not the mean alone
    # (x1.33 from x0.76 to x2.33 is no clear difference)
    if low is not None and high is not None:
        if ratio > TIME_RATIO_CON and low > TOLERANCE:
            verdict = CON
        elif ratio < 1 / TIME_RATIO_CON and high < -TOLERANCE:
            verdict = PRO
    return Change(
        metric,
        "ratio",
        ratio,
        None if low is None else math.exp(low),
        None if high is None else math.exp(high),
        len(both),
        False,
        verdict,
    )


def _with_test_interval(
    change: Change, folders: pd.DataFrame, predictions: PredictionLoader | None
) -> Change:
    """``change`` with its patient-bootstrap interval and a verdict that needs both."""
    if predictions is None or change.kind != "difference" or "_" not in change.metric:
        return change
    split = change.metric.split("_", 1)[0]
    if split not in ("test", "external"):
        return change
    pairs = []
    for _, row in folders.iterrows():
        seed = int(row["_seed_level"])
        level = predictions(str(row["folder_level"]), seed, split)
        reference = predictions(str(row["folder_reference"]), seed, split)
        if level is None or reference is None:
            return change
        pairs.append((level, reference))
    differences = paired_test_differences(pairs, change.metric) if pairs else None
    if differences is None:
        return change
    low, high = (float(v) for v in np.percentile(differences, [2.5, 97.5]))
    verdict = change.verdict
    if verdict != UNCLEAR and not (low > TOLERANCE or high < -TOLERANCE):
        verdict = UNCLEAR  # holds over seeds, but not over the test patients drawn
    elif verdict != UNCLEAR and ((low > TOLERANCE) != (change.mean > 0)):
        verdict = UNCLEAR
    if change.low is None:  # too few pairs: the interval is shown, nothing is tested
        return replace(change, test_low=low, test_high=high)
    p_value = _bootstrap_p_value(differences)
    if change.p_value is not None:
        p_value = max(p_value, change.p_value)  # both must reject: intersection-union test
    return replace(change, test_low=low, test_high=high, verdict=verdict, p_value=p_value)


def factor_findings(
    rows: pd.DataFrame,
    factor: str,
    factors: Sequence[str],
    metrics: Sequence[str],
    table: str,
    predictions: PredictionLoader | None = None,
) -> list[Finding]:
    """Findings of every non-reference level of ``factor`` (none with under two levels);
    on the synthetic axis also each amount against its control arm (the same number of
    real positives oversampled), which separates the images' effect from the prevalence's.

    Args:
        rows: the rows of one table (classifier or generator rows of ``results.csv``).
        factor: the varied column.
        factors: every factor column of the table (pairs agree on all but ``factor``).
        metrics: the metric columns to compare (differences); ``seconds`` is added as
            a ratio when present.
        table: ``classifier`` or ``generator`` (recorded in the findings).
        predictions: loads a classifier cell's predictions; with it, each classifier
            metric also gets a joint patient-bootstrap interval over the test images
            (see :func:`paired_test_bootstrap`), and a pro or con must hold in both.
    """
    if factor not in rows.columns or rows.empty:
        return []
    levels = levels_in_order(rows, factor)
    if len(levels) < 2:
        return []
    metrics = [m for m in metrics if m in rows.columns and rows[m].notna().any()]
    values = [*metrics, "seconds"]
    comparisons = [(level, levels[0]) for level in levels[1:]]
    if factor == "synthetic":  # the images, not the prevalence: each amount vs its control
        comparisons += [
            (level, control_level(level)) for level in levels if control_level(level) in levels
        ]
    findings = []
    for level, reference in comparisons:
        pairs = paired_rows(rows, factor, level, reference, factors, values)
        if pairs.empty:
            continue
        changes = [_difference(m, pairs[f"{m}_level"], pairs[f"{m}_reference"]) for m in metrics]
        if predictions is not None and "folder" in rows.columns:
            folders = _pair_folders(rows, factor, level, reference, factors)
            changes = [
                None if c is None else _with_test_interval(c, folders, predictions) for c in changes
            ]
        if "seconds_level" in pairs.columns:
            changes.append(_ratio("seconds", pairs["seconds_level"], pairs["seconds_reference"]))
        findings.append(
            Finding(
                table,
                factor,
                level,
                reference,
                len(pairs),
                tuple(c for c in changes if c is not None),
            )
        )
    return findings


def classifier_findings(
    results: pd.DataFrame, axes: dict | None = None, predictions: PredictionLoader | None = None
) -> list[Finding]:
    """Findings of each classifier factor: test ROC-AUC, sensitivity, specificity
    (external ROC-AUC when present) and training time."""
    rows = rows_of(results, "classifier")
    factors = study_factors(results, axes)["classifier"]
    findings = []
    for factor in factors:
        findings += factor_findings(
            rows, factor, factors, CLASSIFIER_METRICS, "classifier", predictions
        )
    return findings


def generator_findings(
    results: pd.DataFrame, axes: dict | None = None, select_by: str = "swd"
) -> list[Finding]:
    """Findings of each generator factor within a preprocessing variant: the
    ``select_by`` metric and training time.

    Each variant's generators are measured against that variant's own preprocessed real
    images, so their metrics are on different scales across variants: preprocessing
    axes are never compared here, only held equal (pairs share the variant)."""
    rows = rows_of(results, "generator")
    factors = study_factors(results, axes)["generator"]
    preprocess = set(preprocess_factors(results, axes))
    findings = []
    for factor in factors:
        if factor not in preprocess:
            findings += factor_findings(rows, factor, factors, [select_by], "generator")
    return findings


def all_findings(
    results: pd.DataFrame,
    axes: dict | None = None,
    select_by: str = "swd",
    predictions: PredictionLoader | None = None,
) -> list[Finding]:
    """Classifier findings, then generator findings, with Holm's correction applied
    across every compared metric of them all (:func:`holm_adjust`)."""
    return holm_adjust(
        classifier_findings(results, axes, predictions)
        + generator_findings(results, axes, select_by)
    )


def holm_adjust(findings: list[Finding], alpha: float = ALPHA) -> list[Finding]:
    """Control the family-wise error over the differences of ``findings`` (Holm 1979).

    Every difference with a p-value is one test. Holm's step-down adjustment multiplies
    the i-th smallest of m p-values by (m - i + 1), keeping the adjusted values
    monotone; a pro or con whose adjusted p is not below ``alpha`` becomes inconclusive.
    Time ratios are not tests and are left as they are.
    """
    tested = [
        (i, j, c.p_value)
        for i, finding in enumerate(findings)
        for j, c in enumerate(finding.changes)
        if c.kind == "difference" and c.p_value is not None
    ]
    m = len(tested)
    adjusted: dict[tuple[int, int], float] = {}
    running = 0.0
    for rank, (i, j, p) in enumerate(sorted(tested, key=lambda t: t[2])):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[(i, j)] = running
    out = []
    for i, finding in enumerate(findings):
        changes = []
        for j, c in enumerate(finding.changes):
            if (i, j) in adjusted:
                verdict = c.verdict if adjusted[(i, j)] < alpha else UNCLEAR
                c = replace(c, p_adjusted=adjusted[(i, j)], n_tests=m, verdict=verdict)
            changes.append(c)
        out.append(replace(finding, changes=tuple(changes)))
    return out
