"""``train_with_metrics``: the trainer plus the metric suite at save intervals."""

from __future__ import annotations

from cxrlab.gen.config import GenConfig
from cxrlab.gen.trainer import TrainResult, train_generator


def make_metrics_fn(config: GenConfig):
    """A callable the trainer runs at save intervals, or None when no metrics are asked for."""
    if not config.metrics:
        return None
    from cxrlab.gen.run_metrics import RunMetrics

    return RunMetrics(config)


def train_with_metrics(
    config: GenConfig, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    return train_generator(
        config, resume=resume, progress=progress, metrics_fn=make_metrics_fn(config)
    )
