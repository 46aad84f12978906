"""``compute_metrics``: the one entry point of ``cxrlab metrics`` and of the trainer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cxrlab.data.provenance import check_preprocessing, folder_preprocessing
from cxrlab.errors import CxrlabError
from cxrlab.metrics.extractors import EXTRACTORS, FeatureExtractor, get_extractor
from cxrlab.metrics.images import ImageInput, ImageSource, open_image_set
from cxrlab.metrics.registry import METRICS, MetricContext


class MetricResults(dict[str, float]):
    """Metric values by name (a plain ``dict[str, float]``), plus :attr:`info`.

    ``info`` says what was compared: image counts and sizes, the extractor, whether the
    reference features came from the cache, files written.
    """

    def __init__(self, values: dict[str, float], info: dict) -> None:
        super().__init__(values)
        self.info = info


def preprocessing_of_input(source: ImageInput, size_px: tuple[int, int]) -> dict:
    """How the images of ``source`` were made, as far as known (see
    :func:`cxrlab.data.provenance.folder_preprocessing`); ``size_px`` as compared."""
    height, width = size_px
    size = height if height == width else f"{height}x{width}"
    if isinstance(source, torch.Tensor | np.ndarray):
        return {"size_px": size}
    path = source.path if isinstance(source, ImageSource) else source
    made = folder_preprocessing(path)
    made["size_px"] = size
    return made


def parse_metric_names(metrics: str | Sequence[str] | None) -> list[str] | None:
    """``"fid, kid"`` or ``["fid", "kid"]`` -> ``["fid", "kid"]``; None stays None (defaults)."""
    if metrics is None:
        return None
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [name.strip().lower() for name in names if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise CxrlabError(
            f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}"
        )
    if not names:
        raise CxrlabError(f"no metrics given; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def default_metric_names(features: str, with_train: bool) -> list[str]:
    """Every metric the inputs allow: network metrics for ``features``, pixel metrics,
    and memorization when training images are given."""
    has_logits = EXTRACTORS[features].cls.has_class_logits if features in EXTRACTORS else False
    return [
        name
        for name, metric in METRICS.items()
        if (not metric.needs_class_logits or has_logits) and (not metric.needs_train or with_train)
    ]


def compute_metrics(
    real: ImageInput,
    fake: ImageInput,
    metrics: str | Sequence[str] | None = None,
    *,
    features: str = "inception",
    n: int | None = None,
    train: ImageInput | None = None,
    weights: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    grid_path: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = False,
    extractor: FeatureExtractor | None = None,
    allow_mismatch: bool = False,
) -> MetricResults:
    """Compare generated images with real ones.

    Args:
        real: the real images: a PACKED folder or image folder (path, or
            :class:`~cxrlab.metrics.images.ImageSource` to choose split and label), or a
            float tensor (N, 1, H, W) in [-1, 1]. Its network features are cached (see
            :mod:`cxrlab.metrics.refstats`). For memorization these are the held-out
            images; rows that are also in ``train`` (same manifest id) are left out there.
        fake: the generated images, in the same forms (usually the generator's
            (N, 1, H, W) output in [-1, 1]).
        metrics: names from :data:`~cxrlab.metrics.registry.METRICS` (``fid``, ``kid``,
            ``is``, ``prdc``, ``swd``, ``diversity``, ``memorization``), as a list or a
            comma-separated string; None: every metric the inputs allow.
        features: extractor of the network metrics: ``inception`` or ``xrv``.
        n: use a seeded random choice of at most ``n`` images of ``real`` and of ``fake``.
        train: the generator's training images (needed by ``memorization``).
        weights: the extractor's weights file or a folder holding it.
        cache_dir: reference-feature cache (default ``$CXRLAB_CACHE_DIR`` or
            ``~/.cache/cxrlab/refstats``).
        device: ``auto``, ``cpu``, ``cuda``...
        seed: seeds every random choice: the same inputs and seed give the same values.
        grid_path: where ``memorization`` saves a PNG of the closest generated/training
            pairs (None: not saved).
        batch_size: images per forward pass of the extractor.
        progress: progress bars.
        extractor: a ready extractor to use instead of loading ``features`` (tests, or a
            trainer that holds one).
        allow_mismatch: compare images preprocessed differently (size, equalization,
            crop, lungs, bit depth: a PACKED's options, or for generated images those of
            the data their generator learned, from ``provenance.json``); ``info`` then
            records the differences. Without it such sets are refused.

    Returns:
        Values by name, e.g. ``fid``, ``kid``, ``kid_std``, ``is``, ``is_std``,
        ``precision``, ``recall``, ``density``, ``coverage``, ``swd``, ``swd_64px``...,
        ``ms_ssim_fake``, ``ms_ssim_real``, ``memorization_share``...; see
        :data:`~cxrlab.metrics.registry.VALUES`.

    Raises:
        MissingWeightsError: a network metric was asked for and the weights cannot be
            had; raised before any image is read.
        CxrlabError: unknown metric or extractor, unusable inputs.
    """
    if features not in EXTRACTORS:
        raise CxrlabError(f"unknown --features {features!r}; use one of {sorted(EXTRACTORS)}")
    names = parse_metric_names(metrics) or default_metric_names(features, train is not None)
    chosen = [METRICS[name] for name in names]
    if train is None and any(metric.needs_train for metric in chosen):
        raise CxrlabError("memorization needs the generator's training images: pass --train PACKED")
    extractor_class = EXTRACTORS[features].cls if extractor is None else type(extractor)
    if any(m.needs_class_logits for m in chosen) and not extractor_class.has_class_logits:
        raise CxrlabError(
            f"the Inception Score needs class probabilities, which --features {features} "
            "does not give; use --features inception or leave out 'is'"
        )

    # Weights first: a missing file must fail before minutes of image reading.
    if any(metric.needs_network for metric in chosen):
        if extractor is None:
            extractor = get_extractor(features, weights=weights, device=device)
    else:
        extractor = None

    real_set = open_image_set(real, name="real", n=n, seed=seed, progress=progress)
    fake_set = open_image_set(fake, name="fake", n=n, seed=seed, progress=progress)
    # one pipeline on both sides, or the numbers measure the preprocessing
    mismatch = check_preprocessing(
        preprocessing_of_input(real, real_set.size_px),
        preprocessing_of_input(fake, fake_set.size_px),
        what=f"REAL {real_set.name} and FAKE {fake_set.name}",
        allow_mismatch=allow_mismatch,
        fix="compare with real images preprocessed like the generator's training data",
    )
    train_set = (
        open_image_set(train, name="train", seed=seed, progress=progress)
        if train is not None and any(metric.needs_train for metric in chosen)
        else None
    )
    context = MetricContext(
        real=real_set,
        fake=fake_set,
        train=train_set,
        extractor=extractor,
        seed=seed,
        cache_dir=cache_dir,
        batch_size=batch_size,
        progress=progress,
        grid_path=Path(grid_path) if grid_path is not None else None,
        info={
            "metric_names": names,
            "real": real_set.name,
            "fake": fake_set.name,
            "n_real": len(real_set),
            "n_fake": len(fake_set),
            "real_size_px": list(real_set.size_px),
            "fake_size_px": list(fake_set.size_px),
            "features": extractor.identity if extractor is not None else None,
            "seed": seed,
            **({"preprocessing_mismatch": mismatch} if mismatch else {}),
        },
    )
    values: dict[str, float] = {}
    with torch.inference_mode():
        for metric in chosen:
            values.update(metric.compute(context))
    return MetricResults({k: float(v) for k, v in values.items()}, context.info)
