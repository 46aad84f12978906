"""Metrics of synthetic chest X-rays: pure functions on features or pixels, extractors apart.

Entry point (``cxrlab metrics`` and the trainer's save intervals):

* :func:`compute_metrics` - real vs generated images -> ``{name: value}``.

Pure functions (float64 where it matters; each module names its reference):

* :func:`frechet_distance`, :func:`feature_statistics`, :func:`fid_from_features`;
* :func:`kernel_inception_distance` (KID);
* :func:`inception_score` (IS, from class probabilities);
* :func:`precision_recall_density_coverage` (PRDC);
* :func:`mean_ms_ssim` (diversity);
* :func:`check_memorization`, :func:`closest_pairs_grid` and the labelled
  :func:`closest_pairs_figure` (generated | nearest training image, with distances);
* :func:`sliced_wasserstein_distance` (SWD on Laplacian-pyramid patches).

Feature extractors by name (``inception``, ``xrv``): :mod:`cxrlab.metrics.extractors`.
"""

from cxrlab.utils.lazy import lazy_exports

#: Public name -> module defining it. Imported on first use (PEP 562), so that
#: ``cxrlab --help`` does not pay for torchmetrics and the networks.
_EXPORTS = {
    "METRICS": "cxrlab.metrics.registry",
    "ImageSource": "cxrlab.metrics.images",
    "MetricResults": "cxrlab.metrics.api",
    "closest_pairs_figure": "cxrlab.metrics.memorization",
    "closest_pairs_grid": "cxrlab.metrics.memorization",
    "compute_metrics": "cxrlab.metrics.api",
    "feature_statistics": "cxrlab.metrics.frechet",
    "fid_from_features": "cxrlab.metrics.frechet",
    "frechet_distance": "cxrlab.metrics.frechet",
    "inception_score": "cxrlab.metrics.isc",
    "kernel_inception_distance": "cxrlab.metrics.kid",
    "mean_ms_ssim": "cxrlab.metrics.diversity",
    "check_memorization": "cxrlab.metrics.memorization",
    "precision_recall_density_coverage": "cxrlab.metrics.prdc",
    "register_metric": "cxrlab.metrics.registry",
    "sliced_wasserstein_distance": "cxrlab.metrics.swd",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
