"""The dataset layer: import public sources, merge, split, describe.

Public API (the CLI's ``cxrlab data ...`` commands wrap these):

* :func:`import_source` - one source into a dataset folder;
* :func:`build_dataset` - several sources from a YAML spec into one dataset;
* :func:`split_dataset` - patient-grouped, stratified, seeded splits;
* :func:`~cxrlab.data.stats.write_stats` - figures and numbers;
* :func:`~cxrlab.data.io.read_image` - the one image reader.
"""

from cxrlab.data.api import build_dataset, import_source, split_dataset
from cxrlab.data.io import read_image
from cxrlab.data.manifest import read_manifest

__all__ = ["build_dataset", "import_source", "read_image", "read_manifest", "split_dataset"]
