"""One view vocabulary for every source: each written view maps to one view class.

Public collections spell the same projection many ways (ieee8023 says ``AP erect`` and
``AP semi erect`` beside ``AP``; Figure1 leaves most frontal views blank). Matching
spellings exactly threw frontal images away, so every source maps its raw value to one
of :data:`VIEW_CLASSES` with :func:`view_class`, and ``--views`` names classes:

* ``PA``: PA, posteroanterior, PA erect/upright/standing...
* ``AP``: AP, anteroposterior, AP erect, AP semi erect, AP upright, AP sitting,
  AP portable/mobile...
* ``AP Supine``: AP supine, AP lying, AP horizontal (PadChest), supine...
* ``lateral``: L, LL, RL, lat, lateral, left/right lateral...
* ``unknown``: blank, ``?``, ``unknown``, ``n/a``: the metadata does not say.
* ``other``: anything else (Axial, Coronal, AP/PA, frontal...), never guessed.

Case, spacing and punctuation do not matter (``ap-semi-erect`` is ``AP``). A
``--views`` value is itself mapped, so ``--views "AP erect"`` keeps every AP
image, and ``--views L`` keeps laterals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cxrlab.errors import DatasetError

PA, AP, AP_SUPINE, LATERAL, UNKNOWN, OTHER = "PA", "AP", "AP Supine", "lateral", "unknown", "other"

#: Every view class, in the order summaries list them.
VIEW_CLASSES = (PA, AP, AP_SUPINE, LATERAL, UNKNOWN, OTHER)

#: The frontal classes (what a frontal CXR study uses).
FRONTAL = (PA, AP, AP_SUPINE)

#: Default for sources that also hold laterals and images of unstated view (ieee8023).
DEFAULT_VIEWS = FRONTAL

#: Default for sources whose images are all frontal and whose blank views are frontal
#: images (Figure1, Actualmed: their READMEs and images show no laterals).
DEFAULT_VIEWS_FRONTAL_SOURCE = (*FRONTAL, UNKNOWN)

# Words that qualify a projection without changing its class.
_MODIFIERS = {
    "view", "chest", "cxr", "xray", "x", "ray", "frontal", "erect", "upright", "standing",
    "semi", "semierect", "semiupright", "sitting", "portable", "mobile", "bedside", "projection",
}  # fmt: skip
_SUPINE_WORDS = {"supine", "lying", "horizontal", "recumbent"}
_LATERAL_WORDS = {"l", "ll", "rl", "lat", "lateral"}
_SIDE_WORDS = {"left", "right", "decubitus"}
_UNKNOWN_TEXTS = {"", "unknown", "n a", "na", "none", "not stated", "unspecified", "nan"}


def _words(raw: str) -> list[str]:
    """Lower-case words of ``raw``: punctuation and repeated spaces become one space."""
    text = re.sub(r"[^0-9a-z]+", " ", raw.lower()).strip()
    text = text.replace("antero posterior", "anteroposterior")
    text = text.replace("postero anterior", "posteroanterior")
    return text.split()


def view_class(raw: str) -> str:
    """The view class (one of :data:`VIEW_CLASSES`) of a view as a source writes it."""
    words = _words(str(raw))
    if " ".join(words) in _UNKNOWN_TEXTS:
        return UNKNOWN
    names = set(words)
    projections = names - _MODIFIERS - _SUPINE_WORDS
    if projections & _LATERAL_WORDS and projections <= _LATERAL_WORDS | _SIDE_WORDS:
        return LATERAL
    if projections <= {"ap", "anteroposterior"} and projections:
        return AP_SUPINE if names & _SUPINE_WORDS else AP
    if not projections and names & _SUPINE_WORDS:  # "supine" alone: a supine film is AP
        return AP_SUPINE
    if projections <= {"pa", "posteroanterior"} and projections and not names & _SUPINE_WORDS:
        return PA
    return OTHER


def parse_views(values: Iterable[str] | str, option: str = "--views") -> tuple[str, ...]:
    """The view classes that ``--views`` values name, in :data:`VIEW_CLASSES` order.

    Args:
        values: class names or any spelling :func:`view_class` knows, as a list or a
            comma-separated string (``"PA,AP,unknown"``).
        option: how the error names the setting.

    Raises:
        DatasetError: for an empty list, or a value that names no view class.
    """
    if isinstance(values, str):
        values = values.split(",")
    wanted = set()
    for value in (str(v).strip() for v in values):
        if not value:
            continue
        named = OTHER if value.lower() == OTHER else view_class(value)
        if named == OTHER and value.lower() != OTHER:
            raise DatasetError(
                f"{option} {value!r} names no view class; choose from {', '.join(VIEW_CLASSES)} "
                "(e.g. --views 'PA,AP,AP Supine,unknown')"
            )
        wanted.add(named)
    if not wanted:
        raise DatasetError(f"{option} is empty; choose from {', '.join(VIEW_CLASSES)}")
    return tuple(c for c in VIEW_CLASSES if c in wanted)


def view_counts(views: Iterable[str]) -> dict[str, int]:
    """Images per view class, in :data:`VIEW_CLASSES` order, classes with none left out."""
    counts: dict[str, int] = {}
    for view in views:
        counts[view] = counts.get(view, 0) + 1
    ordered = [c for c in VIEW_CLASSES if c in counts] + sorted(set(counts) - set(VIEW_CLASSES))
    return {c: counts[c] for c in ordered}
