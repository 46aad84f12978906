"""One number format for the whole study report and its sentences.

About three significant digits, never exponent notation for ordinary values
(``135.8`` -> ``136``, ``81.4675`` -> ``81.5``, ``0.73412`` -> ``0.734``), whole counts
as integers (``1,000``), and durations in words (``100`` -> ``1 min 40 s``). Values
below one keep three decimals, so ROC-AUCs and their differences line up
(``0.734``, ``+0.031``).
"""

from __future__ import annotations

import math

#: What a missing value reads as.
MISSING = "–"
#: Values closer to zero than this read as zero (floating-point noise of a mean).
ZERO = 1e-9


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def number_text(value: object, *, signed: bool = False, count: bool = False) -> str:
    """``value`` with about three significant digits, or :data:`MISSING`.

    Args:
        value: a number (or something ``float()`` reads); anything else is
            :data:`MISSING`.
        signed: write a ``+`` before positive values (differences).
        count: a whole count (images, steps): written whole, with thousands separators.

    Examples: ``135.8`` -> ``136``; ``81.4675`` -> ``81.5``; ``4.257`` -> ``4.26``;
    ``0.73412`` -> ``0.734``; ``0.00021`` -> ``0.00021``; ``100.0`` (count) -> ``100``.
    """
    number = _finite(value)
    if number is None:
        return MISSING
    sign = "+" if signed else ""
    if abs(number) < ZERO:
        return "0" if count else "0.000"
    size = abs(number)
    if count or size >= 1000:
        return f"{number:{sign},.0f}"
    if size >= 100:
        text = f"{number:{sign}.0f}"
    elif size >= 10:
        text = f"{number:{sign}.1f}"
    elif size >= 1:
        text = f"{number:{sign}.2f}"
    elif size >= 0.001:
        text = f"{number:{sign}.3f}"
    else:  # a small metric (KID): two significant digits, still positional
        digits = -math.floor(math.log10(size)) + 1
        text = f"{number:{sign}.{digits}f}"
    return text


def duration_text(seconds: object) -> str:
    """A duration in words: ``4.2 s``, ``45 s``, ``1 min 40 s``, ``2 h 05 min``; or
    :data:`MISSING`."""
    total = _finite(seconds)
    if total is None or total < 0:
        return MISSING
    if total < 10:
        return f"{total:.1f} s"
    if total < 60:
        return f"{round(total)} s"
    minutes, secs = divmod(round(total), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"
