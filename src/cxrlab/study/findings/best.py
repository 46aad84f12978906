"""The chosen cells: per-cell classifier summaries with intervals, the classifier chosen on
validation, its real-only baseline, and each variant's best generator."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from cxrlab.metrics.registry import value_info
from cxrlab.study.findings.checks import GeneratorChecks, _row_number
from cxrlab.study.findings.pairing import _keyed, rows_of, study_factors
from cxrlab.study.findings.significance import _interval
from cxrlab.study.findings.terms import SELECTION_METRIC, SUMMARY_METRICS, level_text


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
