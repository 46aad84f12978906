"""Metrics registered by name, each a thin call from shared inputs into a pure function.

A registered metric receives a :class:`MetricContext`, which computes what several
metrics share (network features, resized pixels) once and on demand, and returns
named float values. ``cxrlab metrics --metrics NAMES`` and
:func:`cxrlab.metrics.compute_metrics` pick metrics from :data:`METRICS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from cxrlab.errors import CxrlabError
from cxrlab.metrics.diversity import mean_ms_ssim
from cxrlab.metrics.extractors import FeatureExtractor, Features
from cxrlab.metrics.frechet import fid_from_features
from cxrlab.metrics.images import ImageSet, choose
from cxrlab.metrics.isc import inception_score, probabilities_from_logits
from cxrlab.metrics.kid import kernel_inception_distance
from cxrlab.metrics.memorization import (
    check_memorization,
    closest_pairs_figure,
    save_closest_pairs,
)
from cxrlab.metrics.prdc import precision_recall_density_coverage
from cxrlab.metrics.refstats import reference_features
from cxrlab.metrics.swd import sliced_wasserstein_distance

#: Pixel metrics (swd, diversity) use at most this many images of each set (seeded choice).
PIXEL_MAX_IMAGES = 2048
#: Memorization compares images resized to at most this side (fast, tolerant of tiny shifts).
MEMORIZATION_SIZE_PX = 64


@dataclass
class MetricContext:
    """Inputs of one evaluation, with shared intermediate results computed once.

    Attributes:
        real: real images (FID reference; held-out images for memorization).
        fake: generated images.
        train: the generator's training images (memorization), or None.
        extractor: the feature network, or None when no metric needs one.
        seed: seeds every random choice (subsets, pairs, patches, directions).
        cache_dir: reference-feature cache (None: the default).
        batch_size: images per forward pass.
        progress: progress bars.
        grid_path: where memorization saves its closest pairs (None: not saved).
        info: what the evaluation used (counts, sizes, cache hits, files written).
    """

    real: ImageSet
    fake: ImageSet
    train: ImageSet | None = None
    extractor: FeatureExtractor | None = None
    seed: int = 0
    cache_dir: str | Path | None = None
    batch_size: int = 64
    progress: bool = False
    grid_path: Path | None = None
    info: dict = field(default_factory=dict)

    def _need_extractor(self) -> FeatureExtractor:
        if self.extractor is None:
            raise CxrlabError("this metric needs a feature extractor, and none was loaded")
        return self.extractor

    @cached_property
    def real_features(self) -> Features:
        """Real images' features, from the reference cache when possible."""
        features, cached = reference_features(
            self.real,
            self._need_extractor(),
            cache_dir=self.cache_dir,
            batch_size=self.batch_size,
            progress=self.progress,
        )
        self.info["reference_cached"] = cached
        return features

    @cached_property
    def fake_features(self) -> Features:
        """Generated images' features and logits (never cached: they change every checkpoint)."""
        extractor = self._need_extractor()
        return extractor.extract(
            self.fake.batches(self.batch_size), total=len(self.fake), progress=self.progress
        )

    @cached_property
    def pixel_size_px(self) -> tuple[int, int]:
        """Common (H, W) of pixel metrics: the smaller of the two sets' sides."""
        (h1, w1), (h2, w2) = self.real.size_px, self.fake.size_px
        size = (min(h1, h2), min(w1, w2))
        self.info["pixel_size_px"] = list(size)
        return size

    def _pixels(self, image_set: ImageSet) -> torch.Tensor:
        rows = choose(len(image_set), PIXEL_MAX_IMAGES, self.seed)
        chosen = image_set if rows is None else image_set.subset(rows)
        return chosen.resized(self.pixel_size_px)

    @cached_property
    def real_pixels(self) -> torch.Tensor:
        """(N, 1, H, W) [0, 1] real images at :attr:`pixel_size_px` (at most PIXEL_MAX_IMAGES)."""
        return self._pixels(self.real)

    @cached_property
    def fake_pixels(self) -> torch.Tensor:
        """(M, 1, H, W) [0, 1] generated images at :attr:`pixel_size_px`."""
        return self._pixels(self.fake)


MetricFunction = Callable[[MetricContext], dict[str, float]]


@dataclass(frozen=True)
class Value:
    """One number a metric reports: the single place that says what it is.

    Attributes:
        name: its column in metrics.json, metrics.csv and a study's results.csv.
        label: a readable name for reports.
        help: what it means (the CLI's table).
        better: ``higher``, ``lower``, ``ideal`` (closest to :attr:`ideal` is best) or
            ``info`` (no direction: a spread, a threshold, the real images' own value).
        ideal: the best value when ``better`` is ``ideal``.
    """

    name: str
    label: str
    help: str
    better: str = "lower"
    ideal: float | None = None

    @property
    def comparable(self) -> bool:
        """Whether one run can be called better than another on this value."""
        return self.better in ("higher", "lower", "ideal")

    @property
    def direction(self) -> str:
        """``higher is better``, ``lower is better``, ``closest to 1 is best`` or ``no direction``."""
        if self.better == "ideal":
            return f"closest to {self.ideal:g} is best"
        if self.better in ("higher", "lower"):
            return f"{self.better} is better"
        return "no direction"

    def badness(self, value: float) -> float:
        """A number that is smaller for better values (for choosing the best run)."""
        if self.better == "higher":
            return -value
        if self.better == "ideal":
            return abs(value - float(self.ideal))
        return value


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes:
        name: what ``--metrics`` calls it.
        compute: context -> named values.
        values: the values it reports (per-resolution ``NAME_<N>px`` values of a
            multi-resolution metric share their base value's facts).
        needs_network: needs a feature extractor (weights).
        needs_train: needs the training images.
        needs_class_logits: needs an extractor with softmax class logits.
    """

    name: str
    compute: MetricFunction
    values: tuple[Value, ...] = ()
    needs_network: bool = False
    needs_train: bool = False
    needs_class_logits: bool = False


METRICS: dict[str, Metric] = {}
#: Every reported value by column name, from the registered metrics.
VALUES: dict[str, Value] = {}
#: Per-resolution columns of a multi-resolution value (``swd_32px``).
PER_RESOLUTION = re.compile(r"^(?P<base>.+)_(?P<size>\d+)px$")


def value_info(column: str) -> Value | None:
    """The facts of a result column (``fid``, ``swd_32px``...), or None if no metric reports it."""
    if column in VALUES:
        return VALUES[column]
    match = PER_RESOLUTION.match(column)
    if match and match.group("base") in VALUES:
        base = VALUES[match.group("base")]
        size = match.group("size")
        return Value(
            column,
            f"{base.label} at {size} px",
            f"{base.name} at the {size} px level",
            base.better,
            base.ideal,
        )
    return None


def metric_of_value(column: str) -> str | None:
    """The registered metric that reports ``column`` (``precision`` -> ``prdc``)."""
    info = value_info(column)
    if info is None:
        return None
    base = PER_RESOLUTION.match(column)
    name = base.group("base") if base and column not in VALUES else column
    return next(m.name for m in METRICS.values() if any(v.name == name for v in m.values))


def register_metric(
    name: str,
    *values: Value,
    needs_network: bool = False,
    needs_train: bool = False,
    needs_class_logits: bool = False,
) -> Callable[[MetricFunction], MetricFunction]:
    """Decorator adding a metric function to :data:`METRICS` under ``name``, with the
    facts of every value it reports (direction, label, help): nothing else states them."""

    def decorator(function: MetricFunction) -> MetricFunction:
        METRICS[name] = Metric(
            name, function, values, needs_network, needs_train, needs_class_logits
        )
        for value in values:
            VALUES[value.name] = value
        return function

    return decorator


@register_metric(
    "fid",
    Value("fid", "FID", "lower is better: Fréchet distance of feature Gaussians"),
    needs_network=True,
)
def fid(context: MetricContext) -> dict[str, float]:
    return {
        "fid": fid_from_features(context.real_features.features, context.fake_features.features)
    }


@register_metric(
    "kid",
    Value("kid", "KID", "lower is better: unbiased MMD^2, cubic kernel (mean over subsets)"),
    Value("kid_std", "KID spread", "spread of kid over subsets", "info"),
    needs_network=True,
)
def kid(context: MetricContext) -> dict[str, float]:
    mean, std = kernel_inception_distance(
        context.real_features.features, context.fake_features.features, seed=context.seed
    )
    return {"kid": mean, "kid_std": std}


@register_metric(
    "is",
    Value("is", "IS", "higher is better: Inception Score (ImageNet classes)", "higher"),
    Value("is_std", "IS spread", "spread of is over splits", "info"),
    needs_network=True,
    needs_class_logits=True,
)
def inception_score_metric(context: MetricContext) -> dict[str, float]:
    logits = context.fake_features.logits
    if logits is None:
        raise CxrlabError("the Inception Score needs class logits; use --features inception")
    mean, std = inception_score(probabilities_from_logits(logits), splits=min(10, len(logits)))
    return {"is": mean, "is_std": std}


@register_metric(
    "prdc",
    Value(
        "precision", "precision", "higher is better: share of fakes on the real manifold", "higher"
    ),
    Value("recall", "recall", "higher is better: share of reals on the fake manifold", "higher"),
    Value("density", "density", "about 1 is best: fakes per real k-NN ball / k", "ideal", 1.0),
    Value("coverage", "coverage", "higher is better: share of real balls holding a fake", "higher"),
    needs_network=True,
)
def prdc(context: MetricContext) -> dict[str, float]:
    return precision_recall_density_coverage(
        context.real_features.features, context.fake_features.features
    ).as_dict()


@register_metric(
    "swd",
    Value("swd", "SWD", "lower is better: sliced Wasserstein x 1e3, mean over levels"),
)
def swd(context: MetricContext) -> dict[str, float]:
    levels = sliced_wasserstein_distance(
        context.real_pixels, context.fake_pixels, seed=context.seed
    )
    values = {"swd": 1e3 * float(np.mean(list(levels.values())))}
    values.update({f"swd_{size}px": 1e3 * value for size, value in levels.items()})
    return values


@register_metric(
    "diversity",
    Value(
        "ms_ssim_fake",
        "MS-SSIM of generated images",
        "near ms_ssim_real is best; far higher means collapse",
        "info",
    ),
    Value("ms_ssim_real", "MS-SSIM of real images", "the real images' own mean MS-SSIM", "info"),
)
def diversity(context: MetricContext) -> dict[str, float]:
    return {
        "ms_ssim_fake": mean_ms_ssim(context.fake_pixels, seed=context.seed),
        "ms_ssim_real": mean_ms_ssim(context.real_pixels, seed=context.seed),
    }


def _heldout(real: ImageSet, train: ImageSet) -> ImageSet:
    """The real images that are not training images (by manifest id, when both have ids)."""
    if real.ids is None or train.ids is None:
        return real
    keep = np.nonzero(~np.isin(real.ids, train.ids))[0]
    if len(keep) < 2:
        raise CxrlabError(
            f"memorization needs real held-out images, but {real.name} holds only "
            f"{len(keep)} image(s) that are not in {train.name}; choose another split of "
            "REAL (e.g. --real-split test)"
        )
    return real if len(keep) == len(real) else real.subset(keep, suffix=" (held-out)")


@register_metric(
    "memorization",
    Value(
        "memorization_share",
        "memorization",
        "about 0.05 is best; higher means copies of training images",
        "ideal",
        0.05,
    ),
    Value(
        "memorization_threshold",
        "memorization threshold",
        "5th percentile of held-out RMS distance to train",
        "info",
    ),
    Value(
        "memorization_median_fake",
        "median distance of fakes",
        "median RMS distance of fakes to nearest train image",
        "info",
    ),
    Value(
        "memorization_median_heldout",
        "median distance of held-out images",
        "median RMS distance of held-out to nearest train image",
        "info",
    ),
    needs_train=True,
)
def memorization_metric(context: MetricContext) -> dict[str, float]:
    train = context.train
    if train is None:
        raise CxrlabError("memorization needs the training images: pass --train PACKED")
    heldout = _heldout(context.real, train)
    height = min(s.size_px[0] for s in (heldout, context.fake, train))
    width = min(s.size_px[1] for s in (heldout, context.fake, train))
    size = (min(height, MEMORIZATION_SIZE_PX), min(width, MEMORIZATION_SIZE_PX))
    fake_images = context.fake.resized(size)
    train_images = train.resized(size)
    result = check_memorization(
        fake_images.flatten(1).numpy(),
        heldout.resized(size).flatten(1).numpy(),
        train_images.flatten(1).numpy(),
    )
    context.info.update(
        {"n_heldout": len(heldout), "n_train": len(train), "memorization_px": list(size)}
    )
    if context.grid_path is not None:

        def as_uint8(images: torch.Tensor) -> np.ndarray:
            return (images[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).numpy()

        # labelled: which image is generated, which its nearest training image, and the
        # distance (issue 24: an unlabelled grid of tiles said none of it)
        figure = closest_pairs_figure(as_uint8(fake_images), as_uint8(train_images), result)
        context.info["memorization_grid"] = save_closest_pairs(figure, context.grid_path)
    return result.summary()


#: Metrics that need no network, hence no weights: they run on any offline machine.
OFFLINE_METRICS = tuple(name for name, metric in METRICS.items() if not metric.needs_network)
