"""The columns of a study's ``results.csv``: the contract between the runner, which writes
them, and the findings and the report, which read them. Named here once.

Every row has :data:`KIND` (``generator`` or ``classifier``), :data:`CELL` (the cell id),
:data:`FOLDER` (its folder in the study), :data:`VARIANT` (the preprocessing variant's
name) and one column per preprocessing axis (``size``, ``equalize``...), :data:`SEED` and
:data:`SECONDS`.

Generator rows add :data:`GENERATOR` (the run's name in the spec), :data:`MODEL`,
:data:`GEN_AUGMENT`, :data:`STEPS`, :data:`SELECTED` and the last logged value of every
metric value a run logged (their names and facts: :mod:`cxrlab.metrics.registry`),
measured against the variant's validation images.

Classifier rows add one column per classifier axis (``arch``, ``augment``...),
:data:`SYNTHETIC` (an amount, or its control level ``N oversampled``),
:data:`SYNTHETIC_FROM`, :data:`BEST_EPOCH`, :data:`THRESHOLD`, :data:`VAL_ROC_AUC` (what the
best cell is chosen by) and, for each evaluated split (``test``, ``external``), its image
counts and every metric with its interval: :func:`evaluation_column`.
"""

from __future__ import annotations

KIND = "kind"
GENERATOR_KIND = "generator"
CLASSIFIER_KIND = "classifier"
CELL = "cell"
FOLDER = "folder"
VARIANT = "variant"
SEED = "seed"
SECONDS = "seconds"

GENERATOR = "generator"
MODEL = "model"
GEN_AUGMENT = "gen_augment"
STEPS = "steps"
SELECTED = "selected"

SYNTHETIC = "synthetic"
SYNTHETIC_FROM = "synthetic_from"
BEST_EPOCH = "best_epoch"
THRESHOLD = "threshold"
VAL_ROC_AUC = "val_roc_auc"

#: Splits a classifier cell is evaluated on, once each, after every choice was made.
EVALUATED_SPLITS = ("test", "external")


def evaluation_column(split: str, metric: str, bound: str | None = None) -> str:
    """``test_roc_auc``, ``test_roc_auc_low``, ``external_sensitivity_high``..."""
    return f"{split}_{metric}" + (f"_{bound}" if bound else "")


def evaluation_columns(split: str, evaluation) -> dict:
    """The columns of one :class:`~cxrlab.clf.metrics.Evaluation` of ``split``."""
    values = {
        evaluation_column(split, "n_images"): evaluation.n_images,
        evaluation_column(split, "n_positive"): evaluation.n_positive,
    }
    for name, value in evaluation.metrics.items():
        low, high = evaluation.intervals[name]
        values[evaluation_column(split, name)] = value
        values[evaluation_column(split, name, "low")] = low
        values[evaluation_column(split, name, "high")] = high
    return values
