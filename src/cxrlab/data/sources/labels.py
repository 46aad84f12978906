"""Harmonised labels: every source maps its own vocabulary onto these."""

from __future__ import annotations

COVID = "covid"
NORMAL = "normal"
PNEUMONIA = "pneumonia"
OTHER = "other"
NEGATIVE = "negative"  # binary sources (COVIDx 8B/9A): not COVID-19, finding unknown

#: Findings that mean "no label" in the ieee8023 collection.
UNKNOWN_FINDINGS = {"", "todo", "unknown", "nan"}

_NORMAL_WORDS = {"no finding", "normal", "negative", "no findings"}


def harmonise(finding: str) -> tuple[str, int] | None:
    """Map a free-text finding or class name to (label, covid), or None if unknown.

    ``COVID-19``, ``COVID-19, ARDS``, ``Pneumonia/Viral/COVID-19``, ``positive`` -> covid;
    ``No Finding``, ``normal``, ``negative`` -> normal; any other known finding
    (SARS, Streptococcus, pneumonia, ...) -> pneumonia.
    """
    text = str(finding).strip()
    lowered = text.lower()
    if lowered in UNKNOWN_FINDINGS:
        return None
    if "covid" in lowered or lowered == "positive":
        return COVID, 1
    if lowered in _NORMAL_WORDS:
        return NORMAL, 0
    return PNEUMONIA, 0
