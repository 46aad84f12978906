"""The report's HTML building blocks: page style and load script, one number format,
tables, notes, sections and embedded images."""

from __future__ import annotations

import base64
import io
import json
import math
from html import escape
from pathlib import Path

import pandas as pd

from cxrlab.study.numbers import MISSING, duration_text, number_text
from cxrlab.study.report.study import Study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #1d1d1d; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #999; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
caption { caption-side: bottom; text-align: left; font-size: 0.85em;
  color: #444; padding-top: 0.3em; }
tr.best td { background: #fff3c4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { font-size: 0.85em; color: #555; white-space: nowrap; }
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
details { margin: 0.4em 0; } summary { cursor: pointer; color: #234; }
.summary { background: #f4f7fb; border-left: 4px solid #4a6fa5; padding: 0.3em 1em; }
.reading { background: #fafafa; border: 1px solid #ddd; padding: 0.3em 1em; font-size: 0.92em; }
.reading dt { font-weight: 600; } .reading dd { margin: 0 0 0.4em 1.2em; }
.pairs { display: flex; flex-wrap: wrap; gap: 0.5em 1.5em; }
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
  // tables wider than the page (cut at the right edge, or needing a scroll bar)
  var page = document.documentElement.clientWidth, wide = 0;
  var tables = document.getElementsByTagName("table");
  for (var t = 0; t < tables.length; t++) {
    var box = tables[t].getBoundingClientRect();
    if (box.width > 0 && (box.right > page + 1 || box.left < -1)) { wide++; }
  }
  document.body.setAttribute("data-wide-tables", String(wide));
  var line = document.getElementById("image-count");
  if (line) {
    line.textContent = images.length + " images" +
      (loaded < images.length ? " (" + (images.length - loaded) + " failed to load)" : "");
  }
});
"""

#: Only inline styles, inline scripts and data: images: the page can fetch nothing.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{escape(title)}</h2>\n{body}\n</section>'


class Markup(str):
    """Text that is already HTML: :func:`_table` inserts it as it is; it escapes any
    other cell, so no caller can forget to."""


def _number(value: object, digits: int = 3) -> str:
    """A number as plain text in the report's one format (:func:`number_text`: about
    three significant digits; whole values as counts), escaped where it is inserted;
    text stays text, nothing is :data:`MISSING`. ``digits`` is kept for callers and
    ignored: one format for the whole report."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value) if value not in (None, "") else MISSING
    if not math.isfinite(number):
        return MISSING
    return number_text(number, count=number.is_integer() and abs(number) >= 1)


def _with_interval(mean: float, low: float, high: float) -> str:
    if pd.isna(mean):
        return MISSING
    text = number_text(mean)
    if not (pd.isna(low) or pd.isna(high)):
        text += f'<br><span class="ci">[{number_text(low)}, {number_text(high)}]</span>'
    return Markup(text)


def _duration(seconds: object) -> str:
    """A duration in words (``1 min 40 s``; :func:`duration_text`)."""
    return duration_text(seconds)


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


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
