"""The report reads at a glance (issue 24): summary, reading note, reference lines, one
number format, tables that fit 1300 px, nearest-training-image panels, and the report
defects of the walkthrough (item 9)."""

import re
import shutil

import pandas as pd
import pytest
from browser import PAGE_WIDTH, render_in_chromium, screenshot
from study_factory import BEST_CELL, make_study

from cxrlab.study.report import render_report, write_report

IMG = re.compile(r"<img\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = make_study(tmp_path_factory.mktemp("glance") / "s")
    return root, render_report(root)


def section(html: str, anchor: str) -> str:
    return html.split(f'<section id="{anchor}">')[1].split("</section>")[0]


def test_summary_opens_the_report_in_plain_words(study):
    _, html = study
    ids = re.findall(r'<section id="([^"]+)"', html)
    assert ids[0] == "summary"
    summary = section(html, "summary")
    assert "What was compared" in summary
    assert "equalize (none, clahe), augment (none, mild) and synthetic (0, 100)" in summary
    assert "8 classifier cells trained with 2 seeds" in summary
    # what the intervals say, "no clear effect" included as a finding
    assert "What the intervals say" in summary and "no clear effect" in summary
    assert "3 show a clear gain:" in summary and "None shows" not in summary
    assert "<li>gain: equalize clahe vs none: ROC-AUC +0.050 [+0.050, +0.050]" in summary
    # the chosen cell and how: on validation, never the test split
    assert f"<strong>Chosen classifier:</strong> {BEST_CELL}" in summary
    assert "chosen on validation" in summary and "test split took no part" in summary
    assert "Generators:</strong> 4 trained" in summary


def test_how_to_read_this_report(study):
    _, html = study
    note = section(html, "summary").split("How to read this report")[1]
    for term in (
        "a cell",
        "[low, high]",
        "chosen on validation",
        "no clear effect",
        "collapsed",
        "memorizes",
    ):
        assert f"<dt>{term}" in note or f"{term}</dt>" in note, term
    assert "95% interval" in note


def test_real_ms_ssim_is_a_reference_line_not_a_flat_chart(study):
    _, html = study
    curves = section(html, "curves")
    assert "MS-SSIM of real images over training" not in curves
    assert "MS-SSIM of generated images over training, 64px-none" in curves


def test_reference_lines_mark_the_real_value_and_the_collapse_threshold():
    from matplotlib.figure import Figure

    from cxrlab.study.report.curves import _reference_lines

    axes = Figure().add_subplot()
    logs = [("a", pd.DataFrame({"step": [1, 2], "ms_ssim_real": [0.4, 0.4]}))]
    _reference_lines(axes, logs, "ms_ssim_real", 1.5)
    levels = sorted(line.get_ydata()[0] for line in axes.get_lines())
    assert levels == pytest.approx([0.4, 0.6])
    labels = [line.get_label() for line in axes.get_lines()]
    assert "real images (0.400)" in labels


def _edited_study(tmp_path, edit_rows=None, edit_metrics=None):
    root = make_study(tmp_path / "s")
    if edit_rows is not None:
        frame = pd.read_csv(root / "results.csv")
        edit_rows(frame)
        frame.to_csv(root / "results.csv", index=False)
    if edit_metrics is not None:
        for path in (root / "gen").glob("*/*/metrics.csv"):
            frame = pd.read_csv(path)
            frame = edit_metrics(frame)
            frame.to_csv(path, index=False)
    return root


def test_one_number_format(tmp_path):
    def edit(frame):
        generators = frame.index[frame["kind"] == "generator"]
        frame.loc[generators[:3], "swd"] = [81.4675, 135.8, 92.9854]
        frame.loc[generators[0], "seconds"] = 100.0

    html = render_report(_edited_study(tmp_path, edit))
    table = section(html, "generators")
    assert "81.5" in table and "136" in table and "93.0" in table
    assert "81.4675" not in table and "92.9854" not in table
    assert "1 min 40 s" in table  # was "1e+02" under "seconds"
    text = re.sub(r'src="data:[^"]*"', "", html.split("<script>")[0].split("</style>")[1])
    assert not re.search(r"\d[eE][+-]\d", text)  # no exponent notation anywhere
    assert "<th>time</th>" in table and "<th>seconds</th>" not in table


def test_one_point_generator_curves_are_not_drawn_as_dots(tmp_path):
    def keep_last_metrics(frame):
        # metrics measured only at the last step: one point per run
        metrics = ["swd", "ms_ssim_fake", "ms_ssim_real", "memorization_share", "fid"]
        frame.loc[frame["step"] < frame["step"].max(), metrics] = float("nan")
        return frame

    html = render_report(_edited_study(tmp_path, edit_metrics=keep_last_metrics))
    curves = section(html, "curves")
    assert "SWD over training" not in curves and "FID over training" not in curves
    assert "measured once per run, so no curve" in curves
    assert "training losses, 64px-none" in curves  # the losses still have curves


def test_a_study_without_generators_shows_no_generator_sections(tmp_path):
    root = make_study(tmp_path / "s", generators=False)
    html = render_report(root)
    for anchor in ("generators", "curves", "samples"):
        assert f'<section id="{anchor}">' not in html
    assert "metrics.csv not found" not in html and "no generator" not in html
    assert "<dt>collapsed" not in html


def test_samples_sit_beside_their_nearest_training_images(tmp_path):
    def collapse(frame):
        vae = (frame["kind"] == "generator") & (frame["cell"] == "gen/64px-clahe/vae")
        frame.loc[vae, "ms_ssim_fake"] = 0.9

    html = render_report(_edited_study(tmp_path, collapse))
    samples = section(html, "samples")
    blocks = samples.split('<div class="generator-samples">')[1:]
    assert len(blocks) == 4
    for block in blocks:
        assert "generated samples, step 1000" in block
        assert "nearest training images (each pair: generated, then its nearest" in block
        assert len(IMG.findall(block)) == 2
    collapsed = next(b for b in blocks if "<h3>gen/64px-clahe/vae</h3>" in b)
    assert "collapsed" in collapsed and "memorization share 0.060 (limit 0.100)" in collapsed
    chosen = next(b for b in blocks if "<h3>gen/64px-none/dcgan</h3>" in b)
    assert "passes the checks; ★ chosen on validation" in chosen


def test_generator_table_folds_its_other_metrics(study):
    _, html = study
    table = section(html, "generators")
    head = table.split("</thead>")[0]
    assert "<th>SWD</th>" in head and "<th>FID</th>" not in head
    assert "<details><summary>All 1 other generator metrics (FID)" in table


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_chromium_at_1300_px_loads_every_image_and_no_table_is_wider(tmp_path):
    root = make_study(tmp_path / "s")
    # long values: the widest tables a study makes
    frame = pd.read_csv(root / "results.csv")
    frame.loc[frame["kind"] == "generator", "gen_augment"] = "translation,cutout,brightness"
    frame.to_csv(root / "results.csv", index=False)
    report = write_report(root)
    html = report.read_text(encoding="utf-8")
    rendered = render_in_chromium(report, tmp_path, width=PAGE_WIDTH)
    expected = len(IMG.findall(html))
    assert rendered["images"] == rendered["loaded"] == expected > 0
    assert rendered["wide_tables"] == 0
    # the screenshot is kept as the test's artefact (pytest's tmp folder)
    shot = screenshot(report, tmp_path / "report-1300px.png", tmp_path)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size[0] == PAGE_WIDTH
        assert len(image.getcolors(1 << 20) or range(1000)) > 10  # not blank


def test_constant_real_image_values_get_no_flat_chart(tmp_path):
    def add_constants(frame):
        measured = frame["swd"].notna()
        frame.loc[measured, "memorization_threshold"] = 0.073
        frame.loc[measured, "memorization_median_heldout"] = 0.139
        frame.loc[measured, "memorization_median_fake"] = [0.12, 0.125]
        return frame

    html = render_report(_edited_study(tmp_path, edit_metrics=add_constants))
    curves = section(html, "curves")
    assert "memorization threshold over training" not in curves
    assert "median distance of held-out images over training" not in curves
    assert "median distance of fakes over training, 64px-none" in curves


def test_a_run_that_logged_nothing_yet_draws_no_empty_chart(tmp_path):
    root = make_study(tmp_path / "s")
    path = root / "gen" / "64px-clahe" / "vae" / "metrics.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")  # the header only
    html = render_report(root)
    curves = section(html, "curves")
    assert "training losses, 64px-clahe" in curves  # dcgan's are there
    (root / "gen" / "64px-clahe" / "dcgan" / "metrics.csv").write_text(path.read_text())
    curves = section(render_report(root), "curves")
    assert "training losses, 64px-clahe" not in curves
    assert "nothing logged yet" in curves


def test_a_check_that_is_off_is_not_described_with_a_missing_threshold(tmp_path):
    import json

    root = make_study(tmp_path / "s")
    info = json.loads((root / "study.json").read_text())
    info["collapse_ratio"] = None  # a spec that turned the collapse check off
    (root / "study.json").write_text(json.dumps(info))
    from html import unescape

    table = unescape(section(render_report(root), "generators"))
    assert "more than – times" not in table and "'collapsed' marks" not in table
    assert "'memorizes' those with a memorization share" in table
