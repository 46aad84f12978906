"""The study runner on a tiny study of the bundled sample: every cell kind, results.csv,
interruption and resume, refusal of changed settings."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cxrlab.clf.trainer import SeedTrainer
from cxrlab.errors import CxrlabError
from cxrlab.study.runner import expand_source_paths, generator_variant, run_study
from cxrlab.study.spec import Variant, load_spec

TINY = {
    "name": "tiny",
    "description": "a test study",
    "data": {"sources": [{"format": "sample"}], "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0}},
    "preprocess": {"size": 32, "equalize": ["none", "clahe"]},
    "generators": {
        "runs": [{"name": "dc", "model": "dcgan", "diffaug": "translation"}],
        "label": "positive",
        "steps": 4,
        "batch_size": 8,
        "sample_interval": 2,
        "save_interval": 2,
        "metrics": ["swd"],
        "metrics_n": 16,
        "select_by": "swd",
        # 4 steps make a collapsed generator by any measure: the mechanics are tested here,
        # the collapse rule in test_a_study_never_draws_from_a_collapsed_generator
        "collapse_ratio": None,
    },
    "synthetic": {"amounts": [0, 8]},
    "classifier": {
        "arch": "simple-cnn",
        "epochs": 2,
        "batch_size": 16,
        "seeds": [0, 1],
        "bootstrap": 20,
        "explain": 2,
    },
}
#: cells in the order they run
ORDER = [
    "data",
    "preprocess/32px-none",
    "preprocess/32px-clahe",
    "gen/32px-none/dc",
    "gen/32px-clahe/dc",
    "clf/32px-none/simple-cnn-syn_0",
    "synthetic/32px-none/n8",
    "clf/32px-none/simple-cnn-syn_8",
    "clf/32px-clahe/simple-cnn-syn_0",
    "synthetic/32px-clahe/n8",
    "clf/32px-clahe/simple-cnn-syn_8",
]


def write_spec(folder: Path, spec: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def interrupted_study(tmp_path_factory) -> dict:
    """Run the tiny study, interrupt it inside a classifier cell, then run it again."""
    root = tmp_path_factory.mktemp("study")
    spec = write_spec(root, TINY)
    study = root / "out"
    calls = {"n": 0}
    real_epoch = SeedTrainer.train_epoch

    def interrupted(self):
        calls["n"] += 1
        # the first classifier cell trains seeds 0 and 1 for 2 epochs (4 calls);
        # stop in the second epoch of seed 0 of the next classifier cell
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_epoch(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXRLAB_CACHE_DIR", str(root / "cache"))
        patch.setattr(SeedTrainer, "train_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_study(spec, study, device="cpu", progress=False, log=lambda line: None)
        status_after_interrupt = json.loads((study / "study.json").read_text())
        patch.setattr(SeedTrainer, "train_epoch", real_epoch)
        second = run_study(spec, study, device="cpu", progress=False, log=lambda line: None)
        third = run_study(spec, study, device="cpu", progress=False, log=lambda line: None)
    return {
        "spec": spec,
        "study": study,
        "status_after_interrupt": status_after_interrupt,
        "second": second,
        "third": third,
    }


def test_rerun_after_an_interruption_completes_only_unfinished_cells(interrupted_study):
    second, third = interrupted_study["second"], interrupted_study["third"]
    cut = ORDER.index("clf/32px-none/simple-cnn-syn_8")
    assert second.skipped == ORDER[:cut]
    assert second.ran == ORDER[cut:]
    assert third.ran == [] and third.skipped == ORDER
    status = interrupted_study["status_after_interrupt"]
    finished = [c["id"] for c in status["cells"] if c["status"] == "finished"]
    assert finished == ORDER[:cut]
    assert status["planned_cells"] == len(ORDER)


def test_the_interrupted_cell_resumed_where_it_stopped(interrupted_study):
    seed_0 = interrupted_study["study"] / "clf/32px-none/simple-cnn-syn_8/run/seed_0"
    epochs = pd.read_csv(seed_0 / "epochs.csv")
    assert list(epochs["epoch"]) == [1, 2]


def test_results_have_a_row_per_generator_and_per_classifier_cell_and_seed(interrupted_study):
    study = interrupted_study["study"]
    results = pd.read_csv(study / "results.csv")
    generators = results[results["kind"] == "generator"]
    classifiers = results[results["kind"] == "classifier"]
    assert list(generators["cell"]) == ["gen/32px-none/dc", "gen/32px-clahe/dc"]
    assert (generators["steps"] == 4).all() and generators["swd"].notna().all()
    assert (generators["selected"] == 1).all()  # the only generator of its variant
    assert len(classifiers) == 4 * 2
    assert sorted(classifiers["seed"].unique()) == [0, 1]
    # what the best cell is chosen by: each seed's validation AUC at its chosen epoch
    assert classifiers["val_roc_auc"].between(0, 1).all()
    assert set(classifiers["synthetic"]) == {0, 8}
    with_synthetic = classifiers[classifiers["synthetic"] == 8]
    assert set(with_synthetic["synthetic_from"]) == {"gen/32px-none/dc", "gen/32px-clahe/dc"}
    assert set(classifiers["equalize"]) == {"none", "clahe"}
    for name in ("roc_auc", "sensitivity", "specificity"):
        values = classifiers[f"test_{name}"].dropna()
        assert len(values) and values.between(0, 1).all()
        assert (classifiers[f"test_{name}_low"] <= classifiers[f"test_{name}"] + 1e-9).all()
    assert (classifiers["test_n_images"] > 0).all()
    # what the cells wrote
    for cell in json.loads((study / "study.json").read_text())["cells"]:
        assert (study / cell["folder"] / "cell.json").is_file(), cell["id"]
    synthetic = study / "synthetic/32px-none/n8/packed/manifest.csv"
    assert len(pd.read_csv(synthetic)) == 8
    assert (study / "clf/32px-clahe/simple-cnn-syn_8/eval-test/seed_1/gradcam.png").is_file()
    assert (study / "previews/32px-clahe.png").is_file()
    assert (study / "data/stats/class_balance.png").is_file()


def test_a_changed_setting_is_refused_not_mixed_in(interrupted_study, tmp_path):
    changed = {**TINY, "classifier": {**TINY["classifier"], "epochs": 3}}
    spec = write_spec(tmp_path, changed)
    study = interrupted_study["study"]
    before = {name: (study / name).read_text() for name in ("results.csv", "spec.yaml")}
    with pytest.raises(CxrlabError, match="epochs"):
        run_study(spec, study, device="cpu", progress=False, log=print)
    # nothing of the finished study was lost or overwritten
    for name, text in before.items():
        assert (study / name).read_text() == text, name
    cells = json.loads((study / "study.json").read_text())["cells"]
    assert [c["id"] for c in cells] == ORDER and {c["status"] for c in cells} == {"finished"}


def test_generators_train_at_a_power_of_two():
    assert generator_variant(Variant((("size", 64),))).name == "64px-none"
    assert generator_variant(Variant((("size", 224), ("equalize", "clahe")))).name == (
        "256px-clahe"
    )
    assert generator_variant(Variant((("size", 128),))).name == "128px-none"


def test_source_paths_expand_variables(tmp_path, monkeypatch):
    data = {"sources": [{"format": "ieee8023", "path": "${CXRLAB_DATA}/ieee8023"}]}
    monkeypatch.delenv("CXRLAB_DATA", raising=False)
    with pytest.raises(CxrlabError, match="CXRLAB_DATA"):
        expand_source_paths(data, tmp_path / "spec.yaml")
    monkeypatch.setenv("CXRLAB_DATA", "/data")
    assert expand_source_paths(data, tmp_path)["sources"][0]["path"] == "/data/ieee8023"
    assert data["sources"][0]["path"] == "${CXRLAB_DATA}/ieee8023"  # not changed in place


@pytest.mark.parametrize(
    "path, words",
    [
        ("${CXRLAB_DATA}/ieee8023", "unset environment variable"),
        ("nowhere/ieee8023", "does not exist"),
    ],
)
def test_a_missing_source_stops_the_study_before_its_folder_is_made(
    tmp_path, monkeypatch, path, words
):
    monkeypatch.delenv("CXRLAB_DATA", raising=False)
    spec = {**TINY, "data": {**TINY["data"], "sources": [{"format": "ieee8023", "path": path}]}}
    with pytest.raises(CxrlabError, match=words):
        run_study(
            load_spec(write_spec(tmp_path, spec)), tmp_path / "out", device="cpu", progress=False,
            log=print,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_missing_weights_stop_the_study_before_any_work(tmp_path):
    spec = {
        **TINY,
        "classifier": {**TINY["classifier"], "arch": "resnet18", "pretrained": "imagenet"},
    }
    path = write_spec(tmp_path, spec)
    with pytest.raises(CxrlabError, match="resnet18") as error:
        run_study(load_spec(path), tmp_path / "out", device="cpu", progress=False, log=print)
    assert not (tmp_path / "out" / "data").exists()
    # the fix is one a study has: `study run` has neither --weights nor --pretrained
    assert "CXRLAB_WEIGHTS_DIR" in str(error.value) and "pretrained:" in str(error.value)
    assert "--pretrained" not in str(error.value) and "--weights" not in str(error.value)


def test_the_report_of_a_real_study_loads_every_image_in_chromium(interrupted_study, tmp_path):
    from browser import render_in_chromium

    from cxrlab.study.report import write_report

    report = write_report(interrupted_study["study"], tmp_path / "report.html")
    text = report.read_text()
    assert "Classifier results" in text and "Generator results" in text
    assert text.count("simple-cnn-syn_8") >= 2  # both variants' cells are in the table
    rendered = render_in_chromium(report, tmp_path)
    assert rendered["images"] >= 10
    assert rendered["loaded"] == rendered["images"]


def test_cli_report_list_and_clear_errors(interrupted_study, tmp_path):
    from typer.testing import CliRunner

    from cxrlab.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["study", "list"])
    assert listed.exit_code == 0 and "demo" in listed.output and "thesis" in listed.output
    missing = runner.invoke(
        app, ["study", "run", str(tmp_path / "no.yaml"), "--out", str(tmp_path)]
    )
    assert missing.exit_code == 2 and "no.yaml not found" in missing.output
    out = tmp_path / "r.html"
    made = runner.invoke(
        app, ["study", "report", str(interrupted_study["study"]), "--out", str(out)]
    )
    assert made.exit_code == 0, made.output
    assert out.is_file() and "<html" in out.read_text()[:200].lower()
    # a finished study: `study run` only skips, then writes the report
    again = runner.invoke(
        app,
        [
            "study",
            "run",
            str(interrupted_study["spec"]),
            "--out",
            str(interrupted_study["study"]),
            "-q",
            "--device",
            "cpu",
        ],
    )
    assert again.exit_code == 0, again.output
    assert "ran 0 cell(s), skipped 11" in again.output
    assert (interrupted_study["study"] / "report.html").is_file()


def test_a_held_out_source_is_tested_as_an_external_set(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("COVID", "Normal"):
        folder = tmp_path / "site_b" / label
        folder.mkdir(parents=True)
        for index in range(8):
            pixels = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{label}_{index}.png")
    spec = {
        "name": "external",
        "data": {
            "sources": [
                {"format": "sample"},
                {"format": "folders", "path": "site_b", "source": "site-b"},
            ],
            "near_distance": None,
            "split": {"seed": 0, "holdout_source": "site-b"},
        },
        "preprocess": {"size": 32},
        "classifier": {"epochs": 1, "batch_size": 16, "seeds": [0], "bootstrap": 20},
    }
    result = run_study(
        write_spec(tmp_path, spec), tmp_path / "out", device="cpu", progress=False, log=print
    )
    row = result.results.iloc[0]
    assert row["external_n_images"] == 16 and row["external_n_positive"] == 8
    assert 0 <= row["external_roc_auc"] <= 1
    assert row["test_n_images"] < 150  # the held-out site is not in the test split
    assert (tmp_path / "out/clf/32px-none/simple-cnn-syn_0/eval-external/seed_0").is_dir()


def test_a_study_never_draws_from_a_collapsed_generator(tmp_path):
    spec = {
        **TINY,
        "preprocess": {"size": 32},
        "generators": {**TINY["generators"], "steps": 2, "collapse_ratio": 1.5},
        "classifier": {**TINY["classifier"], "epochs": 1, "seeds": [0], "explain": 0},
    }
    lines = []
    result = run_study(
        write_spec(tmp_path, spec), tmp_path / "out", device="cpu", progress=False, log=lines.append
    )
    status = json.loads((tmp_path / "out" / "study.json").read_text())
    generator = result.results[result.results["kind"] == "generator"].iloc[0]
    assert generator["ms_ssim_fake"] > 1.5 * generator["ms_ssim_real"]  # diversity was measured
    assert status["selected_generators"] == {}
    reason = (
        "every generator of the variant failed the generator checks (collapsed, memorizes, "
        "or not measured): gen/32px-none/dc collapsed"
    )
    assert status["skipped_cells"] == {
        "clf/32px-none/simple-cnn-syn_8": reason,
        "synthetic/32px-none/n8": reason,
    }
    # a finished study whose skipped cells are said, not counted as unfinished
    finished = [c for c in status["cells"] if c["status"] == "finished"]
    assert status["planned_cells"] == len(finished)
    from cxrlab.study.report import render_report

    html = render_report(tmp_path / "out")
    assert "Unfinished study" not in html and "2 cells skipped" in html
    assert "<td>collapsed</td>" in html  # marked in the generator table
    assert not (tmp_path / "out" / "synthetic").exists()
    assert any("collapsed" in line for line in lines)
    assert set(result.results["synthetic"].dropna().astype(int)) == {0}


def test_wall_time_is_the_time_the_cells_took_not_the_last_invocation(interrupted_study):
    status = json.loads((interrupted_study["study"] / "study.json").read_text())
    cells = [json.loads(p.read_text()) for p in interrupted_study["study"].glob("*/**/cell.json")]
    assert interrupted_study["third"].ran == []  # the third invocation did nothing
    assert status["wall_seconds"] == pytest.approx(sum(c["seconds"] for c in cells), abs=0.05)
    assert status["wall_seconds"] > 1.0


def test_an_unfinished_generator_cell_refuses_changed_settings(tmp_path):
    spec = {
        **TINY,
        "preprocess": {"size": 32},
        "synthetic": {"amounts": [0]},
        "classifier": {**TINY["classifier"], "epochs": 1, "seeds": [0], "explain": 0},
    }
    from cxrlab.gen.trainer import GenTrainer

    real_train = GenTrainer.train

    def stop_after_first_checkpoint(self, resume=False):
        self.config.steps = 2  # the run ends at its first checkpoint, the cell unfinished
        real_train(self, resume)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GenTrainer, "train", stop_after_first_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            run_study(write_spec(tmp_path, spec), tmp_path / "out", device="cpu", progress=False,
                      log=lambda line: None)  # fmt: skip
    changed = {**spec, "generators": {**spec["generators"], "diffaug": "", "batch_size": 4}}
    with pytest.raises(CxrlabError, match="batch_size"):
        run_study(write_spec(tmp_path, changed), tmp_path / "out", device="cpu", progress=False,
                  log=lambda line: None)  # fmt: skip


def _copying_run(patch, name: str = "copy") -> None:
    """Generator runs named ``name`` draw their own training images whenever their
    metrics are measured: a generator that copies, made in a few steps."""
    import numpy as np
    import torch

    from cxrlab.data.packed import open_packed
    from cxrlab.gen.run_metrics import RunMetrics

    real_generate = RunMetrics.generate

    def generate(self, generator):
        if Path(self.config.out).name != name:
            return real_generate(self, generator)
        packed = open_packed(self.config.data)
        rows = packed.select("train", self.covid)
        chosen = rows[np.arange(self.config.metrics_n) % len(rows)]
        pixels = torch.from_numpy(packed.images[chosen] / packed.max_value).float()
        return pixels[:, None] * 2 - 1

    patch.setattr(RunMetrics, "generate", generate)


#: Two generators, one of them copying; a spec that lists no memorization (as the
#: bundled demo, preprocessing and thesis specs did).
COPYING = {
    **TINY,
    "preprocess": {"size": 32},
    "generators": {
        **TINY["generators"],
        "runs": [
            {"name": "copy", "model": "dcgan", "diffaug": "translation"},
            {"name": "fresh", "model": "dcgan", "diffaug": "translation"},
        ],
        "steps": 2,
        "metrics": ["swd"],
    },
    "synthetic": {"amounts": [0, 8]},
    "classifier": {**TINY["classifier"], "epochs": 1, "seeds": [0], "explain": 0},
}


def test_memorization_is_measured_unlisted_and_a_copying_generator_never_chosen(tmp_path):
    lines = []
    with pytest.MonkeyPatch.context() as patch:
        _copying_run(patch)
        result = run_study(write_spec(tmp_path, COPYING), tmp_path / "out", device="cpu",
                           progress=False, log=lines.append)  # fmt: skip
    generators = result.results[result.results["kind"] == "generator"].set_index("generator")
    # measured for both, though the spec lists only swd; the copies have the lower SWD
    assert generators["memorization_share"].notna().all()
    assert generators.loc["copy", "memorization_share"] > 0.5
    assert generators.loc["fresh", "memorization_share"] <= 0.1
    assert generators.loc["copy", "swd"] < generators.loc["fresh", "swd"]
    status = json.loads((tmp_path / "out" / "study.json").read_text())
    assert status["selected_generators"] == {"32px-none": "gen/32px-none/fresh"}
    drawn = result.results[result.results["synthetic"] == 8]
    assert set(drawn["synthetic_from"]) == {"gen/32px-none/fresh"}
    assert any("gen/32px-none/copy memorizes" in line for line in lines)
    from cxrlab.study.report import render_report

    html = render_report(tmp_path / "out")
    assert "<td>memorizes</td>" in html


def test_synthetic_from_a_generator_that_fails_its_checks_is_refused_with_the_reason(tmp_path):
    named = {
        **COPYING,
        "generators": {**COPYING["generators"], "runs": COPYING["generators"]["runs"][:1]},
        "synthetic": {"amounts": [8], "from": "copy"},
    }
    lines = []
    with pytest.MonkeyPatch.context() as patch:
        _copying_run(patch)
        result = run_study(write_spec(tmp_path, named), tmp_path / "out", device="cpu",
                           progress=False, log=lines.append)  # fmt: skip
    status = json.loads((tmp_path / "out" / "study.json").read_text())
    assert status["selected_generators"] == {}
    reason = (
        "synthetic.from generator 'copy' failed the generator checks (collapsed, memorizes, "
        "or not measured): gen/32px-none/copy memorizes"
    )
    assert status["skipped_cells"] == {
        "clf/32px-none/simple-cnn-syn_8": reason,
        "synthetic/32px-none/n8": reason,
    }
    assert not (tmp_path / "out" / "synthetic").exists()
    assert (result.results["kind"] == "classifier").sum() == 0
    assert any(reason in line for line in lines)
    from cxrlab.study.report import render_report

    html = render_report(tmp_path / "out")  # the reason, HTML-escaped
    assert "failed the generator checks" in html and "gen/32px-none/copy memorizes" in html


def test_study_run_help_names_every_bundled_spec():
    from typer.testing import CliRunner

    from cxrlab.cli import app
    from cxrlab.study.bundled import bundled_specs

    result = CliRunner().invoke(app, ["study", "run", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in bundled_specs():
        assert name in text, name


def test_a_leave_site_out_study_chooses_its_best_cell_out_of_site(tmp_path):
    from cxrlab.study.findings import OUT_OF_SITE_AUC, best_classifier
    from cxrlab.study.report import render_report

    spec = {
        "name": "lso",
        "data": TINY["data"],
        "evaluation": "leave-site-out",
        "preprocess": {"size": 32},
        "classifier": {
            "arch": "simple-cnn",
            "augment": ["none", "mild"],
            "epochs": 1,
            "batch_size": 16,
            "seeds": [0],
            "bootstrap": 20,
            "folds": 2,
        },
    }
    result = run_study(write_spec(tmp_path, spec), tmp_path / "out", device="cpu",
                       progress=False, log=lambda line: None)  # fmt: skip
    rows = result.results[result.results["kind"] == "classifier"].set_index("cell")
    columns = [OUT_OF_SITE_AUC, "in_site_roc_auc", "pooled_out_of_site_roc_auc",
               "pooled_out_of_site_roc_auc_low", "site_gap_roc_auc_high"]  # fmt: skip
    assert rows[columns].notna().all().all() and rows[columns[:4]].stack().between(0, 1).all()
    assert rows["test_roc_auc"].notna().all()  # the test split, read once as before
    for cell in rows.index:
        cv = json.loads((tmp_path / "out" / cell / "cv" / "cv.json").read_text())
        assert cv["n_folds"] == 2
        assert rows.loc[cell, OUT_OF_SITE_AUC] == pytest.approx(
            cv["per_seed"]["0"]["fold_mean"]["out_of_site_auc"]
        )
    status = json.loads((tmp_path / "out" / "study.json").read_text())
    assert status["evaluation"] == "leave-site-out"
    assert status["classifier_selected_by"] == OUT_OF_SITE_AUC
    best = best_classifier(result.results, status["axes"], OUT_OF_SITE_AUC)
    assert best.cell == rows[OUT_OF_SITE_AUC].idxmax()
    html = render_report(tmp_path / "out")
    assert "chosen by leave-site-out validation" in html and "out-of-site ROC-AUC" in html
