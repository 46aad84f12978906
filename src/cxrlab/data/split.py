"""Patient-grouped, label-stratified, seeded splits.

A random image-level split puts one patient's images (or two copies of one
image from different sources) into both train and test and inflates every
number that follows. Here the unit of assignment is a *group*: the connected
component of images linked by sharing a patient (including the patients of
rejected rows that named the same image, ``linked_patients``) or a duplicate
group. Within each label stratum, when the stratum has at least one group per
split, every split first gets one group (so no split lacks a class): the smallest
groups, the largest of them to the split with the largest ratio (so 3 patients
with 2, 3 and 40 images give train the 40, not test). Then the groups are assigned
greedily, in a seeded random order, to the split whose share of that stratum is
furthest below its target ratio. When a class has fewer groups than there are
splits, the split still happens and says which split lacks it; when a split's
share of a class ends up far from its ratio (under half or over twice it), a
warning says so. A held-out source or site (``--holdout-source``,
``--holdout-site``) goes to ``external`` first, with every group it shares, so a
patient seen at a held-out site and another one is external whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrlab.data.duplicates import UnionFind
from cxrlab.data.manifest import LINKED_PATIENTS, SITE, UNKNOWN_SITE
from cxrlab.errors import DatasetError

SPLIT_NAMES = ("train", "val", "test")

#: The manifest column naming each row's site (its value ``UNKNOWN_SITE`` when not known).
SITE_COLUMN = SITE

#: How far from 1 the ratios' sum may be.
RATIO_TOLERANCE = 1e-6


@dataclass
class SplitReport:
    counts: dict[str, dict[str, int]]  # split -> {label: count}
    n_groups: int
    warnings: list[str] = field(default_factory=list)
    #: images in ``external`` from sources other than the held-out one, by source
    external_followers: dict[str, int] = field(default_factory=dict)
    #: images in ``external`` from sites other than the held-out ones, by site
    external_site_followers: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        for split, by_label in self.counts.items():
            total = sum(by_label.values())
            parts = ", ".join(f"{label} {n}" for label, n in sorted(by_label.items()))
            lines.append(f"  {split:9s} {total:6d} images ({parts})")
        return "\n".join(lines)


def parse_ratios(text: str | list[float] | tuple[float, ...]) -> tuple[float, ...]:
    """``"0.6,0.2,0.2"``, ``"0.6 0.2 0.2"`` or a sequence -> 2 or 3 ratios summing to 1.

    Raises:
        DatasetError: naming ``--ratios`` for anything else (no silent normalising).
    """
    if isinstance(text, str):
        parts = [p for p in text.replace(",", " ").split() if p]
        try:
            ratios = tuple(float(p) for p in parts)
        except ValueError:
            raise DatasetError(
                f"--ratios {text!r}: give 2 or 3 numbers, e.g. --ratios 0.6 0.2 0.2 "
                "or --ratios 0.6,0.2,0.2"
            ) from None
    else:
        ratios = tuple(float(r) for r in text)
    if len(ratios) not in (2, 3) or min(ratios, default=-1) < 0:
        raise DatasetError(
            f"--ratios must be 2 or 3 non-negative numbers (train, val[, test]), got {list(ratios)}"
        )
    if abs(sum(ratios) - 1.0) > RATIO_TOLERANCE:
        raise DatasetError(
            f"--ratios {list(ratios)} sum to {sum(ratios):g}, not 1: give shares that add "
            "up to 1, e.g. --ratios 0.6 0.2 0.2"
        )
    return ratios


def leakage_groups(manifest: pd.DataFrame) -> np.ndarray:
    """Per row, the id of its group: rows sharing a patient (its own or a linked one) or
    a duplicate group share it."""
    n = len(manifest)
    sets = UnionFind(n)
    linked = manifest[LINKED_PATIENTS].tolist() if LINKED_PATIENTS in manifest.columns else [""] * n
    keys_of_row = [
        [f"p:{patient}"] + [f"p:{p}" for p in str(more).split(";") if p]
        for patient, more in zip(manifest["patient_id"].tolist(), linked, strict=True)
    ]
    for i, group in enumerate(manifest["duplicate_group"].tolist()):
        if group != "":
            keys_of_row[i].append(f"d:{group}")
    first: dict[str, int] = {}
    for i, keys in enumerate(keys_of_row):
        for key in keys:
            if key == "p:":
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
    holdout_site: str | Sequence[str] | None = None,
) -> pd.Series:
    """Return the split of every row (``train``/``val``/``test``/``external``).

    See :func:`plan_splits`, which also says which split lacks a class.
    """
    split, _ = plan_splits(
        manifest,
        ratios,
        seed=seed,
        stratify=stratify,
        holdout_source=holdout_source,
        holdout_site=holdout_site,
    )
    return split


def site_names(value: str | Sequence[str] | None) -> list[str]:
    """``"A,B"``, ``["A", "B"]`` or None -> the site names, stripped, in order, once each."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


def held_out_site_rows(manifest: pd.DataFrame, holdout_site: str | Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows whose ``site`` is one of ``holdout_site``.

    Raises:
        DatasetError: naming ``--holdout-site`` when the manifest has no ``site`` column,
            a name is not one of its sites, or a name is ``unknown``.
    """
    wanted = site_names(holdout_site)
    if SITE_COLUMN not in manifest.columns:
        raise DatasetError(
            "--holdout-site: this dataset's manifest.csv has no 'site' column (it was "
            "imported before cxrlab recorded sites); import it again with this cxrlab "
            "(`cxrlab data import ... --force`), then split"
        )
    sites = manifest[SITE_COLUMN].astype(str)
    known = sorted(set(sites) - {UNKNOWN_SITE})
    if UNKNOWN_SITE in wanted:
        raise DatasetError(
            f"--holdout-site {UNKNOWN_SITE}: rows whose site is unknown are not one site; "
            f"hold out named sites (this dataset's sites: {', '.join(known) or 'none known'})"
        )
    if not known:  # a manifest from before sites were recorded, its column filled in
        raise DatasetError(
            "--holdout-site: this dataset records no site (every row's site is unknown); "
            "import it again with this cxrlab (`cxrlab data import ... --force`), which "
            "records each source's sites, then split"
        )
    missing = [name for name in wanted if name not in set(known)]
    if missing or not wanted:
        what = f"{','.join(missing)}: not a site of this dataset" if missing else ": no site named"
        raise DatasetError(f"--holdout-site {what} (its sites: {', '.join(known)})")
    return sites.isin(wanted).to_numpy()


def plan_splits(
    manifest: pd.DataFrame,
    ratios: tuple[float, ...] = (0.6, 0.2, 0.2),
    *,
    seed: int = 0,
    stratify: str = "covid",
    holdout_source: str | None = None,
    holdout_site: str | Sequence[str] | None = None,
) -> tuple[pd.Series, list[str]]:
    """The split of every row, and warnings naming any split that lacks a class or whose
    share of a class is far from its ratio.

    Args:
        manifest: a dataset manifest (needs ``patient_id``, ``duplicate_group``, ``source``
            and the ``stratify`` column).
        ratios: 2 or 3 non-negative ratios for train, val[, test], summing to 1.
        seed: the same seed gives the same split.
        stratify: column whose classes keep their proportions in every split.
        holdout_source: every row of this source (and of any group it shares with
            another source) goes to ``external``.
        holdout_site: a site name, comma-separated names or a list: every row whose
            ``site`` is one of them goes to ``external``, with every row of its patient or
            duplicate group (a patient seen at two sites goes external whole).

    Raises:
        DatasetError: for bad ratios, an unknown source or site, or ``holdout_site`` on a
            manifest without a ``site`` column.
    """
    targets = np.asarray(parse_ratios(ratios), dtype=float)
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
    if holdout_site is not None:
        held_groups = set(groups[held_out_site_rows(manifest, holdout_site)])
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
    used = [i for i, target in enumerate(targets) if target > 0]
    warnings: list[str] = []
    for stratum in sorted(group_stratum.unique()):
        members = np.array(sorted(group_stratum.index[group_stratum == stratum]))
        members = members[rng.permutation(len(members))]
        total = float(group_size[members].sum())
        filled = np.zeros(len(names))
        # one group for each split first: the smallest groups (to stay near the ratios),
        # the largest of them to the split with the largest target (train before val
        # before test on ties), so a big group never lands in a small split by default
        sizes = group_size[members].to_numpy()
        seeds = members[np.argsort(sizes, kind="stable")[: len(used)]][::-1]
        by_target = sorted(used, key=lambda i: -targets[i])
        for choice, group in zip(by_target, seeds, strict=False):
            assignment[int(group)] = names[choice]
            filled[choice] += group_size[group]
        if len(members) < len(used):
            lacking = [names[i] for i in by_target[len(members) :]]
            warnings.append(
                f"{stratify}={stratum} has only {len(members)} patient/duplicate group(s) for "
                f"{len(used)} splits: {', '.join(lacking)} get(s) none"
            )
        for group in members:
            if int(group) in assignment:
                continue
            # the split furthest below its target share of this stratum
            deficit = targets * total - filled
            choice = int(np.argmax(deficit))
            assignment[int(group)] = names[choice]
            filled[choice] += group_size[group]
        if len(members) >= len(used):
            warnings.extend(_share_warnings(f"{stratify}={stratum}", filled, targets, names, sizes))
    split[remaining] = [assignment[int(g)] for g in groups[remaining]]
    return pd.Series(split, index=manifest.index, name="split"), warnings


#: A split's share of a class is "far" from its ratio below ratio / FAR_FACTOR or above
#: ratio * FAR_FACTOR (3 equal groups for 0.6/0.2/0.2, a third each, are not far).
FAR_FACTOR = 2.0


def _share_warnings(
    stratum: str, filled: np.ndarray, targets: np.ndarray, names: tuple[str, ...], sizes
) -> list[str]:
    """A warning naming every split whose share of ``stratum``'s images is far from its
    ratio (groups too few or too uneven to split near the ratios), or none."""
    total = float(filled.sum())
    if total == 0:
        return []
    shares = filled / total
    far = [
        f"{names[i]} {shares[i]:.0%} (ratio {target:.0%})"
        for i, target in enumerate(targets)
        if target > 0 and not target / FAR_FACTOR <= shares[i] <= target * FAR_FACTOR
    ]
    if not far:
        return []
    return [
        f"{stratum}: its images are split far from the ratios: {', '.join(far)}; its "
        f"{len(sizes)} patient/duplicate groups hold {int(min(sizes))} to {int(max(sizes))} "
        "images, too few or too uneven to split closer (add data, or read its metrics with "
        "this in mind)"
    ]


def split_report(manifest: pd.DataFrame, column: str = "label") -> SplitReport:
    counts: dict[str, dict[str, int]] = {}
    for split, part in manifest.groupby("split", sort=False):
        counts[str(split)] = {str(k): int(v) for k, v in part[column].value_counts().items()}
    ordered = {s: counts[s] for s in ("train", "val", "test", "external", "") if s in counts}
    return SplitReport(ordered, int(len(set(leakage_groups(manifest)))))
