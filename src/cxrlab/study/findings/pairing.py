"""Which rows are compared: the factors of a study, their levels, and pairs of rows that
differ in one factor only (same other settings, same seed)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cxrlab.study.findings.terms import DEFAULT_AXES, level_text


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
