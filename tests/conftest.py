"""Shared fixtures. Tests make their own files; the dev data in ../shared is optional."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(autouse=True)
def offline_machine(tmp_path_factory, monkeypatch):
    """No test may find or download real weights: every weights location is empty,
    downloads are off and any attempt fails the test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))  # ~/.torchxrayvision
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))  # torch.hub checkpoints
    monkeypatch.setenv("CXRLAB_OFFLINE", "1")
    monkeypatch.setenv("CXRLAB_CACHE_DIR", str(home / "refstats"))
    monkeypatch.delenv("CXRLAB_WEIGHTS_DIR", raising=False)

    def no_downloads(*args, **kwargs):
        raise AssertionError("a test tried to download something")

    monkeypatch.setattr(urllib.request, "urlopen", no_downloads)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_downloads)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_downloads)
    return home
