"""The report's classifier sections: the results table (the cell chosen on validation
marked) and the confusion matrices and Grad-CAM of that cell and its real-only baseline."""

from __future__ import annotations

from html import escape
from pathlib import Path

from cxrlab.study.findings import (
    SELECTION_METRIC,
    SUMMARY_METRICS,
    best_classifier,
    matching_baseline,
    metric_label,
    study_factors,
    summarise_classifiers,
)
from cxrlab.study.numbers import number_text
from cxrlab.study.report.html import (
    _cell_name,
    _duration,
    _figure,
    _note,
    _number,
    _section,
    _table,
    _with_interval,
)
from cxrlab.study.report.study import Study


def classifier_section(study: Study) -> str:
    summary = summarise_classifiers(study.results, study.axes)
    if summary.empty:
        return _section("classifiers", "Classifier results", _note("no classifier results."))
    factors = study_factors(study.results, study.axes)["classifier"]
    by = study.classifier_selected_by
    best = best_classifier(study.results, study.axes, by)
    metrics = [m for m in SUMMARY_METRICS if m in summary.columns]
    # a setting every cell shares is said once above the table, not in a column each row
    shared = {f: summary[f].iloc[0] for f in factors if summary[f].nunique() == 1}
    factors = [f for f in factors if f not in shared]
    headers = ["", "cell", *factors, "seeds", metric_label(SELECTION_METRIC)]
    headers += [*map(metric_label, metrics), "time"]
    rows, classes = [], []
    for _, row in summary.iterrows():
        is_best = best is not None and row["cell"] == best.cell
        cells = ["★ best" if is_best else "", _cell_name(row["cell"])]
        cells += [str(row[f]) for f in factors]
        cells.append(str(row["n_seeds"]))
        cells.append(_number(row.get(SELECTION_METRIC)))
        cells += [_with_interval(row[m], row[f"{m}_low"], row[f"{m}_high"]) for m in metrics]
        cells.append(_duration(row["seconds"]))
        rows.append(cells)
        classes.append("best" if is_best else "")
    start = 2 + len(factors)
    caption = _interval_caption(set(summary["interval"]), by)
    parts = [
        (
            "<p>Every cell: "
            + escape(", ".join(f"{f} {v}" for f, v in shared.items() if str(v) != ""))
            + ".</p>"
            if any(str(v) != "" for v in shared.values())
            else ""
        ),
        _table(
            headers,
            rows,
            numeric=set(range(start, len(headers))),
            row_classes=classes,
            caption=caption,
        ),
    ]
    if best is not None and by != SELECTION_METRIC:
        parts.insert(
            0,
            "<p>Best classifier, chosen by leave-site-out validation (highest mean "
            f"{escape(metric_label(by))} over seeds, {number_text(best.chosen_value)}: each seed's mean "
            "over folds of the AUC on sites its fold never trained on; the test split took "
            f"no part in the choice): <strong>{escape(best.cell)}</strong>, test ROC-AUC "
            f"{number_text(best.roc_auc)} over {best.n_seeds} seed{'s' if best.n_seeds != 1 else ''}.</p>",
        )
    elif best is not None:
        parts.insert(
            0,
            f"<p>Best classifier, chosen on validation (highest mean validation ROC-AUC "
            f"over seeds, {number_text(best.val_roc_auc)}; the test split took no part in the choice): "
            f"<strong>{escape(best.cell)}</strong>, test ROC-AUC {number_text(best.roc_auc)} over "
            f"{best.n_seeds} seed{'s' if best.n_seeds != 1 else ''}.</p>",
        )
    else:
        parts.insert(
            0,
            _note(
                f"no best classifier: results.csv has no {metric_label(by)} to choose by "
                "(a study run by an older cxrlab); the test numbers are not used to choose."
            ),
        )
    return _section("classifiers", "Classifier results", "\n".join(parts))


def _interval_caption(kinds: set[str], by: str = SELECTION_METRIC) -> str:
    text = "Means over seeds, with the 95% interval in brackets: "
    parts = []
    if "seeds+test" in kinds:
        parts.append(
            "over seeds and test patients: the t-interval of the mean over seeds combined "
            "with the seeds' mean patient-bootstrap interval (root sum of squares of the "
            "half-widths), clipped to 0-1 (cells with two or more seeds)"
        )
    if "seeds" in kinds:
        parts.append(
            "t-interval of the mean over seeds, clipped to 0-1 (cells with two or more seeds "
            "and no bootstrap bounds)"
        )
    if "bootstrap" in kinds:
        parts.append("the single seed's patient-bootstrap interval (cells with one seed)")
    return (
        text
        + "; ".join(parts)
        + f". ★ marks the best cell, chosen by mean {metric_label(by)}; time is the mean "
        "training time per seed."
    )


def _first_seed_folder(
    study: Study, cell_folder: str, evaluation: str, seeds: tuple
) -> Path | None:
    base = study.path(Path(cell_folder) / evaluation)
    if base is None or not base.is_dir():
        return None
    for seed in seeds:
        if (base / f"seed_{seed}").is_dir():
            return base / f"seed_{seed}"
    found = sorted(
        (int(p.name.split("_", 1)[1]), p)
        for p in base.glob("seed_*")
        if p.is_dir() and p.name.split("_", 1)[1].isdigit()
    )
    return found[0][1] if found else None


def examples_section(study: Study) -> str:
    best = best_classifier(study.results, study.axes, study.classifier_selected_by)
    if best is None:
        return _section(
            "examples", "Confusion matrices and Grad-CAM", _note("no classifier results.")
        )
    baseline = matching_baseline(study.results, best, study.axes)
    chosen: list[tuple[str, str]] = [("best classifier", best.cell)]
    if baseline is not None and baseline != best.cell:
        chosen.append(("real-only baseline", baseline))
    summary = summarise_classifiers(study.results, study.axes).set_index("cell")
    parts = []
    if baseline is None:
        parts.append(_note("no real-only baseline matching the best classifier."))
    elif baseline == best.cell:
        parts.append(_note("the best classifier is itself the real-only baseline."))
    for role, cell in chosen:
        folder = str(summary.at[cell, "folder"]) or cell
        seeds = tuple(summary.at[cell, "seeds"])
        parts.append(f"<h3>{escape(role)}: {escape(cell)}</h3>")
        figures = []
        for evaluation, files in (
            ("eval-test", ("confusion_matrix_test", "roc_test", "gradcam")),
            ("eval-external", ("confusion_matrix_external",)),
        ):
            seed_folder = _first_seed_folder(study, folder, evaluation, seeds)
            if seed_folder is None:
                continue
            for name in files:
                if (seed_folder / f"{name}.png").is_file():
                    caption = f"{name.replace('_', ' ')}, {seed_folder.name}"
                    figures.append(
                        _figure(
                            study,
                            seed_folder.relative_to(study.root.resolve()) / f"{name}.png",
                            caption,
                        )
                    )
        parts.extend(figures or [_note(f"no evaluation figures found under {folder}.")])
    return _section("examples", "Confusion matrices and Grad-CAM", "\n".join(parts))
