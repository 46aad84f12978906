"""The bundled sample: about 150 redistributable CXRs from the ieee8023 collection.

Made by ``scripts/make_sample.py`` (``make sample``) from a local copy of the
collection: only images licensed CC BY, CC BY-SA, CC BY-NC-SA or Apache 2.0,
greyscale PNG, longer side 128 px. ``metadata.csv`` keeps the collection's columns
(with each image's url, doi and license) so the ieee8023 importer reads it;
``LICENSES.md`` states the terms. Sites follow the ieee8023 rule
(``site_from``); the sample's metadata has no ``location`` column, so where the
ieee8023 default is ``location`` the sample's default is ``url``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from cxrlab.data.manifest import SourceScan
from cxrlab.data.sources.ieee8023 import scan_ieee8023
from cxrlab.data.sources.sites import DEFAULT_SITE_FROM, SITE_RULES
from cxrlab.data.sources.views import DEFAULT_VIEWS
from cxrlab.errors import DatasetError


def sample_path() -> Path:
    """The folder of the bundled sample inside the installed package."""
    path = Path(str(resources.files("cxrlab") / "assets" / "sample"))
    if not (path / "metadata.csv").is_file():
        raise DatasetError(
            f"the bundled sample is missing from {path}; rebuild it with `make sample`"
        )
    return path


def scan_sample(
    path: str | Path | None = None,
    *,
    views: tuple[str, ...] | list[str] = DEFAULT_VIEWS,
    source: str = "sample",
    site_from: str | None = None,
) -> SourceScan:
    """Scan the bundled sample (``path`` is ignored unless given explicitly) as ieee8023.

    ``site_from`` None: the ieee8023 default where the sample's metadata has its column,
    else ``url``.
    """
    root = Path(path) if path else sample_path()
    if site_from is None:
        metadata = root / "metadata.csv" if root.is_dir() else root
        columns = set(pd.read_csv(metadata, nrows=0).columns) if metadata.is_file() else set()
        default_column = SITE_RULES.get(DEFAULT_SITE_FROM, ("",))[0]
        site_from = DEFAULT_SITE_FROM if default_column in columns else "url"
    return scan_ieee8023(root, views=views, source=source, site_from=site_from)
