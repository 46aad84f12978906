"""The bundled sample: about 150 redistributable CXRs from the ieee8023 collection.

Made by ``scripts/make_sample.py`` (``make sample``) from a local copy of the
collection: only images licensed CC BY, CC BY-SA, CC BY-NC-SA or Apache 2.0,
greyscale PNG, longer side 128 px. ``metadata.csv`` keeps the collection's columns
(with each image's url, doi and license) so the ieee8023 importer reads it;
``LICENSES.md`` states the terms.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cxrlab.data.manifest import SourceScan
from cxrlab.data.sources.ieee8023 import scan_ieee8023
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
) -> SourceScan:
    """Scan the bundled sample (``path`` is ignored unless given explicitly) as ieee8023."""
    return scan_ieee8023(Path(path) if path else sample_path(), views=views, source=source)
