"""The report's "Will it transfer?" section of a leave-site-out study.

A study with ``evaluation: leave-site-out`` cross-validates every classifier cell on
folds of whole sites (:mod:`cxrlab.clf.cv`, each cell's ``cv/`` folder). This section
answers three questions from those folders, each with 95% patient-bootstrap intervals
and one verdict in plain words:

1. **Does it hold out of site?** Per setting (recipe) trained on real images only:
   the pooled in-site ROC-AUC (each fold's own validation, from its training sites),
   the pooled out-of-site one (each fold's held-out sites) and the gap between them
   (``cv.json``); and which setting is better out of site, as a paired difference on
   the same held-out images.
2. **Did synthetic images help out of site?** Per setting with both arms: the
   out-of-site ROC-AUC with N synthetic images minus that with N real positives
   oversampled (the control: the same class balance without new images), paired on
   the same held-out images and patients.
3. **Does the chosen setting look at the lungs?** The shortcut probe of the chosen
   cell (best mean out-of-site AUC) with the dataset's own lung masks, on the test
   split: ROC-AUC intact, lungs removed and lungs only (the runner's ``eval-probe/``).

A verdict says "no clear effect" whenever the interval of the difference includes 0.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from cxrlab.study.report import Study

LEAVE_SITE_OUT = "leave-site-out"
OUT_OF_SITE_AUC = "out_of_site_roc_auc"
CV_JSON = "cv.json"
PREDICTIONS = "predictions.csv"
PROBE_FOLDER = "eval-probe"
#: Resamples of the paired differences computed here (cv.json's have their own).
PAIRED_RESAMPLES = 1000
NO_CLEAR_EFFECT = "no clear effect"


# ------------------------------------------------------------------ reading
def _cells(study: Study) -> pd.DataFrame:
    """One row per classifier cell and seed of results.csv that has leave-site-out
    columns, with ``setting`` (its classifier axes but the synthetic one), ``arm``."""
    table = study.results
    if table is None or table.empty or "kind" not in table.columns:
        return pd.DataFrame()
    rows = table[table["kind"] == "classifier"].copy()
    if rows.empty or OUT_OF_SITE_AUC not in rows.columns:
        return pd.DataFrame()
    axes = [a for a in (study.axes.get("classifier") or []) if a != "synthetic"]
    axes = [a for a in axes if a in rows.columns]
    varying = [a for a in axes if rows[a].astype(str).nunique() > 1] or axes[:1]

    def setting(row) -> str:
        return ", ".join(f"{a} {row[a]}" for a in varying) if varying else "classifier"

    rows["setting"] = rows.apply(setting, axis=1) if len(rows) else []
    if "synthetic" not in rows.columns:
        rows["synthetic"] = "0"
    rows["arm"] = rows["synthetic"].map(_arm)
    rows["seed"] = pd.to_numeric(rows["seed"], errors="coerce").fillna(0).astype(int)
    return rows.reset_index(drop=True)


def _arm(value) -> str:
    """A synthetic level as results.csv gives it, in one spelling: ``0``, ``30``, ``30
    oversampled`` (a column of amounts only is read as numbers: 30.0 is 30)."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _cv(root: Path, cell: str) -> dict | None:
    path = root / cell / "cv" / CV_JSON
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _predictions(root: Path, cell: str, seed: int) -> pd.DataFrame | None:
    path = root / cell / "cv" / PREDICTIONS
    try:
        frame = pd.read_csv(path, dtype={"id": str, "patient_id": str}, keep_default_na=False)
    except (OSError, ValueError):
        return None
    return frame[frame["seed"] == seed]


def paired_auc_difference(
    first: pd.DataFrame, second: pd.DataFrame, *, n_resamples: int = PAIRED_RESAMPLES, seed: int = 0
) -> dict | None:
    """ROC-AUC of ``first`` minus that of ``second`` on the images both predicted (by
    ``id``), with a 95% patient-bootstrap interval that draws each patient's rows in
    both together (:func:`cxrlab.clf.metrics.paired_bootstrap`). None when fewer than
    two images of each class are shared."""
    from cxrlab.clf.metrics import CONFIDENCE, binary_metrics, paired_bootstrap, percentile_interval

    merged = first.merge(second, on="id", suffixes=("_a", "_b"))
    covid = merged["covid_a"].to_numpy().astype(np.int64)
    if min(int(covid.sum()), int((1 - covid).sum())) < 2:
        return None
    patients = merged["patient_id_a"].astype(str).to_numpy()
    sets = [
        (covid, merged[f"probability_{s}"].to_numpy(np.float64),
         merged[f"threshold_{s}"].to_numpy(np.float64), patients)
        for s in ("a", "b")
    ]  # fmt: skip
    points = [binary_metrics(*s[:3])["roc_auc"] for s in sets]
    draws = paired_bootstrap(sets, n_resamples=n_resamples, seed=seed)
    low, high = percentile_interval(draws[0]["roc_auc"] - draws[1]["roc_auc"], CONFIDENCE)
    return {
        "value": points[0] - points[1],
        "low": low,
        "high": high,
        "first": points[0],
        "second": points[1],
        "n_images": len(merged),
        "n_patients": int(pd.Series(patients).nunique()),
    }


# ------------------------------------------------------------------ words
def as_list(value) -> list:
    """A spec value as a list (a scalar is one item, None none)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _num(value) -> str:
    return f"{float(value):.3f}" if _finite(value) else "n/a"


def _signed(value) -> str:
    return f"{float(value):+.3f}" if _finite(value) else "n/a"


def _estimate(item: dict | None, signed: bool = False) -> str:
    """``0.547 [0.427, 0.668]`` (plain text)."""
    if not item:
        return "n/a"
    show = _signed if signed else _num
    return f"{show(item.get('value'))} [{_num(item.get('low'))}, {_num(item.get('high'))}]"


def _cell_html(item: dict | None, signed: bool = False) -> str:
    if not item:
        return '<td class="num">n/a</td>'
    show = _signed if signed else _num
    return (
        f'<td class="num">{show(item.get("value"))} <span class="ci">'
        f"[{_num(item.get('low'))}, {_num(item.get('high'))}]</span></td>"
    )


def difference_verdict(item: dict | None, better: str, worse: str) -> str:
    """``better`` when the interval is above 0, ``worse`` below, else "no clear effect"."""
    if not item or not (_finite(item.get("low")) and _finite(item.get("high"))):
        return "cannot tell (no interval)"
    if item["low"] > 0:
        return better
    if item["high"] < 0:
        return worse
    return f"{NO_CLEAR_EFFECT} (the interval includes 0)"


def chance_words(item: dict | None) -> str:
    """Whether an AUC's interval lies above chance (0.5)."""
    if not item or not _finite(item.get("low")):
        return "its out-of-site AUC has no interval"
    if item["low"] > 0.5:
        return "out of site it is better than chance"
    if _finite(item.get("high")) and item["high"] < 0.5:
        return "out of site it ranks worse than chance"
    return "out of site it is not clearly better than chance (the interval includes 0.5)"


def _table(header: list[str], rows: list[str], caption: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    body = "\n".join(rows)
    return f'<div class="scroll"><table>{cap}<tr>{head}</tr>\n{body}</table></div>'


def _verdict(question: str, answer: str) -> str:
    return f'<p class="summary"><b>{escape(question)}</b> {escape(answer)}</p>'


# ------------------------------------------------------------------ questions
def _holds_out_of_site(study: Study, cells: pd.DataFrame) -> tuple[str, list[str]]:
    """Question 1: in-site vs out-of-site per setting on real images, and which
    setting transfers better (paired)."""
    real = cells[cells["arm"] == "0"]
    if real.empty:
        real = cells
    rows, verdicts = [], []
    for (setting, cell), group in real.groupby(["setting", "cell"], sort=False):
        cv = _cv(study.root, cell) or {}
        for seed in sorted(group["seed"]):
            values = (cv.get("per_seed") or {}).get(str(seed))
            if not values:
                continue
            inside = values["in_site"]["metrics"]["roc_auc"]
            outside = values["out_of_site"]["metrics"]["roc_auc"]
            gap = values["gap"]["roc_auc"]
            said = difference_verdict(
                gap,
                f"it loses {_num(gap['value'])} ROC-AUC out of site",
                "it does better out of site than in site",
            )
            rows.append(
                f"<tr><td>{escape(setting)}</td><td>{seed}</td>{_cell_html(inside)}"
                f"{_cell_html(outside)}{_cell_html(gap, signed=True)}"
                f'<td class="num">{_num(values["fold_mean"]["out_of_site_auc"])}</td>'
                f"<td>{escape(said)}</td></tr>"
            )
            verdicts.append(
                f"{setting} (seed {seed}): out-of-site ROC-AUC {_estimate(outside)} against "
                f"{_estimate(inside)} in site; gap {_estimate(gap, signed=True)}: {said}; "
                f"{chance_words(outside)}."
            )
    html = []
    if rows:
        n_folds = next(
            (c.get("n_folds") for c in (_cv(study.root, x) or {} for x in real["cell"]) if c), "?"
        )
        html.append(
            _table(
                [
                    "setting",
                    "seed",
                    "in-site ROC-AUC",
                    "out-of-site ROC-AUC",
                    "gap (in - out)",
                    "mean of folds' out-of-site AUC",
                    "verdict",
                ],
                rows,
                f"Real images only. {n_folds} folds of whole sites: in site = each fold's own "
                "validation (its training sites), out of site = its held-out sites; pooled "
                "over folds, 95% patient-bootstrap intervals.",
            )  # fmt: skip
        )
    # which setting transfers better: every setting against the best, paired
    settings = real.groupby("setting", sort=False)[OUT_OF_SITE_AUC].mean()
    settings = pd.to_numeric(settings, errors="coerce").dropna()
    if len(settings) > 1:
        best = str(settings.idxmax())
        best_cell = real.loc[real["setting"] == best, "cell"].iloc[0]
        pair_rows = []
        for other in settings.index:
            if other == best:
                continue
            other_cell = real.loc[real["setting"] == other, "cell"].iloc[0]
            for seed in sorted(set(real["seed"])):
                a = _predictions(study.root, best_cell, seed)
                b = _predictions(study.root, other_cell, seed)
                diff = None if a is None or b is None else paired_auc_difference(a, b, seed=seed)
                said = difference_verdict(
                    diff,
                    f"{best} transfers better than {other}",
                    f"{other} transfers better than {best}",
                )
                pair_rows.append(
                    f"<tr><td>{escape(best)} - {escape(other)}</td><td>{seed}</td>"
                    f"{_cell_html(diff, signed=True)}<td>{escape(said)}</td></tr>"
                )
                verdicts.append(
                    f"{best} vs {other} out of site (seed {seed}, paired on the same held-out "
                    f"images): {_estimate(diff, signed=True)}: {said}."
                )
        html.append(
            _table(
                ["difference", "seed", "out-of-site ROC-AUC difference", "verdict"],
                pair_rows,
                "Paired on the same held-out images (pooled over folds); the bootstrap "
                "draws each patient's images in both settings together.",
            )
        )
    return "\n".join(html), verdicts


def _synthetic_helped(study: Study, cells: pd.DataFrame) -> tuple[str, list[str]]:
    """Question 2: N synthetic images vs N real positives oversampled, out of site."""
    rows, verdicts = [], []
    controls = cells[cells["arm"].str.endswith(" oversampled")]
    for _, control in controls.drop_duplicates(["cell", "seed"]).iterrows():
        amount = control["arm"].removesuffix(" oversampled")
        same = cells[(cells["setting"] == control["setting"]) & (cells["seed"] == control["seed"])]
        for label, arm in (("vs the control", amount), ("vs real only", None)):
            if arm is None:
                synthetic = same[same["arm"] == amount]
                reference = same[same["arm"] == "0"]
            else:
                synthetic = same[same["arm"] == amount]
                reference = same[same["cell"] == control["cell"]]
            if synthetic.empty or reference.empty:
                continue
            seed = int(control["seed"])
            a = _predictions(study.root, synthetic["cell"].iloc[0], seed)
            b = _predictions(study.root, reference["cell"].iloc[0], seed)
            diff = None if a is None or b is None else paired_auc_difference(a, b, seed=seed)
            compared = f"{amount} oversampled" if arm is not None else "real images only"
            said = difference_verdict(
                diff,
                f"the synthetic images helped out of site (vs {compared})",
                f"the synthetic images hurt out of site (vs {compared})",
            )
            rows.append(
                f"<tr><td>{escape(control['setting'])}</td><td>{seed}</td>"
                f"<td>{escape(amount)} synthetic {escape(label)}</td>"
                f'<td class="num">{_num(diff["first"]) if diff else "n/a"}</td>'
                f'<td class="num">{_num(diff["second"]) if diff else "n/a"}</td>'
                f"{_cell_html(diff, signed=True)}<td>{escape(said)}</td></tr>"
            )
            if arm is not None:  # the control is the comparison the question asks for
                verdicts.append(
                    f"{control['setting']} (seed {seed}): out-of-site ROC-AUC with {amount} "
                    f"synthetic images minus with {amount} real positives oversampled: "
                    f"{_estimate(diff, signed=True)}: {said}."
                )
    if not rows:
        amounts = as_list((study.spec.get("synthetic") or {}).get("amounts"))
        if any(_finite(a) and float(a) > 0 for a in amounts):
            return (
                '<p class="note">The study asks for synthetic images, but no synthetic arm '
                "and its control have both finished their leave-site-out validation yet: run "
                "the study on.</p>",
                ["not answered yet: no synthetic arm has finished with its control."],
            )
        return "", []
    html = _table(
        ["setting", "seed", "comparison", "out-of-site AUC with synthetic",
         "out-of-site AUC compared with", "difference", "verdict"],
        rows,
        "Each fold's synthetic images come from a generator trained on that fold's training "
        "rows only (never its held-out sites). The control adds as many real positives, "
        "oversampled: the same class balance without new images. Paired on the same "
        "held-out images, 95% patient bootstrap.",
    )  # fmt: skip
    return html, verdicts


def _chosen_cell(cells: pd.DataFrame) -> str | None:
    means = pd.to_numeric(cells[OUT_OF_SITE_AUC], errors="coerce").groupby(cells["cell"]).mean()
    means = means.dropna()
    return None if means.empty else str(means.idxmax())


def _probe(study: Study, cells: pd.DataFrame) -> tuple[str, list[str]]:
    """Question 3: the chosen cell's shortcut probe with real lung masks."""
    cell = _chosen_cell(cells)
    if cell is None:
        return "", []
    setting = cells.loc[cells["cell"] == cell, "setting"].iloc[0]
    arm = cells.loc[cells["cell"] == cell, "arm"].iloc[0]
    chosen = f"{setting}, synthetic {arm}"
    probes = sorted((study.root / cell / PROBE_FOLDER).glob("seed_*/metrics.json"))
    rows, verdicts = [], []
    for path in probes:
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        probe = values.get("shortcut_probe") or {}
        if "lungs_removed" not in probe:
            continue
        seed = values.get("seed", path.parent.name.removeprefix("seed_"))
        rows.append(
            f'<tr><td>{seed}</td><td class="num">{probe.get("n_images", "n/a")}</td>'
            + "".join(
                _cell_html(probe[key]["metrics"]["roc_auc"])
                for key in ("intact", "lungs_removed", "lungs_only")
            )
            + f"<td>{escape(str(probe.get('finding', '')))}</td></tr>"
        )
        verdicts.append(f"chosen setting ({chosen}), seed {seed}: {probe.get('verdict', '')}.")
    if not rows:
        return (
            f'<p class="note">No lung-mask shortcut probe for the chosen setting ({escape(chosen)}): '
            "the dataset's rows have no lung masks (manifest mask_path), or none of its test "
            "images has one.</p>",
            [f"chosen setting ({chosen}): not probed (no lung masks in the data)."],
        )
    html = _table(
        ["seed", "test images with a mask", "ROC-AUC intact", "lungs removed", "lungs only",
         "finding"],
        rows,
        f"The chosen setting ({chosen}: best mean out-of-site AUC), its split model on the "
        "test images that have a lung mask of the dataset itself (ieee8023: lungVAE "
        "pseudo-labels), shown intact, with the lungs blacked out and with only the lungs.",
    )  # fmt: skip
    return html, verdicts


# ------------------------------------------------------------------ the section
def transfer_section(study: Study) -> str:
    """HTML of the "Will it transfer?" section, "" when the study has no
    leave-site-out evaluation."""
    if str(study.info.get("evaluation") or "split") != LEAVE_SITE_OUT:
        return ""
    parts = ['<section id="transfer">', "<h2>Will it transfer?</h2>"]
    cells = _cells(study)
    if cells.empty:
        parts += [
            '<p class="note">No classifier cell has finished its leave-site-out validation '
            "yet: run the study on.</p>",
            "</section>",
        ]
        return "\n".join(parts)
    parts.append(
        "<p>Leave-site-out validation: each fold trains on some sites and is judged on "
        "sites it never saw. A verdict says <i>no clear effect</i> when the 95% interval "
        "of its difference includes 0; one seed and a few hundred images give wide "
        "intervals.</p>"
    )
    questions = [
        ("Does it hold in a site it never saw?", _holds_out_of_site),
        ("Did synthetic images help out of site?", _synthetic_helped),
        ("Does the chosen setting look at the lungs?", _probe),
    ]
    for question, answer in questions:
        html, verdicts = answer(study, cells)
        parts.append(f"<h3>{escape(question)}</h3>")
        if not html and not verdicts:
            parts.append('<p class="note">Not asked by this study.</p>')
            continue
        parts += [_verdict("Verdict:", v) for v in verdicts]
        parts.append(html)
    parts.append("</section>")
    return "\n".join(parts)
