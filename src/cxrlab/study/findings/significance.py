"""The statistics of a comparison: t-intervals and paired t-tests over pairs, and the
joint patient bootstrap of the shared test images."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from cxrlab.study.findings.terms import CONFIDENCE, TOLERANCE


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


#: (cell folder, seed, split) -> that seed's predictions (id, patient_id, covid,
#: probability, threshold), or None where they are not available.
PredictionLoader = Callable[[str, int, str], "pd.DataFrame | None"]
BOOTSTRAP_RESAMPLES = 2000


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
