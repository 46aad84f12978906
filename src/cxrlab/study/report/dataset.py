"""The report's "Dataset" section: statistics, import counts, figures and previews."""

from __future__ import annotations

from html import escape
from pathlib import Path

from cxrlab.study.findings import (
    level_text,
)
from cxrlab.study.report.html import MISSING, _figure, _note, _number, _read_json, _section, _table
from cxrlab.study.report.study import Study


def dataset_section(study: Study) -> str:
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
    parts.append(_sites_html(stats))
    return "\n".join(parts)


def _sites_html(stats: dict) -> str:
    """Images per site and label, and a warning naming every site that holds one
    class only (the data's own shortcut); "" when the manifest has no known site."""
    from cxrlab.data.stats import SHORTCUT, SITES_SHOWN, USABLE_SITE_IMAGES

    sites, per_site = stats.get("sites"), stats.get("site_by_label")
    if not isinstance(sites, dict) or not sites.get("known_sites"):
        return ""
    parts = [
        "<h3>Sites</h3>",
        f"<p>{int(sites['known_sites'])} known sites, "
        f"{len(sites.get('usable_sites', []))} usable for leave-site-out "
        f"(at least {USABLE_SITE_IMAGES} images of both classes); "
        f"{int(sites.get('unknown_site_images', 0))} images of unknown site.</p>",
    ]
    single = sites.get("single_class_sites") or []
    if single:
        listed = ", ".join(
            f"{s['site']} ({s['images']}, all {s['class']})" for s in single[:SITES_SHOWN]
        )
        more = f" and {len(single) - SITES_SHOWN} more" if len(single) > SITES_SHOWN else ""
        parts.append(
            _note(
                f"{len(single)} sites hold one class only "
                f"({sites.get('single_class_images', MISSING)} images): {listed}{more}; "
                f"{SHORTCUT}."
            )
        )
    if isinstance(per_site, dict) and per_site:
        shown = dict(list(per_site.items())[:SITES_SHOWN])
        columns = ("images", "covid_positive", "covid_negative")
        table = {site: {c: (row or {}).get(c, 0) for c in columns} for site, row in shown.items()}
        caption = (
            f" (the {SITES_SHOWN} largest of {len(per_site)}; data/stats/site_by_label.csv "
            "has every site)"
            if len(per_site) > SITES_SHOWN
            else ""
        )
        parts.append(f"<p>Images per site{escape(caption)}:</p>" + _crosstab(table, "site"))
    return "\n".join(parts)


def _crosstab(table: dict, first: str) -> str:
    labels = list(dict.fromkeys(k for row in table.values() for k in (row or {})))
    rows = [
        [str(name)] + [_count((row or {}).get(label, 0)) for label in labels]
        for name, row in table.items()
    ]
    return _table([first, *map(str, labels)], rows, numeric=set(range(1, len(labels) + 1)))


def _count(value: object) -> str:
    """A crosstab's image count: a whole number, 0 included (the report's number
    format writes a bare 0 as 0.000, a measured value)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return _number(value)
    return str(int(number)) if number.is_integer() else _number(number)


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
