import base64
import re
from pathlib import Path

import pandas as pd
import pytest
from browser import render_in_chromium
from study_factory import BASELINE_CELL, BEST_CELL, make_study, png

from cxrlab.errors import CxrlabError
from cxrlab.study.report import PNG_MAGIC, last_sample, render_report, write_report

IMG = re.compile(r"<img\b", re.IGNORECASE)
#: A src/href (or CSS url()/@import) that would fetch something from the network.
REMOTE = re.compile(
    r"""(?:\b(?:src|href|action|poster|srcset)\s*=\s*["']?\s*(?:https?:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:https?:)?//)|@import""",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def full_study(tmp_path_factory):
    """A complete fake study and its report (written once for the module)."""
    root = make_study(tmp_path_factory.mktemp("studies") / "full")
    report = write_report(root)
    return root, report, report.read_text(encoding="utf-8")


def test_report_is_written_beside_the_study_by_default(full_study):
    root, report, html = full_study
    assert report == root / "report.html"
    assert html.startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")


def test_out_argument_and_missing_study(tmp_path):
    root = make_study(tmp_path / "s", generators=False, stats=False)
    out = write_report(root, tmp_path / "elsewhere" / "r.html")
    assert out == tmp_path / "elsewhere" / "r.html" and out.is_file()
    with pytest.raises(CxrlabError, match="not found"):
        write_report(tmp_path / "no-such-study")


def test_report_never_replaces_a_file_it_did_not_write(tmp_path):
    from cxrlab.utils.outputs import OutputError

    root = make_study(tmp_path / "s", generators=False, stats=False)
    results = (root / "results.csv").read_bytes()
    with pytest.raises(OutputError, match="is not an HTML report of cxrlab"):
        write_report(root, root / "results.csv")
    assert (root / "results.csv").read_bytes() == results
    with pytest.raises(OutputError, match="is a folder"):
        write_report(root, tmp_path)
    first = write_report(root)
    assert write_report(root) == first  # its own report: a rerun replaces it
    notes = tmp_path / "notes.html"
    notes.write_text("<html>mine</html>")
    with pytest.raises(OutputError, match="--force"):
        write_report(root, notes)
    assert "cxrlab study report" in write_report(root, notes, force=True).read_text()


def test_sections_in_order_and_images_embedded(full_study):
    _, _, html = full_study
    ids = re.findall(r'<section id="([^"]+)"', html)
    assert ids == [
        "summary",
        "dataset",
        "classifiers",
        "generators",
        "curves",
        "samples",
        "examples",
        "findings",
    ]
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert len(sources) == len(IMG.findall(html)) > 20
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_no_remote_resources_and_text_is_escaped(full_study):
    _, _, html = full_study
    assert not REMOTE.search(html)
    assert "Content-Security-Policy" in html
    # the description's markup is shown as text, its URL stays as text
    assert "Fake study &lt;b&gt;for tests&lt;/b&gt; &amp; checks" in html
    assert "<b>for tests</b>" not in html
    assert "https://example.org/study" in html


def test_title_numbers(full_study):
    root, _, html = full_study
    assert "<h1>fake-study</h1>" in html
    assert "1 h 02 min" in html  # wall time 3723 s
    assert "2024-05-01T12:00:00+00:00" in html
    assert "Unfinished study" not in html
    assert f"cxrlab study run {root.resolve() / 'spec.yaml'} --out /" in html


def test_classifier_table_marks_the_best_cell(full_study):
    _, _, html = full_study
    best_rows = re.findall(r'<tr class="best">(.*?)</tr>', html)
    classifier_best = [r for r in best_rows if "clf/" in r]
    assert len(classifier_best) == 1
    assert "★ best" in classifier_best[0] and BEST_CELL in classifier_best[0]
    # best: 0.70 + 0.05 + 0.02 + 0.03 + mean seed bonus 0.005
    assert '0.805<br><span class="ci">[' in classifier_best[0]
    assert "t-interval of the mean over seeds" in html
    assert "external ROC-AUC" in html
    assert "chosen on validation" in html and "validation ROC-AUC" in html


def test_generator_table_and_curves(full_study):
    _, _, html = full_study
    section = html.split('<section id="generators">')[1].split("</section>")[0]
    generator_best = re.findall(r'<tr class="best">(.*?)</tr>', section)
    # lowest final SWD in each variant: dcgan (index 0 gets the smallest offset)
    assert len(generator_best) == 2
    assert all("★ best" in r and "<td>dcgan</td>" in r for r in generator_best)
    assert "<th>SWD</th>" in section and "<th>FID</th>" in section
    assert "SWD over training, 64px-clahe" in html
    assert "training losses, 64px-none" in html


def test_last_sample_grid_is_the_highest_step(full_study):
    root, _, html = full_study
    assert last_sample(root / "gen" / "64px-none" / "dcgan").name == "step_001000.png"
    assert "<h3>gen/64px-none/dcgan</h3>" in html and "generated samples, step 1000" in html
    assert "step 200<" not in html


def test_examples_show_best_and_baseline(full_study):
    _, _, html = full_study
    section = html.split('<section id="examples">')[1].split("</section>")[0]
    assert f"best classifier: {BEST_CELL}" in section
    assert f"real-only baseline: {BASELINE_CELL}" in section
    assert "confusion matrix external, seed_0" in section
    assert "gradcam, seed_0" in section  # the baseline (augment none) has Grad-CAM
    assert "seed_1" not in section


def test_pros_and_cons_come_from_the_numbers(full_study):
    _, _, html = full_study
    section = html.split('<section id="findings">')[1].split("</section>")[0]
    assert "equalize (classifiers)" in section
    # clahe adds exactly 0.05 to every pair: a pro with a zero-width interval
    assert "equalize clahe vs none: ROC-AUC +0.050 (95% CI +0.050 to +0.050, 8 pairs)" in section
    # synthetic costs x1.5 training time: a con
    assert re.search(r"synthetic 100 vs 0: .*training time ×1\.50[^<]*costs more time", section)


def test_pending_cells_give_a_warning(tmp_path):
    root = make_study(tmp_path / "s", pending=True)
    html = render_report(root)
    assert "Unfinished study" in html and "1 of" in html


def test_missing_inputs_still_give_a_report(tmp_path):
    root = make_study(
        tmp_path / "s", generators=False, stats=False, previews=False, external=False, seeds=(3,)
    )
    html = render_report(root)
    # a study without generators shows no generator sections (issue 24, item 9)
    assert 'id="generators"' not in html and 'id="curves"' not in html
    assert "no dataset statistics" in html
    assert "metrics.csv not found" not in html
    assert "external ROC-AUC" not in html
    # one seed: the bootstrap interval of that seed
    assert "single seed&#x27;s patient-bootstrap interval" in html
    assert (
        '0.800<br><span class="ci">[0.760, 0.840]</span>' in html
    )  # 0.70 + 0.05 + 0.02, seed 3 adds 0.03


def test_a_folder_that_is_not_a_study_is_refused_and_nothing_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "manifest.csv").write_text("id\n")
    for folder in ("empty", "dataset"):
        with pytest.raises(CxrlabError, match="not a study folder"):
            write_report(tmp_path / folder)
        assert not (tmp_path / folder / "report.html").exists()
    # a study whose first cell has not finished yet is one: study.json alone suffices
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "study.json").write_text("{}")
    html = render_report(tmp_path / "started")
    assert "no classifier results." in html
    assert "no factor has two or more levels" in html
    assert not IMG.search(html)


def test_classifier_rows_only(tmp_path):
    root = make_study(tmp_path / "s", generators=False)
    frame = pd.read_csv(root / "results.csv")
    assert set(frame["kind"]) == {"classifier"}
    html = render_report(root)
    assert "Generator" not in html.split("</header>")[1].split('id="findings"')[0]
    assert BASELINE_CELL in html


def test_chromium_loads_every_image(full_study, tmp_path):
    _, report, html = full_study
    rendered = render_in_chromium(report, tmp_path)
    expected = len(IMG.findall(html))
    assert rendered["images"] == expected > 0
    assert rendered["loaded"] == expected
    assert f"{expected} images" in rendered["dom"]


def test_chromium_detects_a_broken_image(full_study, tmp_path):
    _, _, html = full_study
    corrupt = base64.b64encode(PNG_MAGIC + b"not really a png").decode()
    broken = html.replace("<footer>", f'<img src="data:image/png;base64,{corrupt}" alt="x">', 1)
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    rendered = render_in_chromium(path, tmp_path)
    assert rendered["images"] == len(IMG.findall(broken))
    assert rendered["loaded"] == rendered["images"] - 1


def test_chromium_on_a_study_without_generators(tmp_path):
    root = make_study(tmp_path / "s", generators=False, stats=False, external=False)
    png(root / "previews" / "extra.png")  # a preview of a variant not in results
    report = write_report(root)
    rendered = render_in_chromium(report, tmp_path)
    html = report.read_text(encoding="utf-8")
    assert rendered["images"] == rendered["loaded"] == len(IMG.findall(html)) > 0


def test_tables_escape_plain_text_and_keep_marked_html():
    from cxrlab.study.report import Markup, _table

    html = _table(
        ["a<b", "c"], [["<script>x</script>", Markup("<br><span>1</span>")], ["a & b", 3]]
    )
    assert "<th>a&lt;b</th>" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html
    assert "<td><br><span>1</span></td>" in html and "a &amp; b" in html


def test_generator_table_shows_selected_early_inside_a_scroller(full_study):
    _, _, html = full_study
    section = html.split('<section id="generators">')[1].split("</section>")[0]
    assert '<div class="scroll"><table>' in section
    assert ".scroll { overflow-x: auto;" in html
    headers = re.findall(r"<th>(.*?)</th>", section.split("</thead>")[0])
    assert "selected" in headers[:3], headers
    best = re.findall(r'<tr class="best">(.*?)</tr>', section)
    assert best and all(re.findall(r"<td>(.*?)</td>", r)[1] == "yes" for r in best)


def test_long_generator_cells_are_shortened_with_the_full_text_as_tooltip():
    from cxrlab.study.report import _short_text

    assert _short_text("dcgan") == "dcgan"
    long = "size=256,equalize=clahe,augment=strong,synthetic=312"
    short = _short_text(long)
    assert f'title="{long}"' in short and len(re.sub(r"<[^>]*>", "", short)) <= 24


def _reproduce_line(html):
    footer = html.split("<footer>")[1]
    return re.sub(r"<[^>]*>", "", footer.split("Reproduce", 1)[1].split("</p>")[0])


def test_reproduce_command_uses_absolute_paths(tmp_path, monkeypatch):
    import json
    import shlex

    root = make_study(tmp_path / "s", generators=False, stats=False)
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "original.yaml"
    info = json.loads((root / "study.json").read_text())
    info["spec"] = str(spec)
    (root / "study.json").write_text(json.dumps(info))
    line = _reproduce_line(render_report("s"))  # a relative study folder
    run = line.split("cxrlab study run ", 1)[1].split(",")[0].split(" (")[0]
    words = shlex.split(run)
    assert words == [str(spec), "--out", str(root.resolve())]
    assert f"cxrlab study report {root.resolve()}" in line

    info["spec"] = "relative/spec.yaml"  # an old study.json: only the kept copy is known
    (root / "study.json").write_text(json.dumps(info))
    line = _reproduce_line(render_report("s"))
    words = shlex.split(line.split("cxrlab study run ", 1)[1].split(" (")[0])
    assert words[0] == str(root.resolve() / "spec.yaml")
    assert words[1] == "--out" and Path(words[2]).is_absolute()
    assert Path(words[2]) != root.resolve()  # the runner refuses the folder holding the spec


def test_a_missing_memorization_share_reads_not_measured_and_is_never_best(tmp_path):
    root = make_study(tmp_path / "s")
    results = pd.read_csv(root / "results.csv")
    unmeasured = results["cell"] == "gen/64px-none/dcgan"  # that variant's lowest SWD
    results.loc[unmeasured, "memorization_share"] = float("nan")
    results.to_csv(root / "results.csv", index=False)
    section = render_report(root).split('<section id="generators">')[1].split("</section>")[0]
    main = section.split("<details>")[0]  # the other metrics are folded below the table
    header, *body = re.findall(r"<tr[^>]*>(.*?)</tr>", main)
    names = re.findall(r"<th>(.*?)</th>", header)
    rows = {}
    for row in body:
        cells = dict(zip(names, re.findall(r"<td[^>]*>(.*?)</td>", row), strict=True))
        rows[f"64px-{cells['equalize']}/{cells['generator']}"] = row
    assert rows["64px-none/dcgan"].count("not measured") == 2  # the mark and the value
    assert "★ best" not in rows["64px-none/dcgan"] and "★ best" in rows["64px-none/vae"]
    assert "★ best" in rows["64px-clahe/dcgan"]
    # a study that never measured memorization at all: every generator says so
    results.drop(columns=["memorization_share"]).to_csv(root / "results.csv", index=False)
    section = render_report(root).split('<section id="generators">')[1].split("</section>")[0]
    assert "<th>memorization</th>" in section and "★ best" not in section
    assert section.count(">not measured</td>") == 2 * 4  # the mark and the value, 4 rows
