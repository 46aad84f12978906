"""Fixtures of the metric tests: no test may find or download real weights."""

from __future__ import annotations

import urllib.request

import pytest
import torch
from metric_factory import TinyInception


@pytest.fixture(autouse=True)
def offline_machine(tmp_path_factory, monkeypatch):
    """Every weights location empty, downloads off, caches in a temporary folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))  # ~/.torchxrayvision
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))  # torch.hub checkpoints
    monkeypatch.setenv("CXRLAB_OFFLINE", "1")
    monkeypatch.setenv("CXRLAB_CACHE_DIR", str(home / "refstats"))
    monkeypatch.delenv("CXRLAB_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("CXRLAB_WORKERS", "1")

    def no_downloads(*args, **kwargs):
        raise AssertionError("a test tried to download something")

    monkeypatch.setattr(urllib.request, "urlopen", no_downloads)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_downloads)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_downloads)
    return home


@pytest.fixture
def tiny_inception():
    from cxrlab.metrics.extractors import get_extractor

    return get_extractor("inception", network=TinyInception(), device="cpu")
