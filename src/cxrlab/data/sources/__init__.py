"""One importer per public CXR source. Each returns a :class:`~cxrlab.data.manifest.SourceScan`.

Register new sources in :data:`IMPORTERS`; the CLI's ``data import FORMAT`` choices
come from it.
"""

from __future__ import annotations

from collections.abc import Callable

from cxrlab.data.manifest import SourceScan
from cxrlab.data.sources.covidx import scan_covidx
from cxrlab.data.sources.folders import scan_folders
from cxrlab.data.sources.ieee8023 import scan_ieee8023
from cxrlab.data.sources.partners import scan_actualmed, scan_figure1
from cxrlab.data.sources.rsna import scan_rsna
from cxrlab.data.sources.sample import scan_sample

IMPORTERS: dict[str, Callable[..., SourceScan]] = {
    "ieee8023": scan_ieee8023,
    "covidx": scan_covidx,
    "folders": scan_folders,
    "figure1": scan_figure1,
    "actualmed": scan_actualmed,
    "rsna": scan_rsna,
    "sample": scan_sample,
}

__all__ = ["IMPORTERS"]
