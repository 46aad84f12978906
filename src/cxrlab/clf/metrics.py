"""Honest numbers: classification metrics with patient-level bootstrap intervals.

Point estimates use scikit-learn's formulas. Intervals come from a cluster
bootstrap: patients (not images) are drawn with replacement, so the several images
of one patient move together and the interval is not made narrower by counting one
patient many times. A resample is the vector of how often each row was drawn; the
confusion counts and a weighted Mann-Whitney AUC of every resample are computed in
one matrix product. Each interval is the 2.5th to 97.5th percentile of the resampled
values (resamples where a metric is undefined, e.g. no negative patient, are skipped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from cxrlab.errors import CxrlabError

#: Metric names, in report order.
METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "roc_auc")
CONFIDENCE = 0.95
#: Above this many positive x negative pairs, bootstrap AUCs go one resample at a time.
PAIR_MATRIX_LIMIT = 4_000_000
#: Resamples are processed in chunks of at most this many (resample, row) weights.
RESAMPLE_CELLS = 4_000_000


def _check(covid: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    covid = np.asarray(covid).astype(np.int64)
    probability = np.asarray(probability, dtype=np.float64)
    if covid.shape != probability.shape or covid.ndim != 1 or len(covid) == 0:
        raise CxrlabError(
            f"labels {covid.shape} and probabilities {probability.shape} must be equal-length vectors"
        )
    if not np.isin(covid, (0, 1)).all():
        raise CxrlabError("labels must be 0 (not COVID-19) or 1 (COVID-19)")
    return covid, probability


def _thresholds(threshold: float | np.ndarray, n: int) -> float | np.ndarray:
    """A scalar threshold, or (N,) thresholds: one per row (pooled cross-validation
    folds, each at the threshold chosen on its own validation)."""
    if np.ndim(threshold) == 0:
        return float(threshold)
    threshold = np.asarray(threshold, dtype=np.float64)
    if threshold.shape != (n,):
        raise CxrlabError(
            f"{threshold.shape} thresholds for {n} predictions: give one or one per row"
        )
    return threshold


def binary_metrics(
    covid: np.ndarray, probability: np.ndarray, threshold: float | np.ndarray
) -> dict[str, float]:
    """Accuracy, sensitivity (COVID recall), specificity, PPV, NPV, F1 and ROC-AUC.

    Args:
        covid: (N,) 0/1 true labels.
        probability: (N,) predicted probability of COVID-19.
        threshold: predicted positive when ``probability >= threshold``; a scalar or
            (N,) per-row thresholds.

    Returns:
        name -> value; NaN where undefined (ROC-AUC with one class, PPV with no
        positive prediction, ...).
    """
    covid, probability = _check(covid, probability)
    predicted = (probability >= _thresholds(threshold, len(covid))).astype(np.int64)
    nan = np.nan
    both_classes = len(np.unique(covid)) == 2
    return {
        "accuracy": float(accuracy_score(covid, predicted)),
        "sensitivity": float(recall_score(covid, predicted, pos_label=1, zero_division=nan)),
        "specificity": float(recall_score(covid, predicted, pos_label=0, zero_division=nan)),
        "ppv": float(precision_score(covid, predicted, pos_label=1, zero_division=nan)),
        "npv": float(precision_score(covid, predicted, pos_label=0, zero_division=nan)),
        "f1": float(f1_score(covid, predicted, pos_label=1, zero_division=nan)),
        "roc_auc": float(roc_auc_score(covid, probability)) if both_classes else nan,
    }


def youden_threshold(covid: np.ndarray, probability: np.ndarray) -> float:
    """The threshold maximising Youden's J = sensitivity + specificity - 1.

    Among equally good thresholds the middle one is taken. With a single class the
    result is 0.5.
    """
    covid, probability = _check(covid, probability)
    if len(np.unique(covid)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(covid, probability)
    finite = np.isfinite(thresholds)
    j = (tpr - fpr)[finite]
    best = np.flatnonzero(np.isclose(j, j.max()))
    return float(thresholds[finite][best[len(best) // 2]])


def patient_resample_weights(
    patients: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_resamples, N) row multiplicities of a patient-level bootstrap.

    Each resample draws as many patients as there are, with replacement; a row's
    weight is how often its patient was drawn, so one patient's rows share a weight.
    """
    codes = pd.factorize(pd.Series(patients).astype(str))[0]
    n_patients = int(codes.max()) + 1
    drawn = rng.integers(0, n_patients, size=(n_resamples, n_patients))
    flat = (np.arange(n_resamples)[:, None] * n_patients + drawn).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n_patients).reshape(n_resamples, n_patients)
    return counts[:, codes].astype(np.float64)


def weighted_auc(covid: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of every row of ``weights`` (R, N): the weighted Mann-Whitney statistic.

    Equal to ``roc_auc_score(covid, score, sample_weight=w)`` for each row ``w``; NaN
    where a resample has no positive or no negative weight.
    """
    covid, score = _check(covid, score)
    weights = np.atleast_2d(weights)
    positive, negative = covid == 1, covid == 0
    w_pos, w_neg = weights[:, positive], weights[:, negative]
    denominator = w_pos.sum(1) * w_neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if positive.sum() * negative.sum() <= PAIR_MATRIX_LIMIT:
            s_pos, s_neg = score[positive][:, None], score[negative][None, :]
            pairs = (s_pos > s_neg) + 0.5 * (s_pos == s_neg)  # (P, Q)
            return ((w_pos @ pairs) * w_neg).sum(1) / denominator
        out = np.full(len(weights), np.nan)
        for index, row in enumerate(weights):
            if denominator[index] > 0:
                out[index] = roc_auc_score(covid, score, sample_weight=row)
        return out


def weighted_metrics(
    covid: np.ndarray,
    probability: np.ndarray,
    threshold: float | np.ndarray,
    weights: np.ndarray,
) -> dict[str, np.ndarray]:
    """Every metric of :func:`binary_metrics` for each row of ``weights`` (R, N) at once.

    Row r counts image i ``weights[r, i]`` times (a bootstrap resample); with
    integer weights the values equal scikit-learn's with ``sample_weight``. NaN
    where undefined. ``threshold``: a scalar or (N,) per-row thresholds.
    """
    covid, probability = _check(covid, probability)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    predicted = probability >= _thresholds(threshold, len(covid))
    positive = covid == 1
    cells = np.stack(
        [positive & predicted, ~positive & predicted, ~positive & ~predicted, positive & ~predicted]
    ).T.astype(np.float64)  # (N, 4): TP, FP, TN, FN indicators
    tp, fp, tn, fn = (weights @ cells).T
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {
            "accuracy": (tp + tn) / (tp + fp + tn + fn),
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "f1": 2 * tp / (2 * tp + fp + fn),
        }
    values["roc_auc"] = weighted_auc(covid, probability, weights)
    return values


def bootstrap_intervals(
    covid: np.ndarray,
    probability: np.ndarray,
    threshold: float | np.ndarray,
    patients: np.ndarray,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every metric of :func:`binary_metrics`, resampling patients.

    Args:
        covid: (N,) 0/1 labels.
        probability: (N,) predicted probabilities.
        threshold: the decision threshold (fixed: chosen on validation, not refitted);
            a scalar or (N,) per-row thresholds.
        patients: (N,) patient id per row.
        n_resamples: bootstrap resamples.
        seed: the same seed gives the same intervals.
        confidence: coverage of the interval.

    Returns:
        name -> (low, high); (nan, nan) where the metric is undefined in every resample.
    """
    covid, probability = _check(covid, probability)
    if len(patients) != len(covid):
        raise CxrlabError(f"{len(patients)} patient ids for {len(covid)} predictions")
    rng = np.random.default_rng(seed)
    chunk = max(1, RESAMPLE_CELLS // len(covid))  # bounds the (resamples, N) weight matrix
    chunks = []
    for start in range(0, n_resamples, chunk):
        weights = patient_resample_weights(
            np.asarray(patients), min(chunk, n_resamples - start), rng
        )
        chunks.append(weighted_metrics(covid, probability, threshold, weights))
    values = {name: np.concatenate([c[name] for c in chunks]) for name in METRICS}
    return {name: percentile_interval(values[name], confidence) for name in METRICS}


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of the finite resampled ``values``;
    (nan, nan) when none is finite (the metric was undefined in every resample)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return (float(low), float(high))


def paired_bootstrap(
    sets: list[tuple[np.ndarray, np.ndarray, float | np.ndarray, np.ndarray]],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Resampled metrics of several prediction sets that share patients, drawn together.

    Each resample draws patients (with replacement) from the union of the sets'
    patients; a patient's rows in *every* set take the number of times it was drawn.
    The difference of two sets' values in one resample (in-site minus out-of-site AUC,
    where one patient can be in both) is then a draw of the difference's bootstrap
    distribution, keeping the correlation the shared patients bring.

    Args:
        sets: (covid (N_k,), probability (N_k,), threshold (scalar or (N_k,)),
            patients (N_k,)) per set.
        n_resamples: bootstrap resamples.
        seed: the same seed gives the same resamples.

    Returns:
        Per set, name -> (n_resamples,) values of every metric of :func:`binary_metrics`
        (NaN where undefined in a resample).
    """
    checked = [
        (*_check(covid, probability), threshold) for covid, probability, threshold, _ in sets
    ]
    patients = np.concatenate([np.asarray(s[3]).astype(str) for s in sets])
    if len(patients) != sum(len(c[0]) for c in checked):
        raise CxrlabError("every prediction set needs one patient id per prediction")
    bounds = np.cumsum([0] + [len(c[0]) for c in checked])
    rng = np.random.default_rng(seed)
    chunk = max(1, RESAMPLE_CELLS // len(patients))  # bounds the (resamples, N) weight matrix
    chunks: list[list[dict[str, np.ndarray]]] = []
    for start in range(0, n_resamples, chunk):
        weights = patient_resample_weights(patients, min(chunk, n_resamples - start), rng)
        chunks.append(
            [
                weighted_metrics(covid, probability, threshold, weights[:, low:high])
                for (covid, probability, threshold), low, high in zip(
                    checked, bounds[:-1], bounds[1:], strict=True
                )
            ]
        )
    return [
        {name: np.concatenate([c[index][name] for c in chunks]) for name in METRICS}
        for index in range(len(sets))
    ]


@dataclass
class Evaluation:
    """Metrics of one model on one set of images, with intervals.

    Attributes:
        split: what was evaluated (``val``, ``test``, ``external``, ``all``, or a
            probe such as ``test-lungs-hidden``).
        threshold: the decision threshold (chosen on validation).
        metrics: name -> point estimate.
        intervals: name -> (low, high), 95% patient bootstrap.
        confusion: [[TN, FP], [FN, TP]].
        n_images / n_patients / n_positive: what the numbers rest on.
    """

    split: str
    threshold: float
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    confusion: list[list[int]]
    n_images: int
    n_patients: int
    n_positive: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "split": self.split,
            "threshold": self.threshold,
            "n_images": self.n_images,
            "n_patients": self.n_patients,
            "n_positive": self.n_positive,
            "confusion_matrix": {
                "labels": ["not COVID-19", "COVID-19"],
                "rows_true_cols_predicted": self.confusion,
            },
            "metrics": {
                name: {
                    "value": _json_number(self.metrics[name]),
                    "low": _json_number(self.intervals[name][0]),
                    "high": _json_number(self.intervals[name][1]),
                }
                for name in METRICS
            },
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, values: dict) -> Evaluation:
        """The inverse of :meth:`as_dict` (undefined numbers come back as NaN)."""

        def number(value: float | None) -> float:
            return math.nan if value is None else float(value)

        metrics = values["metrics"]
        return cls(
            split=values["split"],
            threshold=float(values["threshold"]),
            metrics={name: number(metrics[name]["value"]) for name in METRICS},
            intervals={
                name: (number(metrics[name]["low"]), number(metrics[name]["high"]))
                for name in METRICS
            },
            confusion=values["confusion_matrix"]["rows_true_cols_predicted"],
            n_images=int(values["n_images"]),
            n_patients=int(values["n_patients"]),
            n_positive=int(values["n_positive"]),
            notes=list(values.get("notes", [])),
        )

    def line(self, name: str) -> str:
        """``0.83 [0.71, 0.92]``."""
        value, (low, high) = self.metrics[name], self.intervals[name]
        return f"{_fmt(value)} [{_fmt(low)}, {_fmt(high)}]"


def _json_number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def evaluate_predictions(
    predictions: pd.DataFrame,
    threshold: float,
    *,
    split: str,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Evaluation:
    """An :class:`Evaluation` of a predictions table (columns covid, probability, patient_id)."""
    covid = predictions["covid"].to_numpy().astype(np.int64)
    probability = predictions["probability"].to_numpy().astype(np.float64)
    patients = predictions["patient_id"].astype(str).to_numpy()
    metrics = binary_metrics(covid, probability, threshold)
    intervals = bootstrap_intervals(
        covid, probability, threshold, patients, n_resamples=n_resamples, seed=seed
    )
    predicted = (probability >= threshold).astype(np.int64)
    confusion = confusion_matrix(covid, predicted, labels=[0, 1]).tolist()
    notes = []
    if len(np.unique(covid)) < 2:
        notes.append(
            f"only one class in {split}: ROC-AUC and one of sensitivity/specificity are undefined"
        )
    return Evaluation(
        split=split,
        threshold=float(threshold),
        metrics=metrics,
        intervals=intervals,
        confusion=confusion,
        n_images=len(covid),
        n_patients=int(pd.Series(patients).nunique()),
        n_positive=int(covid.sum()),
        notes=notes,
    )


# ------------------------------------------------------------------ several seeds
def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return float(np.mean(finite)), sd


def seeds_table(evaluations: dict[int, Evaluation]) -> str:
    """A text table: one row per metric, each seed's value [95% CI], then mean ± sd."""
    seeds = list(evaluations)
    header = ["metric", *[f"seed {s}" for s in seeds], "mean ± sd"]
    rows = [header]
    for name in METRICS:
        values = [evaluations[s].metrics[name] for s in seeds]
        mean, sd = mean_sd(values)
        rows.append(
            [name, *[evaluations[s].line(name) for s in seeds], f"{_fmt(mean)} ± {_fmt(sd)}"]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )


def summarise_seeds(evaluations: dict[int, Evaluation]) -> dict:
    """name -> {"mean", "sd", "per_seed"} over seeds."""
    summary = {}
    for name in METRICS:
        values = [evaluations[s].metrics[name] for s in evaluations]
        mean, sd = mean_sd(values)
        summary[name] = {
            "mean": _json_number(mean),
            "sd": _json_number(sd),
            "per_seed": {str(s): _json_number(v) for s, v in zip(evaluations, values, strict=True)},
        }
    return summary
