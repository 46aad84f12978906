"""data stats: images per site and label, and a site holding one class only is flagged."""

import json

import pandas as pd
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data.api import import_source
from cxrlab.data.stats import compute_stats
from factory import folders_tree

runner = CliRunner()


def test_stats_flag_the_site_that_holds_every_positive(tmp_path):
    # 4 sites; hosp_a holds all the positives (and nothing else)
    layout = {"COVID": {"hosp_a": 3}, "Normal": {"hosp_b": 2, "hosp_c": 2, "hosp_d": 1}}
    root = folders_tree(tmp_path / "src", layout)
    import_source("folders", root, tmp_path / "ds", site_level=1, progress=False)
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "ds"), "-q"])
    assert result.exit_code == 0, result.output
    assert "sites: 4 known, 0 usable for leave-site-out" in result.output
    assert "hosp_a (3, all COVID-positive)" in result.output
    assert "classic shortcut" in result.output

    stats = json.loads((tmp_path / "ds" / "stats" / "stats.json").read_text())
    flagged = {s["site"]: s["class"] for s in stats["sites"]["single_class_sites"]}
    assert flagged["hosp_a"] == "COVID-positive" and len(flagged) == 4
    assert stats["site_by_label"]["hosp_a"] == {
        "covid": 3, "normal": 0, "images": 3, "covid_positive": 3, "covid_negative": 0,
    }  # fmt: skip
    table = pd.read_csv(tmp_path / "ds" / "stats" / "site_by_label.csv").set_index("site")
    assert table.loc["hosp_a", "single_class"] and table.loc["hosp_a", "covid"] == 3


def test_sites_holding_both_classes_are_not_flagged_and_unknown_is_never_a_site():
    n = 24
    manifest = pd.DataFrame(
        {
            "site": ["a"] * 12 + ["b"] * 10 + ["unknown"] * 2,
            "covid": [1, 0] * 11 + [1, 1],
            "label": ["covid", "normal"] * 11 + ["covid", "covid"],
            "split": [""] * n, "source": ["s"] * n, "duplicate_group": [""] * n,
            "sha256": [str(i) for i in range(n)], "patient_id": [str(i) for i in range(n)],
            "mode": ["L"] * n, "width": [10] * n, "height": [10] * n,
        }
    )  # fmt: skip
    sites = compute_stats(manifest)["sites"]
    assert sites["single_class_sites"] == []
    assert sites["usable_sites"] == ["a", "b"] and sites["unknown_site_images"] == 2


def test_the_study_report_flags_the_site_that_holds_every_positive(tmp_path):
    from cxrlab.study.report import Study
    from cxrlab.study.report.dataset import dataset_section

    layout = {"COVID": {"hosp_a": 3}, "Normal": {"hosp_b": 2, "hosp_c": 2, "hosp_d": 1}}
    root = folders_tree(tmp_path / "src", layout)
    import_source("folders", root, tmp_path / "ds", site_level=1, progress=False)
    assert runner.invoke(app, ["data", "stats", str(tmp_path / "ds"), "-q"]).exit_code == 0
    study = tmp_path / "study"
    (study / "data" / "stats").mkdir(parents=True)
    stats = (tmp_path / "ds" / "stats" / "stats.json").read_text()
    (study / "data" / "stats" / "stats.json").write_text(stats)

    html = dataset_section(Study(study))
    sites = html[html.index("<h3>Sites</h3>") :]
    assert "4 known sites, 0 usable for leave-site-out" in sites
    assert "4 sites hold one class only" in sites
    assert "hosp_a (3, all COVID-positive)" in sites and "classic shortcut" in sites
    # the per-site table: hosp_a's row holds its 3 positives and no negative
    row = sites[sites.index("<td>hosp_a</td>") :].split("</tr>")[0]
    assert [cell.split("<")[0] for cell in row.split('">')[1:4]] == ["3", "3", "0"]
