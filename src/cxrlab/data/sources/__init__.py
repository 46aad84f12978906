"""One importer per public CXR source. Each returns a :class:`~cxrlab.data.manifest.SourceScan`.

Register new sources in :data:`IMPORTERS` (format name -> ``module:function``); the CLI's
``data import FORMAT`` choices and the study spec's checks come from it. Importers are
imported on first use (:func:`importer`), so reading the registry costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

IMPORTERS: dict[str, str] = {
    "ieee8023": "cxrlab.data.sources.ieee8023:scan_ieee8023",
    "covidx": "cxrlab.data.sources.covidx:scan_covidx",
    "folders": "cxrlab.data.sources.folders:scan_folders",
    "figure1": "cxrlab.data.sources.partners:scan_figure1",
    "actualmed": "cxrlab.data.sources.partners:scan_actualmed",
    "rsna": "cxrlab.data.sources.rsna:scan_rsna",
    "sample": "cxrlab.data.sources.sample:scan_sample",
}


#: ``--site-from`` choices for ieee8023-style metadata (see :mod:`cxrlab.data.sources.sites`);
#: here so that the CLI lists them without importing the importers.
SITE_FROM = ("location", "url", "doi", "none")


def importer(format_name: str) -> Callable:
    """The scanning function of ``format_name`` (a key of :data:`IMPORTERS`)."""
    module, function = IMPORTERS[format_name].split(":")
    return getattr(importlib.import_module(module), function)


__all__ = ["IMPORTERS", "SITE_FROM", "importer"]
