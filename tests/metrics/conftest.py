"""Fixtures of the metric tests (the offline fixture of tests/conftest.py applies too)."""

from __future__ import annotations

import pytest
from metric_factory import TinyInception


@pytest.fixture
def tiny_inception():
    from cxrlab.metrics.extractors import get_extractor

    return get_extractor("inception", network=TinyInception(), device="cpu")
