"""The study report: one self-contained HTML file from a study folder.

``write_report(STUDY)`` reads what the study runner wrote (``study.json``,
``results.csv``, the dataset statistics, previews, generator and classifier runs) and
writes ``STUDY/report.html``: every image is embedded as a base64 ``data:`` URI, the
CSS is inline and nothing is fetched from anywhere, so the file can be mailed, archived
or opened offline. Each section is skipped with a short note when its inputs are
missing (a study without generators, without an external test, still running...).

Sections: title, dataset, classifier results, generator results, generator metric
curves, last generator samples, confusion matrices and Grad-CAM of the best classifier
and its real-only baseline, pros and cons (:mod:`cxrlab.study.findings`), and how to
reproduce the study.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import pandas as pd

import cxrlab
from cxrlab.errors import CxrlabError
from cxrlab.metrics.registry import VALUES, value_info
from cxrlab.study.findings import (
    CHECK_VALUES,
    COLLAPSE_MS_SSIM_RATIO,
    GROUPS,
    MEMORIZATION_LIMIT,
    NOT_MEASURED,
    SELECTION_METRIC,
    SUMMARY_METRICS,
    TIME_RATIO_CON,
    GeneratorChecks,
    all_findings,
    best_classifier,
    best_generators,
    grouped_statements,
    is_generator_metric,
    level_text,
    matching_baseline,
    metric_label,
    rows_of,
    study_factors,
    summarise_classifiers,
)
from cxrlab.utils.fs import atomic_write_text
from cxrlab.utils.outputs import check_output_file

REPORT_NAME = "report.html"
SAMPLE_PATTERN = re.compile(r"step_(\d+)\.png$")
#: Metric columns of one resolution of a multi-resolution metric (``swd_32px``).
PER_RESOLUTION = re.compile(r"_\d+px$")
#: metrics.csv columns that are neither a loss nor a metric.
NOT_LOSSES = frozenset({"step", "seconds", "metrics_seconds", "epoch"})
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
MISSING = "–"

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #1d1d1d; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #999; padding: 0.25em 0.5em; text-align: left; vertical-align: top;
         white-space: nowrap; }
th { background: #eee; white-space: normal; }
caption { caption-side: bottom; text-align: left; font-size: 0.85em;
  color: #444; padding-top: 0.3em; }
tr.best td { background: #fff3c4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { font-size: 0.85em; color: #555; } td span[title] { white-space: nowrap; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; max-width: 100%; }
figcaption { font-size: 0.85em; color: #444; }
.note { color: #555; font-style: italic; }
.warning { background: #ffe0e0; border: 2px solid #c00; padding: 0.5em 1em; }
.meta td { border: none; padding: 0.1em 0.8em 0.1em 0; }
.pros { color: #135e13; } .cons { color: #8a1010; } .unclear { color: #555; }
footer { margin-top: 3em; border-top: 1px solid #ccc; font-size: 0.85em; color: #444; }
code { background: #f3f3f3; padding: 0.1em 0.3em; }
.scroll { overflow-x: auto; max-width: 100%; }
"""

#: Counts the images and those that decoded; tests read these attributes.
SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
  }
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-images-loaded", String(loaded));
  var line = document.getElementById("image-count");
  if (line) {
    line.textContent = images.length + " images" +
      (loaded < images.length ? " (" + (images.length - loaded) + " failed to load)" : "");
  }
});
"""

#: Only inline styles, inline scripts and data: images: the page can fetch nothing.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@dataclass
class Study:
    """What the report reads of a study folder.

    Attributes:
        root: the study folder.
        info: ``study.json`` (empty when missing).
        spec: ``spec.yaml`` (empty when missing).
        results: ``results.csv`` (empty when missing).
        notes: problems met while reading (shown in the report).
    """

    root: Path
    info: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)
    results: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    @property
    def axes(self) -> dict:
        axes = self.info.get("axes")
        return axes if isinstance(axes, dict) else {}

    @property
    def select_by(self) -> str:
        return str(self.info.get("select_by") or "swd")

    @property
    def classifier_selected_by(self) -> str:
        """What the best classifier cell is chosen by (study.json; validation ROC-AUC
        before it said, or with ``evaluation: split``)."""
        return str(self.info.get("classifier_selected_by") or SELECTION_METRIC)

    @property
    def checks(self) -> GeneratorChecks:
        """How the run checked its generators (study.json; the defaults before it said)."""
        return GeneratorChecks(
            self.info.get("collapse_ratio", COLLAPSE_MS_SSIM_RATIO),
            self.info.get("memorization_limit", MEMORIZATION_LIMIT),
        )

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.spec.get("name") or self.root.name)

    def path(self, relative: str | Path) -> Path | None:
        """``root / relative`` when it stays inside the study folder, else None."""
        path = (self.root / relative).resolve()
        return path if path.is_relative_to(self.root.resolve()) else None


def load_study(study: str | Path) -> Study:
    """Read ``study.json``, ``spec.yaml`` and ``results.csv`` of a study folder.

    Raises:
        CxrlabError: ``study`` is not a folder, or not a study's.
    """
    root = Path(study)
    if not root.is_dir():
        raise CxrlabError(
            f"study folder {root} not found; run `cxrlab study run SPEC --out {root}`"
        )
    if not (root / "study.json").is_file() and not (root / "results.csv").is_file():
        raise CxrlabError(
            f"{root} is not a study folder (no study.json or results.csv); give the --out of "
            "`cxrlab study run`"
        )
    loaded = Study(root)
    if (root / "study.json").is_file():
        try:
            info = json.loads((root / "study.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            loaded.notes.append(f"study.json could not be read: {error}")
        else:
            if isinstance(info, dict):
                loaded.info = info
            else:
                loaded.notes.append("study.json does not hold an object; ignored")
    if (root / "spec.yaml").is_file():
        import yaml

        try:
            spec = yaml.safe_load((root / "spec.yaml").read_text(encoding="utf-8"))
            loaded.spec = spec if isinstance(spec, dict) else {}
        except (OSError, yaml.YAMLError) as error:
            loaded.notes.append(f"spec.yaml could not be read: {error}")
    if (root / "results.csv").is_file():
        try:
            loaded.results = pd.read_csv(root / "results.csv", keep_default_na=True)
        except (OSError, ValueError) as error:  # EmptyDataError is a ValueError
            loaded.notes.append(f"results.csv could not be read: {error}")
    return loaded


def write_report(study: str | Path, out: str | Path | None = None, *, force: bool = False) -> Path:
    """Write the study's report as one self-contained HTML file.

    Args:
        study: the study folder (as written by ``cxrlab study run``).
        out: the HTML file to write (default ``STUDY/report.html``).
        force: replace an existing ``out`` that is not a cxrlab report.

    Returns:
        The path written.

    Raises:
        CxrlabError: ``study`` is not a folder.
        OutputError: ``out`` is a folder, or (unless ``force``) an existing file that
            is not a report (``results.csv``, a spec...).
    """
    path = Path(out) if out is not None else Path(study) / REPORT_NAME
    check_output_file(path, what="an HTML report of cxrlab", is_kind=_is_report, force=force)
    html = render_report(study)
    atomic_write_text(path, html)
    return path


def _is_report(path: Path) -> bool:
    """Whether ``path`` holds a report this module wrote (so a rerun may replace it)."""
    with open(path, "rb") as handle:
        head = handle.read(8192)  # the <title> comes after the security policy
    return head.startswith(b"<!DOCTYPE html>") and b"cxrlab study report" in head


def render_report(study: str | Path) -> str:
    """The report's HTML text (see :func:`write_report`)."""
    from cxrlab.study.transfer import transfer_section

    loaded = load_study(study)
    sections = [
        _title_section(loaded),
        transfer_section(loaded),  # "" unless the study evaluates leave-site-out
        _dataset_section(loaded),
        _classifier_section(loaded),
        _generator_section(loaded),
        _curves_section(loaded),
        _samples_section(loaded),
        _examples_section(loaded),
        _findings_section(loaded),
        _footer(loaded),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(loaded.name)}: cxrlab study report</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + f"\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------- small HTML helpers


def _synthetic_caveat_notes(caveats: object) -> list[str]:
    """Notes saying, in words, which classifier cells trained on synthetic images taken
    unverified or made from data preprocessed otherwise (study.json ``synthetic_caveats``)."""
    if not isinstance(caveats, dict) or not caveats:
        return []
    notes = []
    unverified = sorted(
        c for c, said in caveats.items() if any("unverified" in str(n) for n in said)
    )
    if unverified:
        notes.append(
            f"{len(unverified)} classifier cell(s) trained on synthetic images taken unverified "
            "(--synthetic-unverified): they carry no provenance, so whether their generator "
            "learned validation or test images is not known: " + ", ".join(unverified)
        )
    mismatch = {
        cell: [str(n).split(" differ in ", 1)[-1] for n in said if str(n).startswith("preprocessing mismatch")]
        for cell, said in caveats.items()
    }  # fmt: skip
    mismatch = {cell: differences for cell, differences in mismatch.items() if differences}
    if mismatch:
        differences = sorted({d for found in mismatch.values() for d in found})
        notes.append(
            f"{len(mismatch)} classifier cell(s) trained on synthetic images from data "
            f"preprocessed otherwise, allowed ({'; '.join(differences)}: the generator "
            "learned the nearest power-of-two size and its images were resized): "
            + ", ".join(sorted(mismatch))
        )
    return [_note(text) for text in notes]


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{escape(title)}</h2>\n{body}\n</section>'


class Markup(str):
    """Text that is already HTML: :func:`_table` inserts it as it is; it escapes any
    other cell, so no caller can forget to."""


def _number(value: object, digits: int = 3) -> str:
    """A number as plain text (escaped where it is inserted), or MISSING."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value) if value not in (None, "") else MISSING
    if math.isnan(number):
        return MISSING
    if number.is_integer() and abs(number) >= 1:
        return f"{int(number)}"
    return f"{number:.{digits}g}" if abs(number) >= 100 else f"{number:.{digits}f}"


def _with_interval(mean: float, low: float, high: float) -> str:
    if pd.isna(mean):
        return MISSING
    text = f"{mean:.3f}"
    if not (pd.isna(low) or pd.isna(high)):
        text += f'<br><span class="ci">[{low:.3f}, {high:.3f}]</span>'
    return Markup(text)


def _duration(seconds: object) -> str:
    try:
        total = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return MISSING
    if math.isnan(total):
        return MISSING
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(round(total), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _table(
    headers: list[str],
    rows: list[list[str]],
    *,
    numeric: set[int] | None = None,
    row_classes: list[str] | None = None,
    caption: str = "",
) -> str:
    """A table. Headers and plain-text cells are escaped here; a :class:`Markup` cell is
    inserted as the HTML it is."""
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for index, cells in enumerate(rows):
        css = row_classes[index] if row_classes else ""
        tds = "".join(
            f'<td class="num">{_cell_html(c)}</td>' if i in numeric else f"<td>{_cell_html(c)}</td>"
            for i, c in enumerate(cells)
        )
        body.append(f'<tr class="{css}">{tds}</tr>' if css else f"<tr>{tds}</tr>")
    caption_html = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table>{caption_html}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _cell_html(cell: object) -> str:
    return cell if isinstance(cell, Markup) else escape(str(cell))


def _short_text(text: str, width: int = 24) -> str | Markup:
    """``text`` cut to ``width`` characters (the whole of it as a tooltip) so one long
    value cannot widen a table past the page."""
    if len(text) <= width:
        return text
    return Markup(f'<span title="{escape(text)}">{escape(text[: width - 1])}…</span>')


def _cell_name(cell: object) -> Markup:
    """A cell's short name (its last path part), the full id as a tooltip."""
    full = str(cell)
    return Markup(f'<span title="{escape(full)}">{escape(full.rsplit("/", 1)[-1])}</span>')


def _data_uri(data: bytes) -> str | None:
    if data.startswith(PNG_MAGIC):
        mime = "image/png"
    elif data.startswith(JPEG_MAGIC):
        mime = "image/jpeg"
    else:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_html(data: bytes, alt: str) -> str:
    """An ``<img>`` holding ``data`` (PNG or JPEG bytes) as a base64 data URI."""
    uri = _data_uri(data)
    if uri is None:
        return _note(f"{alt}: not a PNG or JPEG image")
    return f'<img src="{uri}" alt="{escape(alt)}">'


def _figure(study: Study, relative: str | Path, caption: str) -> str:
    """A captioned image from a file of the study, or a note when it is missing."""
    path = study.path(relative)
    if path is None or not path.is_file():
        return _note(f"{caption}: {relative} not found")
    return (
        f"<figure>{image_html(path.read_bytes(), caption)}"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def figure_png(figure) -> bytes:
    """A matplotlib Figure rendered to PNG bytes in memory (Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def _plot_html(figure, caption: str) -> str:
    return (
        f"<figure>{image_html(figure_png(figure), caption)}"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


# ---------------------------------------------------------------- sections


def _title_section(study: Study) -> str:
    info = study.info
    description = info.get("description") or study.spec.get("description") or ""
    cells = [c for c in info.get("cells", []) if isinstance(c, dict)]
    finished = sum(c.get("status") == "finished" for c in cells)
    pending = [str(c.get("id", "?")) for c in cells if c.get("status") != "finished"]
    planned = info.get("planned_cells")
    total = max(len(cells), planned if isinstance(planned, int) else 0)
    not_started = total - len(cells)
    meta = [
        ("updated", escape(str(info.get("updated", MISSING)))),
        ("time (all cells)", escape(_duration(info.get("wall_seconds")))),
        ("device", escape(str(info.get("device", MISSING)))),
        ("cells finished", f"{finished} / {total}" if total else MISSING),
    ]
    parts = [f"<header>\n<h1>{escape(study.name)}</h1>"]
    if description:
        parts.append(f"<p>{escape(str(description))}</p>")
    parts.append(
        '<table class="meta">'
        + "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in meta)
        + "</table>"
    )
    if pending or not_started > 0:
        shown = ", ".join(escape(p) for p in pending[:10])
        if len(pending) > 10:
            shown += f" and {len(pending) - 10} more"
        if not_started > 0:
            shown += f"{'; ' if shown else ''}{not_started} not started yet"
        parts.append(
            f'<div class="warning" role="alert"><strong>Unfinished study:</strong> '
            f"{total - finished} of {total} cells are not finished ({shown}); "
            "the numbers below cover the finished cells only.</div>"
        )
    skipped = info.get("skipped_cells") or {}
    if isinstance(skipped, dict) and skipped:
        reasons = sorted(set(map(str, skipped.values())))
        parts.append(
            _note(f"{len(skipped)} cells skipped ({'; '.join(reasons)}): " + ", ".join(skipped))
        )
    parts.extend(_synthetic_caveat_notes(info.get("synthetic_caveats")))
    if not info:
        parts.append(_note("study.json not found: no run information."))
    parts.extend(_note(n) for n in study.notes)
    parts.append("</header>")
    return "\n".join(parts)


def _dataset_section(study: Study) -> str:
    stats_dir = study.root / "data" / "stats"
    parts = []
    stats = _read_json(stats_dir / "stats.json")
    if stats is None:
        parts.append(_note("no dataset statistics (data/stats/stats.json not found)."))
    else:
        parts.append(_stats_tables(stats))
    dataset = _read_json(study.root / "data" / "dataset" / "dataset.json")
    if dataset and isinstance(dataset.get("counts"), dict):
        counts = dataset["counts"]
        parts.append(
            "<p>Import: "
            + ", ".join(
                f"{escape(str(counts[k]))} {k}"
                for k in ("inputs", "accepted", "rejected")
                if k in counts
            )
            + ".</p>"
        )
    figures = [
        _figure(study, f"data/stats/{name}.png", title)
        for name, title in (
            ("class_balance", "Class balance per split"),
            ("sizes", "Image sizes"),
            ("modes", "Image modes"),
        )
        if (stats_dir / f"{name}.png").is_file()
    ]
    parts.extend(figures)
    previews = _preview_files(study)
    if previews:
        parts.append("<h3>Preprocessing variants</h3>")
        parts.extend(
            _figure(study, path.relative_to(study.root), f"preview of {path.stem}")
            for path in previews
        )
    else:
        parts.append(_note("no preview grids (previews/*.png not found)."))
    return _section("dataset", "Dataset", "\n".join(parts))


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _stats_tables(stats: dict) -> str:
    summary = [
        (label, stats[key])
        for key, label in (
            ("images", "images"),
            ("patients", "patients"),
            ("covid_positive", "COVID-19 positive images"),
        )
        if key in stats
    ]
    for key, label in (("width_px", "width (px)"), ("height_px", "height (px)")):
        values = stats.get(key)
        if isinstance(values, dict):
            summary.append(
                (
                    label,
                    f"{_number(values.get('min'))}–{_number(values.get('max'))}, "
                    f"median {_number(values.get('50%'))}",
                )
            )
    if isinstance(stats.get("modes"), dict):
        summary.append(("modes", ", ".join(f"{k} {v}" for k, v in stats["modes"].items())))
    duplicates = stats.get("duplicates")
    if isinstance(duplicates, dict):
        summary.append(
            (
                "duplicate groups",
                f"{duplicates.get('groups', MISSING)} groups, "
                f"{duplicates.get('images_in_groups', MISSING)} images, "
                f"{duplicates.get('groups_spanning_splits', MISSING)} spanning splits",
            )
        )
    rejected = stats.get("rejected_by_reason")
    if isinstance(rejected, dict) and rejected:
        summary.append(("rejected", ", ".join(f"{k} {v}" for k, v in rejected.items())))
    parts = [
        _table(["", "value"], [[str(k), str(v)] for k, v in summary])
        if summary
        else _note("stats.json holds no summary numbers.")
    ]
    for key, title, first in (
        ("class_balance_per_split", "Images per split and label", "split"),
        ("source_by_label", "Images per source and label", "source"),
    ):
        table = stats.get(key)
        if isinstance(table, dict) and table:
            parts.append(f"<h3>{escape(title)}</h3>" + _crosstab(table, first))
    return "\n".join(parts)


def _crosstab(table: dict, first: str) -> str:
    labels = list(dict.fromkeys(k for row in table.values() for k in (row or {})))
    rows = [
        [str(name)] + [_number((row or {}).get(label, 0)) for label in labels]
        for name, row in table.items()
    ]
    return _table([first, *map(str, labels)], rows, numeric=set(range(1, len(labels) + 1)))


def _variants(study: Study) -> list[str]:
    results = study.results
    if "variant" not in results.columns:
        return []
    return [v for v in dict.fromkeys(level_text(v) for v in results["variant"]) if v]


def _preview_files(study: Study) -> list[Path]:
    folder = study.root / "previews"
    if not folder.is_dir():
        return []
    files = {p.stem: p for p in folder.glob("*.png")}
    order = [v for v in _variants(study) if v in files]
    return [files[v] for v in order] + [files[k] for k in sorted(files) if k not in order]


def _classifier_section(study: Study) -> str:
    summary = summarise_classifiers(study.results, study.axes)
    if summary.empty:
        return _section("classifiers", "Classifier results", _note("no classifier results."))
    factors = study_factors(study.results, study.axes)["classifier"]
    by = study.classifier_selected_by
    best = best_classifier(study.results, study.axes, by)
    metrics = [m for m in SUMMARY_METRICS if m in summary.columns]
    headers = ["", "cell", *factors, "seeds", metric_label(SELECTION_METRIC)]
    headers += [*map(metric_label, metrics), "seconds"]
    rows, classes = [], []
    for _, row in summary.iterrows():
        is_best = best is not None and row["cell"] == best.cell
        cells = ["★ best" if is_best else "", _cell_name(row["cell"])]
        cells += [str(row[f]) for f in factors]
        cells.append(str(row["n_seeds"]))
        cells.append(_number(row.get(SELECTION_METRIC)))
        cells += [_with_interval(row[m], row[f"{m}_low"], row[f"{m}_high"]) for m in metrics]
        cells.append(_number(row["seconds"], 1))
        rows.append(cells)
        classes.append("best" if is_best else "")
    start = 2 + len(factors)
    caption = _interval_caption(set(summary["interval"]), by)
    parts = [
        _table(
            headers,
            rows,
            numeric=set(range(start, len(headers))),
            row_classes=classes,
            caption=caption,
        )
    ]
    if best is not None and by != SELECTION_METRIC:
        parts.insert(
            0,
            "<p>Best classifier, chosen by leave-site-out validation (highest mean "
            f"{escape(metric_label(by))} over seeds, {best.chosen_value:.3f}: each seed's mean "
            "over folds of the AUC on sites its fold never trained on; the test split took "
            f"no part in the choice): <strong>{escape(best.cell)}</strong>, test ROC-AUC "
            f"{best.roc_auc:.3f} over {best.n_seeds} seed{'s' if best.n_seeds != 1 else ''}.</p>",
        )
    elif best is not None:
        parts.insert(
            0,
            f"<p>Best classifier, chosen on validation (highest mean validation ROC-AUC "
            f"over seeds, {best.val_roc_auc:.3f}; the test split took no part in the choice): "
            f"<strong>{escape(best.cell)}</strong>, test ROC-AUC {best.roc_auc:.3f} over "
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
        + f". ★ marks the best cell, chosen by mean {metric_label(by)}; times are training "
        "seconds."
    )


def _generator_rows(study: Study) -> pd.DataFrame:
    return rows_of(study.results, "generator")


def _generator_section(study: Study) -> str:
    rows = _generator_rows(study)
    if rows.empty:
        return _section("generators", "Generator results", _note("no generator results."))
    checks = study.checks
    # every value a check that is on reads has a column, "not measured" where it is missing
    checked = [value for metric in checks.metrics() for value in CHECK_VALUES[metric]]
    metrics = _ordered_metrics(rows, study.select_by)
    metrics += [value for value in checked if value not in metrics]
    factors = study_factors(study.results, study.axes)["generator"]
    extra = [c for c in ("model", "steps") if c in rows.columns and c not in factors]
    best = {b.cell for b in best_generators(study.results, study.select_by, checks).values()}
    flaws = checks.flaws(rows)
    has_selected = "selected" in rows.columns
    named = ["cell"] if "generator" not in factors else []
    # 'selected' right after the mark, so a narrow page shows it without scrolling
    chosen = ["selected"] if has_selected else []
    headers = ["", *chosen, *named, *factors, *extra, *[metric_label(m) for m in metrics]]
    headers.append("seconds")
    table_rows, classes = [], []
    for index, row in rows.iterrows():
        is_best = row["cell"] in best
        mark = "★ best" if is_best else flaws.loc[index]
        cells = [mark]
        if has_selected:
            cells.append("yes" if level_text(row["selected"]) == "1" else "no")
        cells += [_cell_name(row["cell"]) for _ in named]
        cells += [_short_text(level_text(row[c])) for c in [*factors, *extra]]
        cells += [_checked_number(row.get(m), m in checked) for m in metrics]
        cells.append(_number(row.get("seconds"), 1))
        table_rows.append(cells)
        classes.append("best" if is_best else "")
    start = 1 + len(chosen) + len(named) + len(factors) + len(extra)
    info = value_info(study.select_by)
    direction = info.direction if info else "lower is better"
    caption = (
        "Final metric values, measured against held-out real images of the class drawn (the "
        "validation split of each variant's own preprocessing, so values compare only within "
        f"a variant). ★ marks each variant's best generator, chosen on validation by "
        f"{metric_label(study.select_by)} ({direction}); 'collapsed' marks generators whose "
        f"images are more than {checks.collapse_ratio or math.inf:g} times as alike as real "
        "ones (mean MS-SSIM), 'memorizes' those with a memorization share (near-copies of "
        f"training images) above {checks.memorization_limit or math.inf:g}, and '{NOT_MEASURED}' "
        "those lacking a value one of these checks reads (they could not be checked); none of "
        "them is ever chosen. 'selected' is the runner's choice for the synthetic images."
    )
    table = _table(
        headers,
        table_rows,
        numeric=set(range(start, start + len(metrics) + 1)),
        row_classes=classes,
        caption=caption,
    )
    return _section("generators", "Generator results", table)


def _checked_number(value: object, checked: bool) -> str:
    """A generator metric value; one a generator check reads says it was not measured
    when it is missing, rather than nothing."""
    try:
        measured = math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        measured = False
    return NOT_MEASURED if checked and not measured else _number(value, 4)


def _ordered_metrics(frame: pd.DataFrame, first: str) -> list[str]:
    """Generator metric columns of ``frame``: ``first``, then the registry's order, then
    per-resolution values; spreads (``kid_std``) are left out."""
    present = [
        c
        for c in frame.columns
        if is_generator_metric(c)
        and not c.endswith("_std")
        and pd.to_numeric(frame[c], errors="coerce").notna().any()
    ]
    known = [m for m in (first, *VALUES) if m in present]
    return list(dict.fromkeys(known + sorted(present)))


def _generator_runs(study: Study) -> dict[str, list[tuple[str, Path]]]:
    """Generator run folders by variant: ``{variant: [(name, folder), ...]}``."""
    runs: dict[str, list[tuple[str, Path]]] = {}
    seen: set[Path] = set()
    rows = _generator_rows(study)
    for _, row in rows.iterrows():
        folder = study.path(level_text(row.get("folder")) or str(row["cell"]))
        if folder is None or folder in seen or not folder.is_dir():
            continue
        seen.add(folder)
        variant = level_text(row.get("variant")) or folder.parent.name
        # the run folder's name is unique within a variant (``gan-aug_mild``)
        runs.setdefault(variant, []).append((folder.name, folder))
    for path in sorted((study.root / "gen").glob("*/*/metrics.csv")):
        folder = path.parent.resolve()
        if folder not in seen:
            seen.add(folder)
            runs.setdefault(folder.parent.name, []).append((folder.name, folder))
    return runs


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


def _curves_section(study: Study) -> str:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    runs = _generator_runs(study)
    parts = []
    for variant, named in runs.items():
        logs = [
            (name, frame) for name, folder in named if (frame := _read_metrics(folder)) is not None
        ]
        if not logs:
            continue
        parts.append(f"<h3>{escape(variant)}</h3>")
        metrics = list(
            dict.fromkeys(m for _, frame in logs for m in _ordered_metrics(frame, study.select_by))
        )
        # per-resolution values (swd_16px, swd_32px...) go into one grid, not a figure each
        details = [m for m in metrics if PER_RESOLUTION.search(m)]
        for metric in [m for m in metrics if m not in details]:
            figure = Figure(figsize=(5.2, 3.4))
            axes = figure.add_subplot()
            if len(logs) > 10:  # the default cycle has 10 colours
                axes.set_prop_cycle(color=[colormaps["tab20"](i % 20) for i in range(len(logs))])
            for name, frame in logs:
                if metric in frame.columns:
                    points = frame[["step", metric]].dropna()
                    if len(points):
                        axes.plot(points["step"], points[metric], marker="o", ms=3, label=name)
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
    if not parts:
        body = _note("no generator metrics (gen/*/*/metrics.csv not found).")
    else:
        body = "\n".join(parts)
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
    """One subplot per generator run, one line per column that ``columns_of`` picks."""
    from matplotlib.figure import Figure

    columns = min(3, len(logs))
    lines = math.ceil(len(logs) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * lines))
    for index, (name, frame) in enumerate(logs):
        axes = figure.add_subplot(lines, columns, index + 1)
        chosen = columns_of(frame)
        for column in chosen:
            points = frame[["step", column]].dropna()
            axes.plot(points["step"], points[column], label=column, lw=1, marker=marker, ms=3)
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("step")
        if chosen:
            axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return _plot_html(figure, caption)


def last_sample(folder: Path) -> Path | None:
    """The ``samples/step_NNNNNN.png`` of the highest step in a generator run, or None."""
    samples = [
        (int(match.group(1)), path)
        for path in (folder / "samples").glob("step_*.png")
        if (match := SAMPLE_PATTERN.search(path.name))
    ]
    return max(samples)[1] if samples else None


def _samples_section(study: Study) -> str:
    parts = []
    for variant, named in _generator_runs(study).items():
        for name, folder in named:
            sample = last_sample(folder)
            if sample is not None:
                step = int(SAMPLE_PATTERN.search(sample.name).group(1))
                parts.append(
                    _figure(
                        study,
                        sample.relative_to(study.root.resolve()),
                        f"{variant} / {name}, step {step}",
                    )
                )
    body = "\n".join(parts) if parts else _note("no generator samples found.")
    return _section("samples", "Generated samples (last step of each generator)", body)


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


def _examples_section(study: Study) -> str:
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


def prediction_loader(root: Path):
    """Reads a classifier cell's per-seed predictions (``eval-test``/``eval-external``)."""
    cache: dict[tuple[str, int, str], pd.DataFrame | None] = {}

    def load(folder: str, seed: int, split: str) -> pd.DataFrame | None:
        key = (folder, seed, split)
        if key not in cache:
            path = root / folder / f"eval-{split}" / f"seed_{seed}" / f"predictions_{split}.csv"
            cache[key] = pd.read_csv(path) if path.is_file() else None
        return cache[key]

    return load


def _findings_section(study: Study) -> str:
    findings = all_findings(
        study.results, study.axes, study.select_by, predictions=prediction_loader(study.root)
    )
    if not findings:
        body = _note(
            "no factor has two or more levels with matching pairs of cells, so no effect "
            "can be measured."
        )
        return _section("findings", "Pros and cons", body)
    parts = [
        "<p>Each level is compared with the factor's reference level on pairs of cells "
        "that differ in that factor only (same other settings, same seed); each amount of "
        "synthetic images is also compared with its control arm (as many real positives "
        "oversampled), which tells the images' effect from the class prevalence's. Differences "
        "are level minus reference with a 95% t-interval over the pairs (training "
        "variation: seeds and the other settings) and, for classifier metrics, a 95% "
        "interval from one patient bootstrap of the shared test images applied to every "
        "pair (the test set's sampling variation); a pro or con needs both intervals to "
        "exclude zero, and, with the many comparisons of one report, its p-value (the larger "
        "of the two) must stay below 0.05 after Holm's correction across all of them. Time "
        f"is the geometric mean ratio of training seconds: above ×{TIME_RATIO_CON:.2f} it "
        f"counts as a con, below ×{1 / TIME_RATIO_CON:.2f} as a pro. Generator effects use "
        f"{escape(metric_label(study.select_by))} and are compared only within a "
        "preprocessing variant (each variant's generators are measured against its own "
        "preprocessed images).</p>"
    ]
    classes = {"Pros": "pros", "Cons": "cons", "No clear effect": "unclear"}
    for (table, factor), groups in grouped_statements(findings).items():
        parts.append(f"<h3>{escape(factor)} ({escape(table)}s)</h3>")
        for title in GROUPS.values():
            items = groups[title]
            if items:
                parts.append(
                    f'<h4 class="{classes[title]}">{escape(title)}</h4><ul>'
                    + "".join(f"<li>{escape(item)}</li>" for item in items)
                    + "</ul>"
                )
    best = best_generators(study.results, study.select_by, study.checks)
    if best:
        parts.append(
            "<p>Best generator per variant, chosen on validation images by "
            f"{escape(metric_label(study.select_by))}: "
            + "; ".join(f"{escape(v)}: {escape(b.cell)} ({b.value:.4g})" for v, b in best.items())
            + ".</p>"
        )
    return _section("findings", "Pros and cons", "\n".join(parts))


def _reproduce_html(study: Study) -> str:
    """Commands that rerun and report the study, with absolute paths so they work from
    any folder."""
    out = study.root.resolve()
    recorded = Path(str(study.info.get("spec") or ""))
    note = ""
    if str(recorded) not in ("", ".") and recorded.is_absolute():
        spec, target = recorded, out  # the spec as run; the same folder resumes/skips
    else:
        # only the copy in the study folder is known, and a study may not be written
        # into the folder holding its spec: run it into a new folder
        spec, target = out / "spec.yaml", out.with_name(out.name + "-rerun")
        note = (
            " (the copy of the spec kept in the study folder; its relative paths are "
            "relative to that folder, so copy it beside its data if it has any)"
        )
    run = f"cxrlab study run {shlex.quote(str(spec))} --out {shlex.quote(str(target))}"
    report = f"cxrlab study report {shlex.quote(str(target))}"
    return f"<code>{escape(run)}</code>{escape(note)}, then <code>{escape(report)}</code>."


def _footer(study: Study) -> str:
    version = getattr(cxrlab, "__version__", "unknown")
    return (
        f"<footer>\n<p>Reproduce (from any folder): {_reproduce_html(study)}</p>\n"
        f"<p>Written by cxrlab {escape(str(version))}.</p>\n"
        '<p id="image-count"></p>\n</footer>'
    )
