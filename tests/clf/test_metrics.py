import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from cxrlab.clf.metrics import (
    METRICS,
    Evaluation,
    binary_metrics,
    bootstrap_intervals,
    evaluate_predictions,
    mean_sd,
    patient_resample_weights,
    weighted_auc,
    weighted_metrics,
    youden_threshold,
)


def constructed_predictions():
    """10 images, threshold 0.5: TP 4, FN 1, TN 3, FP 2, and a tie across classes."""
    covid = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    probability = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.6, 0.55, 0.4, 0.2, 0.1])
    return covid, probability


def sklearn_metrics(covid, probability, threshold, sample_weight=None):
    predicted = (probability >= threshold).astype(int)
    w = {"sample_weight": sample_weight}
    return {
        "accuracy": accuracy_score(covid, predicted, **w),
        "sensitivity": recall_score(covid, predicted, pos_label=1, **w),
        "specificity": recall_score(covid, predicted, pos_label=0, **w),
        "ppv": precision_score(covid, predicted, pos_label=1, **w),
        "npv": precision_score(covid, predicted, pos_label=0, **w),
        "f1": f1_score(covid, predicted, **w),
        "roc_auc": roc_auc_score(covid, probability, **w),
    }


def test_metrics_equal_hand_counts_and_scikit_learn():
    covid, probability = constructed_predictions()
    metrics = binary_metrics(covid, probability, 0.5)
    by_hand = {
        "accuracy": 7 / 10,
        "sensitivity": 4 / 5,
        "specificity": 3 / 5,
        "ppv": 4 / 6,
        "npv": 3 / 4,
        "f1": 8 / 11,
        # (positive, negative) pairs ranked right: 0.9, 0.8, 0.7 beat all 5 negatives;
        # 0.6 beats 4 and ties 1; 0.3 beats 2 -> (15 + 4.5 + 2) / 25
        "roc_auc": 21.5 / 25,
    }
    reference = sklearn_metrics(covid, probability, 0.5)
    for name in METRICS:
        assert metrics[name] == pytest.approx(by_hand[name]), name
        assert metrics[name] == pytest.approx(reference[name]), name


def test_vectorised_bootstrap_metrics_equal_scikit_learn_with_weights():
    rng = np.random.default_rng(1)
    covid = rng.integers(0, 2, 40)
    probability = np.round(rng.random(40), 1)  # many ties
    weights = rng.integers(0, 4, (5, 40)).astype(float)
    values = weighted_metrics(covid, probability, 0.45, weights)
    for r, row in enumerate(weights):
        reference = sklearn_metrics(covid, probability, 0.45, sample_weight=row)
        for name in METRICS:
            assert values[name][r] == pytest.approx(reference[name]), (name, r)
    unit = weighted_metrics(covid, probability, 0.45, np.ones(40))
    point = binary_metrics(covid, probability, 0.45)
    assert all(unit[name][0] == pytest.approx(point[name]) for name in METRICS)


def test_weighted_auc_falls_back_to_scikit_learn_for_large_sets(monkeypatch):
    import cxrlab.clf.metrics as metrics

    rng = np.random.default_rng(2)
    covid, score = rng.integers(0, 2, 30), rng.random(30)
    weights = rng.integers(0, 3, (3, 30)).astype(float)
    fast = weighted_auc(covid, score, weights)
    monkeypatch.setattr(metrics, "PAIR_MATRIX_LIMIT", 0)
    assert np.allclose(weighted_auc(covid, score, weights), fast)


def test_undefined_metrics_are_nan_not_errors():
    metrics = binary_metrics(np.array([1, 1, 1]), np.array([0.2, 0.7, 0.9]), 0.5)
    assert math.isnan(metrics["roc_auc"]) and math.isnan(metrics["specificity"])
    assert metrics["sensitivity"] == pytest.approx(2 / 3)


def test_youden_threshold_maximises_sensitivity_plus_specificity():
    rng = np.random.default_rng(3)
    covid = rng.integers(0, 2, 60)
    probability = np.clip(0.3 * covid + rng.normal(0.4, 0.2, 60), 0, 1)
    chosen = youden_threshold(covid, probability)

    def j(t):
        m = binary_metrics(covid, probability, t)
        return m["sensitivity"] + m["specificity"] - 1

    assert j(chosen) == pytest.approx(max(j(t) for t in np.unique(probability)))
    assert youden_threshold(np.ones(4, dtype=int), np.random.random(4)) == 0.5


def test_bootstrap_resamples_patients_not_images():
    patients = np.array(["a", "a", "a", "b", "c", "c"])
    weights = patient_resample_weights(patients, 200, np.random.default_rng(0))
    assert weights.shape == (200, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 1] == weights[:, 2]).all()
    assert (weights[:, 4] == weights[:, 5]).all()
    # three patients drawn each time: the counts over patients sum to 3
    assert (weights[:, [0, 3, 4]].sum(1) == 3).all()


def test_clustered_images_widen_the_interval():
    """Ten identical images per patient carry one patient's information, not ten."""
    rng = np.random.default_rng(4)
    covid = np.repeat(rng.integers(0, 2, 20), 10)
    probability = np.repeat(rng.random(20), 10) * 0.5 + covid * 0.3
    by_patient = np.repeat(np.arange(20), 10)
    clustered = bootstrap_intervals(covid, probability, 0.5, by_patient, n_resamples=500)
    naive = bootstrap_intervals(covid, probability, 0.5, np.arange(200), n_resamples=500)
    width = {k: v[1] - v[0] for k, v in clustered.items()}
    naive_width = {k: v[1] - v[0] for k, v in naive.items()}
    assert width["roc_auc"] > 2 * naive_width["roc_auc"]
    assert width["accuracy"] > 2 * naive_width["accuracy"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_interval_contains_the_point_estimate(seed):
    rng = np.random.default_rng(seed)
    n = 80
    covid = rng.integers(0, 2, n)
    probability = np.clip(0.35 * covid + rng.normal(0.35, 0.2, n), 0, 1)
    patients = rng.integers(0, 50, n).astype(str)
    point = binary_metrics(covid, probability, 0.5)
    intervals = bootstrap_intervals(covid, probability, 0.5, patients, n_resamples=1000, seed=seed)
    for name in METRICS:
        low, high = intervals[name]
        assert low <= point[name] <= high, (name, low, point[name], high)
        assert high - low > 0.01, name  # an interval, not a point
    again = bootstrap_intervals(covid, probability, 0.5, patients, n_resamples=1000, seed=seed)
    assert again == intervals  # seeded


def test_evaluation_round_trips_through_json_and_formats_lines():
    covid, probability = constructed_predictions()
    frame = pd.DataFrame(
        {
            "covid": covid,
            "probability": probability,
            "patient_id": [f"p{i // 2}" for i in range(10)],
        }
    )
    evaluation = evaluate_predictions(frame, 0.5, split="test", n_resamples=200)
    assert evaluation.confusion == [[3, 2], [1, 4]]
    assert evaluation.n_patients == 5 and evaluation.n_positive == 5
    again = Evaluation.from_dict(evaluation.as_dict())
    assert again.metrics == pytest.approx(evaluation.metrics)
    assert evaluation.line("sensitivity").startswith("0.800 [")


def test_mean_sd_uses_the_sample_sd_and_skips_undefined_values():
    assert mean_sd([0.6, 0.8, math.nan]) == pytest.approx((0.7, math.sqrt(0.02)))
    assert mean_sd([0.7]) == (0.7, 0.0)
