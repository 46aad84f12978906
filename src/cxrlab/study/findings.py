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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from cxrlab.metrics.registry import value_info
from cxrlab.study import schema

PRO = "pro"
CON = "con"
UNCLEAR = "inconclusive"
#: Report group titles, in display order, by verdict.
GROUPS = {PRO: "Pros", CON: "Cons", UNCLEAR: "No clear effect"}

CONFIDENCE = 0.95
#: A level whose training takes more than this many times the reference's is a con.
TIME_RATIO_CON = 1.2
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
#: A generator whose images are this many times more alike (mean MS-SSIM of generated
#: pairs over that of real pairs) than real ones is collapsed: never the chosen one.
COLLAPSE_MS_SSIM_RATIO = 1.5
#: A generator with a larger share of its images flagged as near-copies of training
#: images (the ``memorization_share`` metric; one that does not copy scores about 0.05
#: by chance) memorizes: never the chosen one.
MEMORIZATION_LIMIT = 0.1
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


def collapsed(
    ms_ssim_fake: float, ms_ssim_real: float, ratio: float | None = COLLAPSE_MS_SSIM_RATIO
) -> bool:
    """Whether generated images are far more alike than real ones (mode collapse): their
    mean MS-SSIM above ``ratio`` times the real images' (None: never)."""
    if ratio is None:
        return False
    if not (math.isfinite(ms_ssim_fake) and math.isfinite(ms_ssim_real)) or ms_ssim_real <= 0:
        return False
    return ms_ssim_fake > ratio * ms_ssim_real


def _row_number(row: Mapping[str, object], key: str) -> float:
    """``row[key]`` as a float; NaN when missing or not a number."""
    value = pd.to_numeric(row.get(key, math.nan), errors="coerce")
    return float(value) if pd.notna(value) else math.nan


#: The flaw of a generator whose check is on but lacks the value it needs: it was not
#: checked, so it is never chosen either (:class:`GeneratorChecks`).
NOT_MEASURED = "not measured"
#: The metric each check reads, and the values it needs, by check.
CHECK_VALUES = {
    "diversity": ("ms_ssim_fake", "ms_ssim_real"),
    "memorization": ("memorization_share",),
}


@dataclass(frozen=True)
class GeneratorChecks:
    """What keeps a generator from being chosen, however good its ``select_by`` value.

    A check that is on needs its values: a generator without them was not checked, and
    an unchecked generator passes nothing (:data:`NOT_MEASURED`). The study runner
    therefore measures every metric a check reads (:meth:`metrics`), whatever a spec
    lists.

    Attributes:
        collapse_ratio: generated MS-SSIM above this times the real images': collapsed
            (None: no check).
        memorization_limit: a ``memorization_share`` above this: memorizes (None: no
            check).
    """

    collapse_ratio: float | None = COLLAPSE_MS_SSIM_RATIO
    memorization_limit: float | None = MEMORIZATION_LIMIT

    def metrics(self) -> list[str]:
        """The metrics (``cxrlab metrics`` names) the checks that are on read."""
        names = []
        if self.collapse_ratio is not None:
            names.append("diversity")
        if self.memorization_limit is not None:
            names.append("memorization")
        return names

    def missing(self, row: Mapping[str, object]) -> list[str]:
        """The values the checks that are on need and ``row`` lacks (missing, not a
        number, or not finite), in check order."""
        return [
            value
            for metric in self.metrics()
            for value in CHECK_VALUES[metric]
            if not math.isfinite(_row_number(row, value))
        ]

    def flaw(self, row: Mapping[str, object]) -> str | None:
        """``"collapsed"``, ``"memorizes"``, :data:`NOT_MEASURED` or None for one
        generator's metric values. A measured failure comes first; a value a check
        needs and the row lacks makes it :data:`NOT_MEASURED`, never a pass."""
        fake, real = _row_number(row, "ms_ssim_fake"), _row_number(row, "ms_ssim_real")
        if collapsed(fake, real, self.collapse_ratio):
            return "collapsed"
        share = _row_number(row, "memorization_share")
        if self.memorization_limit is not None and share > self.memorization_limit:
            return "memorizes"
        if self.missing(row):
            return NOT_MEASURED
        return None

    def flaws(self, rows: pd.DataFrame) -> pd.Series:
        """(rows,) str: each generator row's :meth:`flaw`, "" where it has none."""
        return pd.Series(
            [self.flaw(row) or "" for _, row in rows.iterrows()], index=rows.index, dtype=object
        )

    def explain(self, flaw: str, row: Mapping[str, object] | None = None) -> str:
        """What ``flaw`` means, with its threshold, for logs and captions; for
        :data:`NOT_MEASURED`, the values ``row`` lacks (when given)."""
        if flaw == "collapsed":
            return (
                f"its images are more than {self.collapse_ratio:g} times as alike as real "
                "ones (mean MS-SSIM)"
            )
        if flaw == NOT_MEASURED:
            lacking = self.missing(row) if row is not None else []
            values = ", ".join(lacking) if lacking else "a value its checks need"
            return f"{values} not measured: it could not be checked, so it is never chosen"
        return (
            f"more than {self.memorization_limit:g} of its images are near-copies of "
            "training images (memorization share)"
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


@dataclass(frozen=True)
class BestClassifier:
    """The classifier cell chosen on validation (highest mean validation ROC-AUC over
    its seeds), with its test numbers, which took no part in the choice."""

    cell: str
    folder: str
    factors: dict[str, str]
    n_seeds: int
    seeds: tuple[int, ...]
    val_roc_auc: float
    roc_auc: float
    sensitivity: float
    chosen_by: str = SELECTION_METRIC
    chosen_value: float = math.nan


@dataclass(frozen=True)
class BestGenerator:
    """The best generator cell of a preprocessing variant by the study's ``select_by``."""

    variant: str
    cell: str
    folder: str
    metric: str
    value: float


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


def study_factors(results: pd.DataFrame, axes: dict | None = None) -> dict[str, list[str]]:
    """The factor columns of each table that exist in ``results``.

    Args:
        results: the study's ``results.csv``.
        axes: ``study.json``'s ``axes`` (None or missing keys: :data:`DEFAULT_AXES`).

    Returns:
        ``{"classifier": [...], "generator": [...]}``: preprocessing axes first.
    """
    axes = {**DEFAULT_AXES, **(axes or {})}
    preprocess = preprocess_factors(results, axes)
    return {
        "classifier": preprocess + [c for c in axes["classifier"] if c in results.columns],
        "generator": preprocess + [c for c in axes["generator"] if c in results.columns],
    }


def preprocess_factors(results: pd.DataFrame, axes: dict | None = None) -> list[str]:
    """The preprocessing axes of the study that exist in ``results``."""
    axes = {**DEFAULT_AXES, **(axes or {})}
    return [c for c in axes["preprocess"] if c in results.columns]


def rows_of(results: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The rows of one kind (``classifier`` or ``generator``); empty if there are none."""
    if results.empty or "kind" not in results.columns:
        return results.iloc[0:0]
    return results[results["kind"] == kind]


def levels_in_order(rows: pd.DataFrame, factor: str) -> list[str]:
    """A factor's levels in the study's order (first appearance); ``synthetic`` 0 first."""
    levels = list(dict.fromkeys(level_text(v) for v in rows[factor]))
    levels = [level for level in levels if level != ""]
    if factor == "synthetic" and "0" in levels:
        levels.remove("0")
        levels.insert(0, "0")
    return levels


def _keyed(rows: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    keyed = rows.copy()
    for column in [*factors, "seed"]:
        if column in keyed.columns:
            keyed[column] = keyed[column].map(level_text)
        else:
            keyed[column] = ""
    return keyed


def paired_rows(
    rows: pd.DataFrame,
    factor: str,
    level: str,
    reference: str,
    factors: Sequence[str],
    values: Sequence[str],
) -> pd.DataFrame:
    """Pairs of rows that differ in ``factor`` only (same other factors, same seed).

    Rows sharing a key (the other factors and the seed) are averaged first.

    Returns:
        One row per pair, with columns ``VALUE_level`` and ``VALUE_reference`` for each
        of ``values`` present in ``rows``, indexed by the pairing key.
    """
    keys = [f for f in factors if f != factor] + ["seed"]
    keyed = _keyed(rows, factors)
    values = [v for v in values if v in keyed.columns]
    numeric = keyed[values].apply(pd.to_numeric, errors="coerce")
    keyed = pd.concat([keyed[[factor, *keys]], numeric], axis=1)

    def side(name: str) -> pd.DataFrame:
        chosen = keyed[keyed[factor] == name]
        return chosen.groupby(keys, dropna=False)[values].mean()

    level_rows = side(level).add_suffix("_level")
    return level_rows.join(side(reference).add_suffix("_reference"), how="inner")


def _interval(samples: np.ndarray) -> tuple[float, float | None, float | None]:
    mean = float(samples.mean())
    if len(samples) < 2:
        return mean, None, None
    spread = float(samples.std(ddof=1)) / math.sqrt(len(samples))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(samples) - 1)) * spread
    return mean, mean - half, mean + half


def _t_p_value(samples: np.ndarray) -> float | None:
    """Two-sided p of the paired t-test of mean 0 (None with fewer than two pairs)."""
    if len(samples) < 2:
        return None
    mean = float(samples.mean())
    spread = float(samples.std(ddof=1)) / math.sqrt(len(samples))
    if spread <= TOLERANCE:
        return 1.0 if abs(mean) <= TOLERANCE else 0.0
    return float(2 * stats.t.sf(abs(mean) / spread, len(samples) - 1))


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
    mean, low, high = _interval(samples)
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
        p_value=_t_p_value(samples),
    )


def _ratio(metric: str, level: pd.Series, reference: pd.Series) -> Change | None:
    both = pd.concat([level, reference], axis=1).dropna()
    both = both[(both.iloc[:, 0] > 0) & (both.iloc[:, 1] > 0)]
    if both.empty:
        return None
    logs = np.log(both.iloc[:, 0].to_numpy(float) / both.iloc[:, 1].to_numpy(float))
    mean, low, high = _interval(logs)
    ratio = math.exp(mean)
    verdict = UNCLEAR
    if ratio > TIME_RATIO_CON:
        verdict = CON
    elif ratio < 1 / TIME_RATIO_CON:
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


#: (cell folder, seed, split) -> that seed's predictions (id, patient_id, covid,
#: probability, threshold), or None where they are not available.
PredictionLoader = Callable[[str, int, str], "pd.DataFrame | None"]
BOOTSTRAP_RESAMPLES = 2000


def _pair_folders(
    rows: pd.DataFrame, factor: str, level: str, reference: str, factors: Sequence[str]
) -> pd.DataFrame:
    """For each pair of :func:`paired_rows`: the two rows' cell folders and the seed."""
    keys = [f for f in factors if f != factor] + ["seed"]
    keyed = _keyed(rows, factors)
    keyed["_seed"] = pd.to_numeric(rows["seed"], errors="coerce")

    def side(name: str) -> pd.DataFrame:
        chosen = keyed[keyed[factor] == name]
        return chosen.groupby(keys, dropna=False)[["folder", "_seed"]].first()

    return (
        side(level).add_suffix("_level").join(side(reference).add_suffix("_reference"), how="inner")
    )


def paired_test_differences(
    pairs: list[tuple[pd.DataFrame, pd.DataFrame]],
    metric: str,
    *,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> np.ndarray | None:
    """The mean (over pairs) difference of ``metric`` (level minus reference) in each
    resample of one joint patient bootstrap of the test images all pairs share.

    Each pair is (level predictions, reference predictions) of the same seed; the same
    resampled patients are used for every model, so the spread reflects how much the
    comparison depends on which test patients happened to be drawn. None when there are
    too few usable resamples (no shared images, one class).
    """
    from cxrlab.clf.metrics import patient_resample_weights, weighted_auc, weighted_metrics

    name = metric.split("_", 1)[1]  # test_roc_auc -> roc_auc
    common = None
    for level, reference in pairs:
        ids = set(level["id"]) & set(reference["id"])
        common = ids if common is None else common & ids
    if not common:
        return None
    order = sorted(common)
    first = pairs[0][0].set_index("id").loc[order]
    covid = first["covid"].to_numpy(int)
    if covid.min() == covid.max():
        return None
    weights = patient_resample_weights(
        first["patient_id"].to_numpy(), n_resamples, np.random.default_rng(seed)
    )

    def values(predictions: pd.DataFrame) -> np.ndarray:
        table = predictions.set_index("id").loc[order]
        probability = table["probability"].to_numpy(float)
        if name == "roc_auc":
            return weighted_auc(covid, probability, weights)
        threshold = float(table["threshold"].iloc[0])
        return weighted_metrics(covid, probability, threshold, weights)[name]

    differences = np.mean([values(level) - values(ref) for level, ref in pairs], axis=0)
    differences = differences[np.isfinite(differences)]
    if len(differences) < n_resamples // 2:
        return None
    return differences


def paired_test_bootstrap(
    pairs: list[tuple[pd.DataFrame, pd.DataFrame]],
    metric: str,
    *,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """95% interval of the mean (over pairs) difference of ``metric`` under one joint
    patient bootstrap of the shared test images (see :func:`paired_test_differences`)."""
    differences = paired_test_differences(pairs, metric, n_resamples=n_resamples, seed=seed)
    if differences is None:
        return None
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(low), float(high)


def _bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p of "no difference": twice the smaller tail share at zero."""
    below = float(np.mean(differences <= TOLERANCE))
    above = float(np.mean(differences >= -TOLERANCE))
    return min(1.0, 2.0 * min(below, above))


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


def summarise_classifiers(results: pd.DataFrame, axes: dict | None = None) -> pd.DataFrame:
    """One row per classifier cell: factors, seeds, metric means with 95% intervals.

    With one seed the interval is that seed's patient-bootstrap interval from the
    ``*_low``/``*_high`` columns (``interval`` = ``bootstrap``). With two or more seeds it
    must hold both sources of variation: the seeds (a t-interval of the mean over seeds)
    and the test set, which every seed shares, so its sampling variation does not shrink
    with more seeds (the seeds' mean patient-bootstrap half-widths, each side). The two
    half-widths are combined as the root of their sum of squares, which is at least each
    of them; the interval is clipped to 0-1 (``interval`` = ``seeds+test`` or, without
    bootstrap columns, ``seeds``).

    Returns:
        Columns ``cell``, ``folder``, ``variant``, the factor columns, ``n_seeds``,
        ``seeds``, ``interval``, ``M``/``M_low``/``M_high`` for each metric of
        :data:`SUMMARY_METRICS` present, ``val_roc_auc`` (mean over seeds, what the best
        cell is chosen by), ``seconds``; cells in the study's order.
    """
    rows = rows_of(results, "classifier")
    factors = study_factors(results, axes)["classifier"]
    if rows.empty or "cell" not in rows.columns:
        return pd.DataFrame()
    metrics = [m for m in SUMMARY_METRICS if m in rows.columns and rows[m].notna().any()]
    records = []
    for cell, group in rows.groupby("cell", sort=False):
        record: dict[str, object] = {
            "cell": cell,
            "folder": level_text(group["folder"].iloc[0]) if "folder" in group else "",
            "variant": level_text(group["variant"].iloc[0]) if "variant" in group else "",
        }
        for factor in factors:
            record[factor] = level_text(group[factor].iloc[0])
        seeds = _seeds(group)
        record["n_seeds"] = len(group)
        record["seeds"] = tuple(seeds)
        kinds = set()
        for metric in metrics:
            mean, low, high, kind = _cell_interval(group, metric)
            kinds.add(kind)
            record[metric] = mean
            record[f"{metric}_low"] = math.nan if low is None else low
            record[f"{metric}_high"] = math.nan if high is None else high
        record["interval"] = (
            "bootstrap" if len(group) < 2 else ("seeds+test" if "seeds+test" in kinds else "seeds")
        )
        record["val_roc_auc"] = _mean(group, "val_roc_auc")
        record["seconds"] = _mean(group, "seconds")
        records.append(record)
    return pd.DataFrame.from_records(records)


def _mean(group: pd.DataFrame, column: str) -> float:
    if column not in group.columns:
        return math.nan
    values = pd.to_numeric(group[column], errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


def _cell_interval(
    group: pd.DataFrame, metric: str
) -> tuple[float, float | None, float | None, str]:
    """(mean, low, high, kind) of one metric of one cell; see :func:`summarise_classifiers`."""
    values = pd.to_numeric(group[metric], errors="coerce")
    finite = values.dropna()
    if len(finite) == 0:
        return math.nan, None, None, "none"
    if len(group) < 2:
        return (
            float(finite.iloc[0]),
            _number(group, f"{metric}_low"),
            _number(group, f"{metric}_high"),
            "bootstrap",
        )
    mean, low, high = _interval(finite.to_numpy(float))
    kind = "seeds"
    if low is not None and {f"{metric}_low", f"{metric}_high"} <= set(group.columns):
        lows = pd.to_numeric(group[f"{metric}_low"], errors="coerce")
        highs = pd.to_numeric(group[f"{metric}_high"], errors="coerce")
        below = (values - lows).dropna()
        above = (highs - values).dropna()
        if len(below) and len(above):
            seed_half = mean - low
            low = mean - math.hypot(seed_half, float(below.mean()))
            high = mean + math.hypot(seed_half, float(above.mean()))
            kind = "seeds+test"
    # every classifier metric is a proportion: keep the interval within 0-1
    low = None if low is None else max(low, 0.0)
    high = None if high is None else min(high, 1.0)
    return mean, low, high, kind


def _seeds(group: pd.DataFrame) -> list[int]:
    if "seed" not in group.columns:
        return []
    return sorted(int(s) for s in pd.to_numeric(group["seed"], errors="coerce").dropna())


def _number(group: pd.DataFrame, column: str) -> float | None:
    if column not in group.columns:
        return None
    value = pd.to_numeric(group[column], errors="coerce").iloc[0]
    return None if pd.isna(value) else float(value)


def best_classifier(
    results: pd.DataFrame, axes: dict | None = None, by: str = SELECTION_METRIC
) -> BestClassifier | None:
    """The classifier cell with the highest mean ``by`` over seeds: the **validation**
    ROC-AUC (each seed's AUC at its validation-chosen epoch), or with leave-site-out the
    out-of-site ROC-AUC (:func:`selection_metric`); ties go to the earlier cell. The test
    split never takes part in the choice: its numbers are reported for the chosen cell.
    None without any value of ``by`` (a study run before cxrlab recorded it)."""
    summary = summarise_classifiers(results, axes)
    if summary.empty or by not in summary.columns:
        return None
    summary = summary[summary[by].notna()]
    if summary.empty:
        return None
    order = summary[by].sort_values(ascending=False, kind="stable")
    row = summary.loc[order.index[0]]
    factors = study_factors(results, axes)["classifier"]
    return BestClassifier(
        cell=str(row["cell"]),
        folder=str(row["folder"]),
        factors={f: str(row[f]) for f in factors},
        n_seeds=int(row["n_seeds"]),
        seeds=tuple(row["seeds"]),
        val_roc_auc=float(row[SELECTION_METRIC]),
        roc_auc=float(row.get("test_roc_auc", math.nan)),
        sensitivity=float(row.get("test_sensitivity", math.nan)),
        chosen_by=by,
        chosen_value=float(row[by]),
    )


def matching_baseline(
    results: pd.DataFrame, best: BestClassifier, axes: dict | None = None
) -> str | None:
    """The real-only classifier cell matching ``best``: the same factors but
    ``synthetic`` 0 and ``augment`` ``none`` (when the study has those levels).

    Returns:
        The cell id (``best.cell`` itself when it is real-only already), or None when
        the study has no such cell.
    """
    rows = _keyed(rows_of(results, "classifier"), study_factors(results, axes)["classifier"])
    wanted = dict(best.factors)
    if "synthetic" in wanted and "0" in set(rows["synthetic"]):
        wanted["synthetic"] = "0"
    if "augment" in wanted and "none" in set(rows["augment"]):
        wanted["augment"] = "none"
    chosen = rows
    for factor, value in wanted.items():
        chosen = chosen[chosen[factor] == value]
    if chosen.empty:
        return None
    return str(chosen["cell"].iloc[0])


def best_generator_position(
    rows: Sequence[Mapping[str, object]],
    select_by: str,
    checks: GeneratorChecks = GeneratorChecks(),
) -> int | None:
    """Position in ``rows`` (one variant's generators) of the best by ``select_by``, its
    direction from the metric registry; the first of equals. A collapsed, memorizing or
    unchecked generator (``checks``) is never the best, whatever its value. None when no
    generator without a flaw has a finite value. The study's choice of the generator
    to draw synthetic images from and the report's "best" are both this function."""
    info = value_info(select_by)
    best: tuple[float, int] | None = None
    for position, row in enumerate(rows):
        value = _row_number(row, select_by)
        if checks.flaw(row) is not None or not math.isfinite(value):
            continue
        badness = info.badness(value) if info else value
        if best is None or badness < best[0]:
            best = (badness, position)
    return None if best is None else best[1]


def best_generators(
    results: pd.DataFrame,
    select_by: str = "swd",
    checks: GeneratorChecks = GeneratorChecks(),
) -> dict[str, BestGenerator]:
    """The best generator cell of each variant (:func:`best_generator_position`),
    measured against held-out validation images. Variants without any value of the
    metric fall back to the unflawed row marked ``selected`` (the study's record of
    what it drew from); variants with neither are left out."""
    rows = rows_of(results, "generator")
    best: dict[str, BestGenerator] = {}
    if rows.empty or "variant" not in rows.columns:
        return best
    for variant, group in rows.groupby("variant", sort=False):
        records = group.to_dict("records")
        position = best_generator_position(records, select_by, checks)
        if position is None:
            marked = [
                i
                for i, row in enumerate(records)
                if _row_number(row, "selected") == 1 and checks.flaw(row) is None
            ]
            if not marked:
                continue
            position = marked[0]
        row = records[position]
        best[str(variant)] = BestGenerator(
            variant=str(variant),
            cell=str(row["cell"]),
            folder=level_text(row["folder"]) if "folder" in row else "",
            metric=select_by,
            value=_row_number(row, select_by),
        )
    return best
