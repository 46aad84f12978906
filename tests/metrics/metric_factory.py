"""Data and stand-in networks the metric tests make themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxrlab.data.manifest import MANIFEST_COLUMNS, dataframe_to_csv_text
from cxrlab.data.packed import IMAGES, META, PACKED_FORMAT, PACKED_FORMAT_VERSION


def smooth_images(n: int, size_px: int = 32, seed: int = 0, blur: int = 3) -> np.ndarray:
    """(n, size, size) float64 in [0, 1]: independent blurred noise, different per image."""
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.random((n, 1, size_px, size_px)))
    kernel = torch.ones(1, 1, 2 * blur + 1, 2 * blur + 1, dtype=torch.float64)
    blurred = nn.functional.conv2d(
        nn.functional.pad(noise, (blur,) * 4, mode="reflect"), kernel / kernel.sum()
    )[:, 0]
    low, high = blurred.amin(dim=(1, 2), keepdim=True), blurred.amax(dim=(1, 2), keepdim=True)
    return ((blurred - low) / (high - low)).numpy()


def as_generator_output(images: np.ndarray) -> torch.Tensor:
    """(n, H, W) [0, 1] -> (n, 1, H, W) float32 in [-1, 1], like a generator's tanh."""
    return torch.from_numpy(images).float()[:, None] * 2 - 1


def write_packed(
    path: Path, images: np.ndarray, splits: list[str], covid: list[int] | None = None
) -> Path:
    """A PACKED folder holding ``images`` ((N, H, W) uint8) with the given splits."""
    path.mkdir(parents=True)
    np.save(path / IMAGES, images)
    rows = []
    for i, split in enumerate(splits):
        row = dict.fromkeys(MANIFEST_COLUMNS, "")
        row.update(
            id=f"t:{i}", covid=covid[i] if covid else i % 2,
            label="covid", patient_id=f"t:p{i}", source="t", width=images.shape[2],
            height=images.shape[1], mode="L", bit_depth=8, split=split,
        )  # fmt: skip
        rows.append(row)
    (path / "manifest.csv").write_text(dataframe_to_csv_text(pd.DataFrame(rows)))
    meta = {
        "format": PACKED_FORMAT,
        "format_version": PACKED_FORMAT_VERSION,
        "n_images": len(images),
        "shape": list(images.shape),
        "dtype": str(images.dtype),
    }
    (path / META).write_text(json.dumps(meta))
    return path


class TinyInception(nn.Module):
    """Stands in for Inception-v3: uint8 (B, 3, H, W) -> (pool (B, 8), logits (B, 5))."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("project", torch.randn(3 * 4 * 4, 8, generator=generator))
        self.register_buffer("classify", torch.randn(8, 5, generator=generator))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        pooled = nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)
        features = pooled @ self.project
        return features, features @ self.classify


class TinyXrv(nn.Module):
    """Stands in for the xrv DenseNet: (B, 1, 224, 224) in [-1024, 1024] -> (B, 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer(
            "project", torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.shape[1:] == (1, 224, 224)
        return nn.functional.adaptive_avg_pool2d(images / 1024, 4).flatten(1) @ self.project
