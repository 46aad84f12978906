"""Where an image was made: the manifest's ``site`` column, from what each source states.

A classifier can learn a hospital instead of a disease, and only a test on sites it
never saw shows it. Each source records the finest site its metadata states, and
``unknown`` where it states none: a site is never guessed.

* ieee8023 (and the bundled sample): ``--site-from`` one of :data:`SITE_FROM`:
  ``location`` (its country: the last comma-separated part, ``Brescia, Italy`` ->
  ``Italy``), ``url`` (the publishing site: the host without ``www.``, e.g.
  ``radiopaedia.org``), ``doi`` (the DOI prefix, i.e. the publisher: ``10.1148``)
  or ``none``.
* figure1, actualmed, rsna: the collection's name; covidx: each line's source
  (``cohen``, ``fig1``, ``actmed``, ``sirm``, ``rsna``, ``ricord``...).
* folders: ``--site-level N`` (the N-th folder below the class folder) or
  ``--site-regex`` (its first group, searched in the path below the root).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlparse

from cxrlab.data.manifest import SITE, UNKNOWN_SITE
from cxrlab.data.sources import SITE_FROM
from cxrlab.errors import DatasetError

__all__ = [
    "SITE",
    "SITE_FROM",
    "UNKNOWN_SITE",
    "site_from_doi",
    "site_from_location",
    "site_from_url",
]

#: The default ``--site-from``: on the dev data (ieee8023, June 2020) it gives the most
#: sites usable for leave-site-out validation (at least 10 images of both classes:
#: :func:`cxrlab.data.stats.site_summary`): 6, against 5 for url and 3 for doi (README: Sites).
DEFAULT_SITE_FROM = "location"

# Values that say nothing about where an image comes from.
_UNSTATED = {"", "?", "unknown", "n/a", "na", "none", "nan", "-"}

# One name per country where the collection spells it several ways.
_COUNTRY_ALIASES = {
    "usa": "USA",
    "us": "USA",
    "u s a": "USA",
    "united states": "USA",
    "united states of america": "USA",
    "uk": "United Kingdom",
    "england": "United Kingdom",
    "scotland": "United Kingdom",
    "wales": "United Kingdom",
    "united kingdom": "United Kingdom",
}


def _unstated(value: str) -> bool:
    return value.strip().lower() in _UNSTATED


def site_from_location(location: str) -> str:
    """The country of an ieee8023 ``location`` (its last comma-separated part)."""
    if _unstated(location):
        return UNKNOWN_SITE
    country = location.split(",")[-1].strip().strip(".").strip()
    if _unstated(country):
        return UNKNOWN_SITE
    key = re.sub(r"[^a-z]+", " ", country.lower()).strip()
    return _COUNTRY_ALIASES.get(key, country)


def site_from_url(url: str) -> str:
    """The publishing site of a ``url``: its host, lower-case, without ``www.``."""
    if _unstated(url):
        return UNKNOWN_SITE
    text = url.strip()
    host = urlparse(text if "//" in text else f"//{text}").hostname or ""
    host = host.removeprefix("www.")
    return host or UNKNOWN_SITE


def site_from_doi(doi: str) -> str:
    """The prefix (registrant: the publisher) of a DOI, e.g. ``10.1148``."""
    if _unstated(doi):
        return UNKNOWN_SITE
    match = re.search(r"(10\.\d{4,9})/", doi.strip())
    return match.group(1) if match else UNKNOWN_SITE


#: ``--site-from`` choice -> (metadata column, function of its value).
SITE_RULES = {
    "location": ("location", site_from_location),
    "url": ("url", site_from_url),
    "doi": ("doi", site_from_doi),
}


def choose_site_from(
    site_from: str | None, columns: Iterable[str], where: str
) -> tuple[str, list[str]]:
    """The ``--site-from`` to use on metadata ``where`` with ``columns``, and warnings.

    ``None`` (not chosen): :data:`DEFAULT_SITE_FROM` when its column is there, else
    the first of ``location``, ``url``, ``doi`` that is, else ``none``, with a
    warning naming what was used. A choice the user made must be usable.

    Raises:
        DatasetError: naming the choices, or the missing column and the usable choices.
    """
    columns = set(columns)
    usable = [c for c in SITE_FROM if c == "none" or SITE_RULES[c][0] in columns]
    if site_from is None:
        if DEFAULT_SITE_FROM in usable:
            return DEFAULT_SITE_FROM, []
        chosen = usable[0]
        return chosen, [
            f"{where} has no {SITE_RULES[DEFAULT_SITE_FROM][0]!r} column: sites come from "
            + (f"its {chosen!r} column" if chosen != "none" else "nothing (all 'unknown')")
            + " (--site-from chooses)"
        ]
    if site_from not in SITE_FROM:
        raise DatasetError(f"--site-from {site_from!r}: choose one of {', '.join(SITE_FROM)}")
    if site_from not in usable:
        raise DatasetError(
            f"--site-from {site_from}: {where} has no {SITE_RULES[site_from][0]!r} column; "
            f"choose one of {', '.join(usable)}"
        )
    return site_from, []


def site_of_record(site_from: str, record: dict) -> str:
    """The site of one metadata row under ``site_from`` (``unknown`` for ``none``)."""
    if site_from == "none":
        return UNKNOWN_SITE
    column, rule = SITE_RULES[site_from]
    return rule(str(record.get(column, "")))


def grouped_pattern(regex: str, option: str, what: str, example: str) -> re.Pattern:
    """Compile a regular expression option whose first group captures ``what``.

    Raises:
        DatasetError: for an invalid expression or one without a group, naming ``option``.
    """
    try:
        pattern = re.compile(regex)
    except re.error as error:
        raise DatasetError(f"{option} {regex!r} is not a regular expression ({error})") from None
    if pattern.groups < 1:
        raise DatasetError(
            f"{option} {regex!r} has no group: put the {what} in parentheses, e.g. '{example}'"
        )
    return pattern


def site_pattern(site_regex: str) -> re.Pattern:
    """Compile ``--site-regex``; it must have a group (the site name).

    Raises:
        DatasetError: for an invalid expression or one without a group.
    """
    return grouped_pattern(site_regex, "--site-regex", "site name", r"^[^/]+/(hospital_\w+)/")
