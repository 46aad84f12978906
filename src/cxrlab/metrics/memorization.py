"""Memorization: are generated images copies of training images? (a privacy failure)

Each generated image's distance to its nearest training image is compared with the
same distance for real held-out images, which the generator never saw: a held-out
image is as close to the training set as an independent new patient can be. A
synthetic image closer to a training image than the 5th percentile of the held-out
distances is flagged; about 5 % of flagged images is what a generator that does not
copy produces by chance, markedly more means copies.

Reference: Meehan, Chaudhuri, Dasgupta. "A Non-Parametric Test to Detect
Data-Copying in Generative Models", AISTATS 2020, which compares generated-to-training
with held-out-to-training nearest-neighbour distances; the share below a low held-out
percentile is the simple, per-image form of that comparison used here.

Distances are Euclidean between vectors (pixels or features) divided by the square
root of their length: for pixels in [0, 1] this is the root-mean-square pixel
difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrlab.data.show import image_grid
from cxrlab.errors import CxrlabError
from cxrlab.metrics.frechet import ArrayLike, as_float64
from cxrlab.metrics.prdc import BLOCK_ROWS, pairwise_distances


def nearest_neighbours(queries: ArrayLike, references: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Each query's nearest reference.

    Args:
        queries: (N, D) vectors.
        references: (M, D) vectors.

    Returns:
        ``(distances, indices)``: (N,) float64 RMS distances (Euclidean / sqrt(D)) and
        (N,) int64 indices into ``references``.
    """
    queries = as_float64(queries, "query vectors")
    references = as_float64(references, "reference vectors")
    if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
        raise CxrlabError(
            f"nearest neighbours need (N, D) and (M, D) vectors, got {queries.shape}, "
            f"{references.shape}"
        )
    if len(references) == 0:
        raise CxrlabError("nearest neighbours need at least one reference vector")
    distances = np.empty(len(queries), dtype=np.float64)
    indices = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), BLOCK_ROWS):
        block = pairwise_distances(queries[start : start + BLOCK_ROWS], references)
        nearest = block.argmin(axis=1)
        indices[start : start + BLOCK_ROWS] = nearest
        distances[start : start + BLOCK_ROWS] = block[np.arange(len(block)), nearest]
    return distances / np.sqrt(queries.shape[1]), indices


@dataclass(frozen=True)
class Memorization:
    """Result of :func:`check_memorization`.

    Attributes:
        share: fraction of generated images flagged (closer than ``threshold``).
        threshold: the ``percentile``-th percentile of held-out distances.
        percentile: which percentile (5 by default).
        fake_distances: (M,) each generated image's distance to its nearest training image.
        fake_nearest: (M,) index of that training image.
        heldout_distances: (N,) each held-out image's distance to its nearest training image.
    """

    share: float
    threshold: float
    percentile: float
    fake_distances: np.ndarray
    fake_nearest: np.ndarray
    heldout_distances: np.ndarray

    @property
    def flagged(self) -> np.ndarray:
        """(M,) bool: generated images closer to a training image than the threshold."""
        return self.fake_distances < self.threshold

    def summary(self) -> dict[str, float]:
        """Scalars for a metrics table: share flagged, threshold, both medians."""
        return {
            "memorization_share": self.share,
            "memorization_threshold": self.threshold,
            "memorization_median_fake": float(np.median(self.fake_distances)),
            "memorization_median_heldout": float(np.median(self.heldout_distances)),
        }


def check_memorization(
    fake_vectors: ArrayLike,
    heldout_vectors: ArrayLike,
    train_vectors: ArrayLike,
    percentile: float = 5.0,
) -> Memorization:
    """Share of generated images closer to a training image than real held-out images are.

    Args:
        fake_vectors: (M, D) generated images (flattened pixels, or features).
        heldout_vectors: (N, D) real images not in the training set, same D.
        train_vectors: (T, D) the generator's training images, same D.
        percentile: percentile of the held-out distances used as threshold.

    Returns:
        A :class:`Memorization`; ``share`` is about ``percentile / 100`` for a generator
        that does not copy, and the fraction of copies (plus that) for one that does.
    """
    heldout_distances, _ = nearest_neighbours(heldout_vectors, train_vectors)
    fake_distances, fake_nearest = nearest_neighbours(fake_vectors, train_vectors)
    threshold = float(np.percentile(heldout_distances, percentile))
    return Memorization(
        share=float((fake_distances < threshold).mean()),
        threshold=threshold,
        percentile=percentile,
        fake_distances=fake_distances,
        fake_nearest=fake_nearest,
        heldout_distances=heldout_distances,
    )


def closest_pairs_grid(
    fake_images: np.ndarray,
    train_images: np.ndarray,
    result: Memorization,
    n_pairs: int = 16,
    pairs_per_row: int = 4,
) -> np.ndarray:
    """A grid of the generated images closest to a training image, each beside that image.

    Args:
        fake_images: (M, H, W) uint8 generated images, in the order given to :func:`check_memorization`.
        train_images: (T, H, W) uint8 training images, same order as there.
        result: the :func:`check_memorization` result.
        n_pairs: pairs shown, closest first.
        pairs_per_row: pairs per grid row (each pair is generated | training).

    Returns:
        (rows, cols) uint8 grid image, for :func:`cxrlab.data.show.save_grid`.
    """
    order = np.argsort(result.fake_distances, kind="stable")[:n_pairs]
    tiles = np.empty((2 * len(order),) + fake_images.shape[1:], dtype=np.uint8)
    tiles[0::2] = fake_images[order]
    tiles[1::2] = train_images[result.fake_nearest[order]]
    return image_grid(tiles, columns=2 * min(pairs_per_row, len(order)))


def closest_pairs_figure(
    fake_images: np.ndarray,
    train_images: np.ndarray,
    result: Memorization,
    n_pairs: int = 8,
    pairs_per_row: int = 4,
    title: str = "",
):
    """The generated images closest to a training image, each beside that image, labelled.

    Each pair is titled ``generated`` and ``nearest training image``, with the distance
    under it (RMS pixel difference, 0-1) and whether it is flagged as a near-copy
    (closer than ``result.threshold``, the held-out images' 5th percentile).

    Args:
        fake_images: (M, H, W) uint8 generated images, in the order given to
            :func:`check_memorization`.
        train_images: (T, H, W) uint8 training images, same order as there.
        result: the :func:`check_memorization` result.
        n_pairs: pairs shown, closest first.
        pairs_per_row: pairs per figure row.
        title: a line above the pairs (the generator, its step...).

    Returns:
        A matplotlib Figure (no pyplot state); see :func:`save_closest_pairs`.
    """
    from matplotlib.figure import Figure

    order = np.argsort(result.fake_distances, kind="stable")[:n_pairs]
    columns = min(pairs_per_row, max(len(order), 1))
    rows = max(1, -(-len(order) // columns))
    figure = Figure(figsize=(2.2 * 2 * columns, 2.5 * rows + (0.5 if title else 0.2)))
    # a gap between pairs, none inside one: each generated image sits by its neighbour
    outer = figure.add_gridspec(rows, columns, wspace=0.25, hspace=0.45)
    for k, index in enumerate(order):
        row, pair = divmod(k, columns)
        inner = outer[row, pair].subgridspec(1, 2, wspace=0.04)
        distance = float(result.fake_distances[index])
        flagged = distance < result.threshold
        for side, (image, label) in enumerate(
            (
                (fake_images[index], "generated"),
                (train_images[result.fake_nearest[index]], "nearest training"),
            )
        ):
            axes = figure.add_subplot(inner[0, side])
            axes.imshow(image, cmap="gray", vmin=0, vmax=255)
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_title(label, fontsize=8)
            if side == 0:
                axes.set_xlabel(
                    f"distance {distance:.3f}" + (" (near-copy)" if flagged else ""),
                    fontsize=8,
                    color="#b00" if flagged else "black",
                    loc="left",
                )
    figure.suptitle(
        (title + "\n" if title else "")
        + f"closest {len(order)} of {len(result.fake_distances)} generated images to a training "
        f"image; near-copy below {result.threshold:.3f} (RMS pixel difference, 0-1)",
        fontsize=9,
    )
    return figure


def save_closest_pairs(figure, path) -> str:
    """Write a :func:`closest_pairs_figure` as a PNG at ``path`` (atomically); its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cxrlab.utils.fs import atomic_path

    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    return str(path)
