"""The study report: one self-contained HTML file from a study folder.

``write_report(STUDY)`` reads what the study runner wrote (``study.json``,
``results.csv``, the dataset statistics, previews, generator and classifier runs) and
writes ``STUDY/report.html``: every image is embedded as a base64 ``data:`` URI, the
CSS is inline and nothing is fetched from anywhere, so the file can be mailed, archived
or opened offline. Each section is skipped with a short note when its inputs are
missing (a study without generators, without an external test, still running...).

One module per part of the page, in the order they appear: :mod:`.header` (title and
run information, and the footer: how to reproduce the study), :mod:`.dataset`,
:mod:`.classifiers` (results table; confusion matrices and Grad-CAM of the chosen
classifier and its real-only baseline), :mod:`.generators` (results table),
:mod:`.curves` (training curves), :mod:`.samples` (generated samples), :mod:`.pros_cons`
(:mod:`cxrlab.study.findings` as sentences). :mod:`.html` holds the building blocks
(number format, tables, images) and :mod:`.study` what is read of the study folder.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from cxrlab.study.report.classifiers import classifier_section, examples_section
from cxrlab.study.report.curves import curves_section
from cxrlab.study.report.dataset import dataset_section
from cxrlab.study.report.generators import generator_section
from cxrlab.study.report.header import footer_section, title_section
from cxrlab.study.report.html import (
    CSP,
    CSS,
    MISSING,
    PNG_MAGIC,
    SCRIPT,
    Markup,
    _cell_name,
    _duration,
    _figure,
    _note,
    _number,
    _plot_html,
    _section,
    _short_text,
    _table,
    _with_interval,
    figure_png,
    image_html,
)
from cxrlab.study.report.pros_cons import findings_section
from cxrlab.study.report.samples import last_sample, samples_section
from cxrlab.study.report.study import Study, load_study, prediction_loader
from cxrlab.study.report.summary import summary_section
from cxrlab.utils.fs import atomic_write_text
from cxrlab.utils.outputs import check_output_file

#: Names other modules (the leave-site-out section, tests) import from here.
__all__ = [
    "CSP",
    "CSS",
    "MISSING",
    "PNG_MAGIC",
    "REPORT_NAME",
    "SCRIPT",
    "Markup",
    "Study",
    "_cell_name",
    "_duration",
    "_figure",
    "_note",
    "_number",
    "_plot_html",
    "_section",
    "_short_text",
    "_table",
    "_with_interval",
    "figure_png",
    "image_html",
    "last_sample",
    "load_study",
    "prediction_loader",
    "render_report",
    "write_report",
]


REPORT_NAME = "report.html"


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
        title_section(loaded),
        # a leave-site-out study opens with its question; "" for other studies
        transfer_section(loaded),
        summary_section(loaded),  # what was compared, what the intervals say, what was chosen
        dataset_section(loaded),
        classifier_section(loaded),
        generator_section(loaded),
        curves_section(loaded),
        samples_section(loaded),
        examples_section(loaded),
        findings_section(loaded),
        footer_section(loaded),
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
