"""Patient-grouped, label-stratified, seeded splits.

A random image-level split puts one patient's images (or two copies of one
image from different sources) into both train and test and inflates every
number that follows. Here the unit of assignment is a *group*: the connected
component of images linked by sharing a patient or a duplicate group. Groups are
assigned greedily, in a seeded random order within each label stratum, to the
split whose share of that stratum is furthest below its target ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrlab.data.duplicates import UnionFind
from cxrlab.errors import DatasetError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class SplitReport:
    counts: dict[str, dict[str, int]]  # split -> {label: count}
    n_groups: int

    def summary(self) -> str:
        lines = []
        for split, by_label in self.counts.items():
            total = sum(by_label.values())
            parts = ", ".join(f"{label} {n}" for label, n in sorted(by_label.items()))
            lines.append(f"  {split:9s} {total:6d} images ({parts})")
        return "\n".join(lines)


def leakage_groups(manifest: pd.DataFrame) -> np.ndarray:
    """Per row, the id of its group: rows sharing a patient or duplicate group share it."""
    n = len(manifest)
    sets = UnionFind(n)
    for column in ("patient_id", "duplicate_group"):
        first: dict[str, int] = {}
        for i, key in enumerate(manifest[column].tolist()):
            if key == "":
                continue
            if key in first:
                sets.union(first[key], i)
            else:
                first[key] = i
    return np.array([sets.find(i) for i in range(n)])


def assign_splits(
    manifest: pd.DataFrame,
    ratios: tuple[float, ...] = (0.6, 0.2, 0.2),
    *,
    seed: int = 0,
    stratify: str = "covid",
    holdout_source: str | None = None,
) -> pd.Series:
    """Return the split of every row (``train``/``val``/``test``/``external``).

    Args:
        manifest: a dataset manifest (needs ``patient_id``, ``duplicate_group``, ``source``
            and the ``stratify`` column).
        ratios: 2 or 3 non-negative ratios for train, val[, test]; normalised to sum 1.
        seed: the same seed gives the same split.
        stratify: column whose classes keep their proportions in every split.
        holdout_source: every row of this source (and of any group it shares with
            another source) goes to ``external``.
    """
    if len(ratios) not in (2, 3) or min(ratios) < 0 or sum(ratios) <= 0:
        raise DatasetError(f"--ratios must be 2 or 3 non-negative numbers, got {list(ratios)}")
    targets = np.asarray(ratios, dtype=float) / float(sum(ratios))
    names = SPLIT_NAMES[: len(targets)]
    groups = leakage_groups(manifest)
    split = np.array([""] * len(manifest), dtype=object)

    if holdout_source:
        if holdout_source not in set(manifest["source"]):
            raise DatasetError(
                f"--holdout-source {holdout_source!r} is not a source of this dataset "
                f"(sources: {sorted(set(manifest['source']))})"
            )
        held_groups = set(groups[(manifest["source"] == holdout_source).to_numpy()])
        split[np.isin(groups, list(held_groups))] = "external"

    remaining = split == ""
    frame = pd.DataFrame(
        {
            "group": groups[remaining],
            "stratum": manifest.loc[remaining, stratify].astype(str).to_numpy(),
        }
    )
    # A group's stratum is its most common class (ties: the smallest value, deterministic).
    group_stratum = frame.groupby("group")["stratum"].agg(
        lambda s: s.value_counts().sort_index().idxmax()
    )
    group_size = frame.groupby("group").size()
    rng = np.random.default_rng(seed)
    assignment: dict[int, str] = {}
    for stratum in sorted(group_stratum.unique()):
        members = np.array(sorted(group_stratum.index[group_stratum == stratum]))
        members = members[rng.permutation(len(members))]
        total = float(group_size[members].sum())
        filled = np.zeros(len(names))
        for group in members:
            # the split furthest below its target share of this stratum
            deficit = targets * total - filled
            choice = int(np.argmax(deficit))
            assignment[int(group)] = names[choice]
            filled[choice] += group_size[group]
    split[remaining] = [assignment[int(g)] for g in groups[remaining]]
    return pd.Series(split, index=manifest.index, name="split")


def split_report(manifest: pd.DataFrame, column: str = "label") -> SplitReport:
    counts: dict[str, dict[str, int]] = {}
    for split, part in manifest.groupby("split", sort=False):
        counts[str(split)] = {str(k): int(v) for k, v in part[column].value_counts().items()}
    ordered = {s: counts[s] for s in ("train", "val", "test", "external", "") if s in counts}
    return SplitReport(ordered, int(len(set(leakage_groups(manifest)))))
