"""The generator checks: collapsed (mode collapse), memorizes (near-copies of training
images), or not measured; a generator that fails one is never chosen."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

#: A generator whose images are this many times more alike (mean MS-SSIM of generated
#: pairs over that of real pairs) than real ones is collapsed: never the chosen one.
COLLAPSE_MS_SSIM_RATIO = 1.5
#: A generator with a larger share of its images flagged as near-copies of training
#: images (the ``memorization_share`` metric; one that does not copy scores about 0.05
#: by chance) memorizes: never the chosen one.
MEMORIZATION_LIMIT = 0.1


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
