"""Reference features of real images, computed once and cached on disk.

A checkpoint's FID, KID or PRDC then processes only its generated images. One cache
file per (real set's content and rows, extractor and weights, image size), in
``cache_dir`` (default ``$CXRLAB_CACHE_DIR`` or ``~/.cache/cxrlab/refstats``):
``<extractor>-<key>.npz`` holding ``features`` (N, D) float32 and ``logits`` when the
extractor has them, plus a ``<extractor>-<key>.json`` note saying what it is.

The real set's content key is the SHA-256 of a PACKED folder's manifest.csv and
preprocessing options, or of every file of an image folder, combined with the chosen
rows (split, label, ``n`` and seed); see :mod:`cxrlab.metrics.images`. Files are
written atomically, so concurrent runs at worst compute the same file twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cxrlab import __version__
from cxrlab.metrics.extractors import FeatureExtractor, Features
from cxrlab.metrics.images import ImageSet
from cxrlab.utils.fs import atomic_path, atomic_write_text

CACHE_ENV = "CXRLAB_CACHE_DIR"
#: Bump when a change in cxrlab makes cached features differ.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$CXRLAB_CACHE_DIR`` or ``~/.cache/cxrlab/refstats``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cxrlab" / "refstats"


def cache_key(image_set: ImageSet, extractor: FeatureExtractor) -> str | None:
    """Hex key of (content and rows, extractor identity, image size), or None if uncacheable."""
    if image_set.key is None:
        return None
    parts = {
        "content": image_set.key,
        "extractor": extractor.identity,
        "size_px": list(image_set.size_px),
        "n": len(image_set),
        "version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def reference_features(
    image_set: ImageSet,
    extractor: FeatureExtractor,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[Features, bool]:
    """Features of a real image set, from the cache when present.

    Args:
        image_set: the real images.
        extractor: the network.
        cache_dir: where cache files live (default :func:`default_cache_dir`).
        batch_size: images per forward pass.
        progress: progress bar while extracting.

    Returns:
        ``(features, from_cache)``.
    """
    key = cache_key(image_set, extractor)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / f"{extractor.name}-{key}.npz"
    if key is not None and path.is_file():
        try:
            with np.load(path) as stored:
                logits = stored["logits"] if "logits" in stored.files else None
                features = Features(stored["features"], logits)
            if len(features.features) == len(image_set):
                return features, True
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is recomputed and replaced
    features = extractor.extract(
        image_set.batches(batch_size), total=len(image_set), progress=progress
    )
    if key is not None:
        arrays = {"features": features.features}
        if features.logits is not None:
            arrays["logits"] = features.logits
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        note = {
            "real": image_set.name,
            "n_images": len(image_set),
            "size_px": list(image_set.size_px),
            "extractor": extractor.identity,
            "cxrlab_version": __version__,
        }
        atomic_write_text(path.with_suffix(".json"), json.dumps(note, indent=2) + "\n")
    return features, False
