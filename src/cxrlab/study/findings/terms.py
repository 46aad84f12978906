"""The words every part of the findings shares: verdicts, result columns and their labels,
levels as text."""

from __future__ import annotations

import math

import numpy as np

from cxrlab.metrics.registry import value_info
from cxrlab.study import schema

PRO = "pro"
CON = "con"
UNCLEAR = "inconclusive"
#: Report group titles, in display order, by verdict.
GROUPS = {PRO: "Pros", CON: "Cons", UNCLEAR: "No clear effect"}

CONFIDENCE = 0.95
#: A level whose training takes more than this many times the reference's (and whose
#: interval lies wholly above 1) is a con.
TIME_RATIO_CON = 1.2
#: Fewest pairs that give a comparison an interval: with two, the t-interval's factor is
#: 12.7 (one degree of freedom) and the interval says nothing; the report says "too few
#: pairs" instead.
MIN_PAIRS = 3
#: Differences smaller than this are treated as zero (floating-point noise).
TOLERANCE = 1e-12

#: Default study axes, used when ``study.json`` does not name them.
DEFAULT_AXES = {
    "preprocess": ["size", "equalize"],
    "generator": ["generator", "gen_augment"],
    "classifier": ["arch", "augment", "synthetic"],
}
#: Classifier metrics compared between levels (those present in the results), and
#: summarised per cell in the report table.
CLASSIFIER_METRICS = (
    schema.evaluation_column("test", "roc_auc"),
    schema.evaluation_column("test", "sensitivity"),
    schema.evaluation_column("test", "specificity"),
    schema.evaluation_column("external", "roc_auc"),
)
#: Leave-site-out columns of a study with ``evaluation: leave-site-out`` (per seed, from
#: :func:`cxrlab.clf.cv.cross_validate`): the out-of-site and in-site ROC-AUC, each the
#: mean over folds of each fold's own AUC; the pooled out-of-site ROC-AUC and the
#: in-site minus out-of-site gap, each with ``_low``/``_high`` (95% patient bootstrap).
OUT_OF_SITE_AUC = "out_of_site_roc_auc"
IN_SITE_AUC = "in_site_roc_auc"
POOLED_OUT_OF_SITE_AUC = "pooled_out_of_site_roc_auc"
SITE_GAP_AUC = "site_gap_roc_auc"
#: With leave-site-out, the out-of-site ROC-AUC is compared between levels too.
CLASSIFIER_METRICS = (*CLASSIFIER_METRICS, OUT_OF_SITE_AUC)
SUMMARY_METRICS = CLASSIFIER_METRICS
#: What the best classifier cell is chosen by (never a test metric).
SELECTION_METRIC = schema.VAL_ROC_AUC


def selection_metric(evaluation: str | None) -> str:
    """What the best classifier cell is chosen by under a study's ``evaluation``: the
    mean out-of-site ROC-AUC over folds with ``leave-site-out`` (will it hold in a site
    it never saw?), else the validation split's ROC-AUC. Never a test metric."""
    return OUT_OF_SITE_AUC if evaluation == "leave-site-out" else SELECTION_METRIC


#: Labels of classifier result columns (generator metric columns take theirs from the
#: metric registry, :mod:`cxrlab.metrics.registry`).
LABELS = {
    "test_roc_auc": "ROC-AUC",
    "test_sensitivity": "sensitivity",
    "test_specificity": "specificity",
    "external_roc_auc": "external ROC-AUC",
    "val_roc_auc": "validation ROC-AUC",
    OUT_OF_SITE_AUC: "out-of-site ROC-AUC",
    IN_SITE_AUC: "in-site ROC-AUC",
    POOLED_OUT_OF_SITE_AUC: "pooled out-of-site ROC-AUC",
    SITE_GAP_AUC: "in-site minus out-of-site ROC-AUC",
    "seconds": "training time",
}
#: Significance level of every pro or con (after Holm's correction across a report).
ALPHA = 1.0 - CONFIDENCE
#: Suffix of the control arm's level on the synthetic axis: real positives oversampled
#: to the same count as the synthetic images (:mod:`cxrlab.study.runner`).
CONTROL_SUFFIX = "oversampled"


def control_level(amount: object) -> str:
    """The synthetic axis' control level for ``amount`` synthetic images (``100 oversampled``)."""
    return f"{level_text(amount)} {CONTROL_SUFFIX}"


def metric_label(name: str) -> str:
    """A readable name of a result column (``test_roc_auc`` -> ``ROC-AUC``)."""
    if name in LABELS:
        return LABELS[name]
    info = value_info(name)
    return info.label if info is not None else name.replace("_", " ")


def higher_is_better(metric: str) -> bool:
    """Direction of a metric: True for classifier metrics and the registry's
    higher-better values (IS, precision...); False for FID, KID, SWD and other distances,
    and for ``ideal`` values, which are compared by their distance to the ideal."""
    if metric.startswith(("test_", "external_", "val_")) or metric in (
        OUT_OF_SITE_AUC,
        IN_SITE_AUC,
        POOLED_OUT_OF_SITE_AUC,
    ):
        return True
    info = value_info(metric)
    return info is not None and info.better == "higher"


def is_generator_metric(column: str) -> bool:
    """Whether a ``metrics.csv`` or ``results.csv`` column holds a generator metric
    (any value a registered metric reports: ``fid``, ``kid_std``, ``swd_64px``...)."""
    return value_info(column) is not None


def level_text(value: object) -> str:
    """A factor value as text: NaN -> ``""``, ``100.0`` -> ``"100"``."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    if isinstance(value, np.floating):
        return level_text(float(value))
    return str(value)
