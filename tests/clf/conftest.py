"""Fixtures of the classifier tests: no test may find or download real weights."""

from __future__ import annotations

import urllib.request

import pytest
import torch


@pytest.fixture(autouse=True)
def offline_machine(tmp_path_factory, monkeypatch):
    """Every weights location empty, downloads off and forbidden."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))  # ~/.torchxrayvision
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))  # torch.hub checkpoints
    monkeypatch.setenv("CXRLAB_OFFLINE", "1")
    monkeypatch.delenv("CXRLAB_WEIGHTS_DIR", raising=False)

    def no_downloads(*args, **kwargs):
        raise AssertionError("a test tried to download something")

    monkeypatch.setattr(urllib.request, "urlopen", no_downloads)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_downloads)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_downloads)
    return home
