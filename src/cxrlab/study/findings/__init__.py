"""Pros and cons of each study factor, measured on ``results.csv`` and written as sentences.

A *factor* is a column that the study varied: a preprocessing axis (``size``,
``equalize``), a classifier setting (``arch``, ``augment``, ``synthetic``) or a
generator setting (``generator``, ``gen_augment``). For every level of a factor other
than its reference (the first level in the study's order; ``0`` for ``synthetic``),
rows are *paired* with reference rows that agree on every other factor and on the seed,
so each pair differs in that one factor only. The mean of the paired differences, with
a 95% t-interval over the pairs, is the factor's measured effect:

* a **pro** when the interval lies wholly on the good side of zero,
* a **con** when it lies wholly on the bad side,
* **inconclusive** otherwise (or with a single pair, which gives no interval).

For classifier metrics a second interval comes from the predictions themselves: one
patient bootstrap of the test images that all pairs share, applied to both models of
every pair, gives the spread of the mean paired difference over test sets of the same
size (:func:`paired_test_bootstrap`). Seeds share one small test set, so the interval
over pairs alone would overstate certainty; a pro or con must hold in both.

Training time is compared as a ratio (geometric mean of the paired ratios); a level
that costs more than :data:`TIME_RATIO_CON` times the reference's time is a con, one
that needs less than its inverse is a pro.

Everything here is a pure function of a DataFrame: the sentences are made from the
numbers, never from fixed text about what a setting "should" do.

The package, by role (each module holds one step, so a reader finds it in one file):

* :mod:`~cxrlab.study.findings.terms`: verdict names, result columns, labels;
* :mod:`~cxrlab.study.findings.checks`: the generator checks (collapsed, memorizes);
* :mod:`~cxrlab.study.findings.pairing`: factors, levels and pairs of rows;
* :mod:`~cxrlab.study.findings.significance`: t-intervals, tests, the patient bootstrap;
* :mod:`~cxrlab.study.findings.verdicts`: pros, cons and no clear effect, Holm's correction;
* :mod:`~cxrlab.study.findings.sentences`: findings as sentences;
* :mod:`~cxrlab.study.findings.best`: the chosen classifier and generators.

Everything is importable from ``cxrlab.study.findings`` itself.
"""

from __future__ import annotations

from cxrlab.study.findings.best import (
    BestClassifier,
    BestGenerator,
    best_classifier,
    best_generator_position,
    best_generators,
    matching_baseline,
    summarise_classifiers,
)
from cxrlab.study.findings.checks import (
    CHECK_VALUES,
    COLLAPSE_MS_SSIM_RATIO,
    MEMORIZATION_LIMIT,
    NOT_MEASURED,
    GeneratorChecks,
    collapsed,
)
from cxrlab.study.findings.pairing import (
    levels_in_order,
    paired_rows,
    preprocess_factors,
    rows_of,
    study_factors,
)
from cxrlab.study.findings.sentences import (
    describe_change,
    grouped_statements,
    render_finding,
    subject,
    verdict_words,
)
from cxrlab.study.findings.significance import (
    BOOTSTRAP_RESAMPLES,
    PredictionLoader,
    paired_test_bootstrap,
    paired_test_differences,
)
from cxrlab.study.findings.terms import (
    ALPHA,
    CLASSIFIER_METRICS,
    CON,
    CONFIDENCE,
    CONTROL_SUFFIX,
    DEFAULT_AXES,
    GROUPS,
    IN_SITE_AUC,
    LABELS,
    MIN_PAIRS,
    OUT_OF_SITE_AUC,
    POOLED_OUT_OF_SITE_AUC,
    PRO,
    SELECTION_METRIC,
    SITE_GAP_AUC,
    SUMMARY_METRICS,
    TIME_RATIO_CON,
    TOLERANCE,
    UNCLEAR,
    control_level,
    higher_is_better,
    is_generator_metric,
    level_text,
    metric_label,
    selection_metric,
)
from cxrlab.study.findings.verdicts import (
    Change,
    Finding,
    all_findings,
    classifier_findings,
    factor_findings,
    generator_findings,
    holm_adjust,
)

__all__ = [
    "ALPHA",
    "BOOTSTRAP_RESAMPLES",
    "BestClassifier",
    "BestGenerator",
    "CHECK_VALUES",
    "CLASSIFIER_METRICS",
    "COLLAPSE_MS_SSIM_RATIO",
    "CON",
    "CONFIDENCE",
    "CONTROL_SUFFIX",
    "Change",
    "DEFAULT_AXES",
    "Finding",
    "GROUPS",
    "GeneratorChecks",
    "IN_SITE_AUC",
    "LABELS",
    "MEMORIZATION_LIMIT",
    "MIN_PAIRS",
    "NOT_MEASURED",
    "OUT_OF_SITE_AUC",
    "POOLED_OUT_OF_SITE_AUC",
    "PRO",
    "PredictionLoader",
    "SELECTION_METRIC",
    "SITE_GAP_AUC",
    "SUMMARY_METRICS",
    "TIME_RATIO_CON",
    "TOLERANCE",
    "UNCLEAR",
    "all_findings",
    "best_classifier",
    "best_generator_position",
    "best_generators",
    "classifier_findings",
    "collapsed",
    "control_level",
    "describe_change",
    "factor_findings",
    "generator_findings",
    "grouped_statements",
    "higher_is_better",
    "holm_adjust",
    "is_generator_metric",
    "level_text",
    "levels_in_order",
    "matching_baseline",
    "metric_label",
    "paired_rows",
    "paired_test_bootstrap",
    "paired_test_differences",
    "preprocess_factors",
    "render_finding",
    "rows_of",
    "selection_metric",
    "study_factors",
    "subject",
    "summarise_classifiers",
    "verdict_words",
]
