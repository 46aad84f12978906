"""The dataset layer: import public sources, merge, split, describe.

Public API (the CLI's ``cxrlab data ...`` commands wrap these):

* :func:`import_source` - one source into a dataset folder;
* :func:`build_dataset` - several sources from a YAML spec into one dataset;
* :func:`split_dataset` - patient-grouped, stratified, seeded splits;
* :func:`~cxrlab.data.stats.write_stats` - figures and numbers;
* :func:`~cxrlab.data.io.read_image` - the one image reader.
"""

from cxrlab.utils.lazy import lazy_exports

_EXPORTS = {
    "build_dataset": "cxrlab.data.api",
    "import_source": "cxrlab.data.api",
    "read_image": "cxrlab.data.io",
    "read_manifest": "cxrlab.data.manifest",
    "split_dataset": "cxrlab.data.api",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
