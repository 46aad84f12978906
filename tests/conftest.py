"""Shared fixtures. Tests make their own files; the dev data in ../shared is optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CXRLAB_WORKERS", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXRLAB_SHARED_DATA", REPO.parent / "shared" / "data"))
IEEE8023 = SHARED_DATA / "ieee8023-2020-06"
COVIDX_LABELS = SHARED_DATA / "covidx-labels"


@pytest.fixture
def ieee8023_dir() -> Path:
    if not (IEEE8023 / "metadata.csv").is_file():
        pytest.skip(f"dev data not found at {IEEE8023}")
    return IEEE8023


@pytest.fixture
def covidx_labels_dir() -> Path:
    if not COVIDX_LABELS.is_dir():
        pytest.skip(f"COVIDx label files not found at {COVIDX_LABELS}")
    return COVIDX_LABELS
