"""The report's "Generator training curves" section: metrics and losses over steps."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from html import escape
from pathlib import Path

import pandas as pd

from cxrlab.metrics.registry import value_info
from cxrlab.study.findings import (
    is_generator_metric,
    metric_label,
)
from cxrlab.study.numbers import number_text
from cxrlab.study.report.generators import _generator_runs, _ordered_metrics, has_generators
from cxrlab.study.report.html import _note, _plot_html, _section
from cxrlab.study.report.study import Study

#: Metric columns of one resolution of a multi-resolution metric (``swd_32px``).
PER_RESOLUTION = re.compile(r"_\d+px$")
#: metrics.csv columns that are neither a loss nor a metric.
NOT_LOSSES = frozenset({"step", "seconds", "metrics_seconds", "epoch"})
#: A metric drawn with its real-image value as a reference line, instead of a chart of
#: that value of its own (a flat line: the real images do not change with training).
REFERENCE = {
    "ms_ssim_fake": "ms_ssim_real",
    "memorization_median_fake": "memorization_median_heldout",
}
#: Drawn as lines on another chart, so without a chart of their own.
REFERENCES = frozenset({*REFERENCE.values(), "memorization_threshold"})


def _read_metrics(folder: Path) -> pd.DataFrame | None:
    path = folder / "metrics.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    if "step" not in frame.columns:
        return None
    return frame.apply(pd.to_numeric, errors="coerce").sort_values("step")


def _reference_lines(
    axes, logs: list[tuple[str, pd.DataFrame]], column: str, ratio: float | None
) -> None:
    """The real images' value of ``column`` (a constant of each run: the same real
    images at every step) as a dashed line, and the collapse threshold (``ratio`` times
    it) as a dotted one."""
    values = pd.concat([frame[column] for _, frame in logs if column in frame.columns])
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return
    real = float(values.median())
    who = "held-out real images" if "heldout" in column else "real images"
    axes.axhline(real, color="black", ls="--", lw=1.2, label=f"{who} ({number_text(real)})")
    if ratio is not None and math.isfinite(ratio):
        axes.axhline(
            ratio * real,
            color="#b00",
            ls=":",
            lw=1.2,
            label=f"collapse threshold (×{number_text(ratio)} real)",
        )


def _constant_information(metric: str, series: list[tuple[str, pd.DataFrame]]) -> bool:
    """Whether ``metric`` is an information value (no better or worse: a threshold, a
    real-image value) that does not change over steps in any run."""
    info = value_info(metric)
    if info is None or info.better != "info":
        return False
    values = pd.concat([points[metric] for _, points in series])
    return bool(values.max() - values.min() <= 1e-9 * max(1.0, abs(values.max())))


def _threshold_line(axes, logs: list[tuple[str, pd.DataFrame]]) -> None:
    """The memorization check's near-copy threshold (held-out images' 5th percentile
    distance to the training images) as a dotted line."""
    values = [
        frame["memorization_threshold"] for _, frame in logs if "memorization_threshold" in frame
    ]
    values = pd.to_numeric(pd.concat(values), errors="coerce").dropna() if values else None
    if values is None or values.empty:
        return
    threshold = float(values.median())
    axes.axhline(
        threshold, color="#b00", ls=":", lw=1.2, label=f"near-copy below ({number_text(threshold)})"
    )


def curves_section(study: Study) -> str:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    if not has_generators(study):
        return ""
    runs = _generator_runs(study)
    parts = []
    for variant, named in runs.items():
        logs = [
            (name, frame) for name, folder in named if (frame := _read_metrics(folder)) is not None
        ]
        if not logs:
            continue
        heading = len(parts)
        parts.append(f"<h3>{escape(variant)}</h3>")
        metrics = list(
            dict.fromkeys(m for _, frame in logs for m in _ordered_metrics(frame, study.select_by))
        )
        # per-resolution values (swd_16px, swd_32px...) go into one grid, not a figure each
        details = [m for m in metrics if PER_RESOLUTION.search(m)]
        once = []  # metrics measured at most once per run: a value, not a curve
        constant = []  # values of the real images, the same at every step
        for metric in [m for m in metrics if m not in details and m not in REFERENCES]:
            series = [
                (name, frame[["step", metric]].dropna())
                for name, frame in logs
                if metric in frame.columns
            ]
            series = [(name, points) for name, points in series if len(points)]
            if not series:
                continue
            if max(len(points) for _, points in series) < 2:
                once.append(metric_label(metric))
                continue
            if _constant_information(metric, series):
                # a value of the real images (a threshold...): the same at every step
                constant.append(
                    f"{metric_label(metric)} {number_text(series[0][1][metric].iloc[0])}"
                )
                continue
            figure = Figure(figsize=(5.2, 3.4))
            axes = figure.add_subplot()
            if len(logs) > 10:  # the default cycle has 10 colours
                axes.set_prop_cycle(color=[colormaps["tab20"](i % 20) for i in range(len(logs))])
            for name, points in series:
                # a run measured once is a marked point among curves, not a line
                style = "-" if len(points) > 1 else "none"
                axes.plot(points["step"], points[metric], marker="o", ms=3, ls=style, label=name)
            if metric in REFERENCE:
                # the collapse threshold is a multiple of the real MS-SSIM only
                ratio = study.checks.collapse_ratio if metric == "ms_ssim_fake" else None
                _reference_lines(axes, logs, REFERENCE[metric], ratio)
            if metric == "memorization_median_fake":
                _threshold_line(axes, logs)
            limit = study.checks.memorization_limit
            if metric == "memorization_share" and limit is not None:
                axes.axhline(
                    limit, color="#b00", ls=":", lw=1.2, label=f"limit ({number_text(limit)})"
                )
            axes.set_xlabel("step")
            axes.set_ylabel(metric_label(metric))
            axes.set_title(f"{metric_label(metric)}, {variant}")
            if len(logs) > 4:  # beside the plot, where it hides no curve
                figure.set_size_inches(7.2, 3.4)
                axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
            else:
                axes.legend(fontsize=7)
            axes.grid(alpha=0.3)
            parts.append(_plot_html(figure, f"{metric_label(metric)} over training, {variant}"))
        if once:
            parts.append(
                _note(
                    f"measured once per run, so no curve (the value is in the generator "
                    f"results table): {', '.join(once)}."
                )
            )
        if constant:
            parts.append(
                _note(
                    "the same at every step (values of the real images, not of the "
                    f"generator), so no curve: {', '.join(constant)}."
                )
            )
        details = [
            m
            for m in details
            if max((len(f[m].dropna()) for _, f in logs if m in f), default=0) > 1
        ]
        if details:
            parts.append(
                _run_grid(
                    logs,
                    lambda frame, details=details: [c for c in details if c in frame.columns],
                    f"per-resolution metrics, {variant}",
                    marker="o",
                )
            )
        parts.append(_run_grid(logs, _loss_columns, f"training losses, {variant}"))
        if not any(parts[heading + 1 :]):
            parts.append(_note("nothing logged yet (its runs have just started)."))
    if not parts:
        body = _note("no generator metrics (gen/*/*/metrics.csv not found).")
    else:
        body = "\n".join(part for part in parts if part)
    return _section("curves", "Generator training curves", body)


def _loss_columns(frame: pd.DataFrame) -> list[str]:
    return [
        c
        for c in frame.columns
        if c not in NOT_LOSSES and not is_generator_metric(c) and frame[c].notna().any()
    ]


def _run_grid(
    logs: list[tuple[str, pd.DataFrame]],
    columns_of: Callable[[pd.DataFrame], list[str]],
    caption: str,
    marker: str | None = None,
) -> str:
    """One subplot per generator run, one line per column that ``columns_of`` picks;
    runs with nothing to draw yet (just started) are left out, and "" when none is left."""
    from matplotlib.figure import Figure

    logs = [
        (name, frame)
        for name, frame in logs
        if any(frame[c].notna().any() for c in columns_of(frame) if c in frame)
    ]
    if not logs:
        return ""

    columns = min(3, len(logs))
    lines = math.ceil(len(logs) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * lines))
    for index, (name, frame) in enumerate(logs):
        axes = figure.add_subplot(lines, columns, index + 1)
        chosen = columns_of(frame)
        for column in chosen:
            points = frame[["step", column]].dropna()
            # a column logged once is a visible point, not an invisible one-point line
            shown = marker if marker is not None or len(points) > 1 else "o"
            axes.plot(points["step"], points[column], label=column, lw=1, marker=shown, ms=3)
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("step")
        if chosen:
            axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return _plot_html(figure, caption)
