"""Studies whose numbers can be believed: multiplicity, intervals, control arm, metric facts
in one place, and every spec problem named before any work."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from test_findings import AXES, clf_rows, gen_rows
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.study.findings import (
    CON,
    PRO,
    UNCLEAR,
    all_findings,
    classifier_findings,
    control_level,
    describe_change,
    generator_findings,
    higher_is_better,
    is_generator_metric,
    metric_label,
    summarise_classifiers,
)
from cxrlab.study.spec import SpecError, load_spec

runner = CliRunner()


# ------------------------------------------------------------------ multiplicity
def test_holm_turns_a_lone_significant_difference_among_many_tests_inconclusive():
    # a +0.02 gain whose size varies by seed: p about 0.014 alone, one of six tests
    noise = {0: 0.0, 1: 0.017, 2: -0.014}
    results = clf_rows(
        lambda eq, aug, seed: 0.7 + (0.02 + noise[seed] if eq == "clahe" else 0.0),
        augments=("none", "mild"),
    )
    alone = classifier_findings(results, AXES)
    auc = next(
        c for f in alone if f.factor == "equalize" for c in f.changes if c.metric == "test_roc_auc"
    )
    assert auc.verdict == PRO and auc.p_value < 0.05
    adjusted = all_findings(results, AXES)
    auc = next(
        c
        for f in adjusted
        if f.factor == "equalize"
        for c in f.changes
        if c.metric == "test_roc_auc"
    )
    tests = auc.n_tests
    assert tests >= 4 and auc.p_adjusted == pytest.approx(min(1.0, auc.p_value * tests))
    assert auc.verdict == UNCLEAR
    assert "Holm-adjusted" in describe_change(auc) and "not significant" in describe_change(auc)


def test_holm_keeps_a_clear_effect():
    results = clf_rows(lambda eq, aug, seed: 0.7 + 0.01 * seed + (0.1 if eq == "clahe" else 0))
    auc = next(
        c
        for f in all_findings(results, AXES)
        if f.factor == "equalize"
        for c in f.changes
        if c.metric == "test_roc_auc"
    )
    assert auc.verdict == PRO and auc.p_adjusted == 0.0


# ------------------------------------------------------------------ intervals
def test_a_multi_seed_interval_holds_seed_and_test_set_variation():
    results = clf_rows(lambda eq, aug, seed: 0.7 + 0.02 * seed, equalizes=("none",))
    results["test_roc_auc_low"] = results["test_roc_auc"] - 0.10
    results["test_roc_auc_high"] = results["test_roc_auc"] + 0.05
    row = summarise_classifiers(results, AXES).iloc[0]
    seed_half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert row["interval"] == "seeds+test"
    assert row["test_roc_auc_low"] == pytest.approx(0.72 - math.hypot(seed_half, 0.10))
    assert row["test_roc_auc_high"] == pytest.approx(0.72 + math.hypot(seed_half, 0.05))
    # wider than either source alone: the t-interval and the seeds' mean bootstrap interval
    assert row["test_roc_auc_low"] < min(0.72 - seed_half, 0.72 - 0.10)
    assert row["test_roc_auc_high"] > max(0.72 + seed_half, 0.72 + 0.05)


# ------------------------------------------------------------------ the control arm
def test_synthetic_images_are_compared_with_their_oversampled_control():
    real = clf_rows(lambda eq, aug, seed: 0.70 + 0.01 * seed, equalizes=("none",))
    synthetic = real.assign(synthetic=100, test_roc_auc=real["test_roc_auc"] + 0.05)
    control = real.assign(synthetic=control_level(100), test_roc_auc=real["test_roc_auc"] + 0.05)
    findings = classifier_findings(pd.concat([real, synthetic, control]), AXES)
    subjects = {(f.level, f.reference): f for f in findings if f.factor == "synthetic"}
    assert set(subjects) == {("100", "0"), ("100 oversampled", "0"), ("100", "100 oversampled")}
    images = next(
        c for c in subjects[("100", "100 oversampled")].changes if c.metric == "test_roc_auc"
    )
    # the gain came from the prevalence: the images add nothing over oversampling
    assert images.mean == pytest.approx(0.0) and images.verdict == UNCLEAR


def test_training_set_oversamples_real_positives_for_the_control_arm(tmp_path):
    from cxrlab.clf.data import training_set
    from factory import make_packed

    make_packed(tmp_path / "P")
    plain = training_set(tmp_path / "P")
    control = training_set(tmp_path / "P", oversample_positive=10, seed=3)
    added = control.table.iloc[len(plain) :]
    assert len(added) == 10 and (added["origin"] == "oversampled").all()
    assert (added["covid"] == 1).all() and set(added["id"]) <= set(plain.table["id"])
    assert np.array_equal(
        control.batch([len(plain)]),
        plain.batch([plain.table["id"].tolist().index(added["id"].iloc[0])]),
    )


# ------------------------------------------------------------------ one place for metric facts
def test_metric_facts_come_from_the_registry_alone(tmp_path):
    from cxrlab.metrics.registry import METRICS, VALUES, Value, register_metric
    from cxrlab.study.runner import _final_metric_values

    try:

        @register_metric(
            "toy", Value("toy_score", "toy score", "higher is better: a toy", "higher")
        )
        def toy(context):
            return {"toy_score": 1.0}

        assert metric_label("toy_score") == "toy score"
        assert higher_is_better("toy_score") and is_generator_metric("toy_score")
        assert metric_label("swd_32px") == "SWD at 32 px" and not higher_is_better("swd_32px")
        # a new metric needs no other table to reach results.csv and the findings
        values = {("none", "a"): 1.0, ("none", "b"): 2.0}
        rows = gen_rows(values, metric="toy_score")
        b = next(f for f in generator_findings(rows, AXES, "toy_score") if f.level == "b")
        assert b.changes[0].higher_is_better and b.changes[0].mean == pytest.approx(1.0)
        assert "higher is better" in describe_change(b.changes[0])
        (tmp_path / "metrics.csv").write_text("step,seconds,toy_score\n5,1,0.25\n")
        assert _final_metric_values(tmp_path / "metrics.csv") == {"toy_score": 0.25}
        # and the report shows it by its label, in the generator table
        from study_factory import make_study

        from cxrlab.study.report import render_report

        root = make_study(tmp_path / "study")
        results = pd.read_csv(root / "results.csv")
        results.loc[results["kind"] == "generator", "toy_score"] = 0.5
        results.to_csv(root / "results.csv", index=False)
        assert "<th>toy score</th>" in render_report(root)
    finally:
        METRICS.pop("toy", None)
        VALUES.pop("toy_score", None)


def test_density_is_best_near_one_not_highest():
    # b has the higher density in both variants, but a sits at the ideal 1
    # (three variants: a comparison needs three pairs for an interval)
    values = {("none", "a"): 1.0, ("none", "b"): 3.0, ("clahe", "a"): 1.1, ("clahe", "b"): 3.1}
    values |= {("x", "a"): 1.2, ("x", "b"): 3.2}
    rows = gen_rows(values, metric="density")
    finding = next(f for f in generator_findings(rows, AXES, "density") if f.level == "b")
    change = finding.changes[0]
    assert change.mean == pytest.approx(2.0)  # |3 - 1| - |1 - 1|, |3.1 - 1| - |1.1 - 1|, ...
    assert change.verdict == CON and "distance of density from 1" in describe_change(change)


def test_the_runner_copies_every_registered_value_a_run_logged(tmp_path):
    from cxrlab.study.runner import _final_metric_values

    (tmp_path / "metrics.csv").write_text(
        "step,seconds,d_loss,swd,swd_16px,precision,kid_std\n1,1,0.5,,,,\n2,2,0.4,3.5,1.5,0.7,0.1\n"
    )
    assert _final_metric_values(tmp_path / "metrics.csv") == {
        "swd": 3.5,
        "swd_16px": 1.5,
        "precision": 0.7,
        "kid_std": 0.1,
    }


# ------------------------------------------------------------------ specs checked before any work
BASE = {
    "name": "t",
    "data": {"sources": [{"format": "sample"}]},
    "preprocess": {"size": 32},
    "generators": {"runs": ["dcgan"], "label": "positive", "steps": 2},
    "synthetic": {"amounts": [0, 4]},
    "classifier": {"arch": "simple-cnn", "epochs": 1},
}


def _spec(tmp_path, **sections):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**BASE, **sections}))
    return path


@pytest.mark.parametrize(
    ("sections", "words"),
    [
        (
            {"generators": {**BASE["generators"], "metrics": ["fid"], "select_by": "swd"}},
            "measures only fid; add 'swd'",
        ),
        (
            {"generators": {**BASE["generators"], "select_by": "ms_ssim_real"}},
            "generators can be chosen by",
        ),
        ({"generators": {**BASE["generators"], "collapse_ratio": 0.5}}, "collapse_ratio"),
        ({"generators": {**BASE["generators"], "memorization_limit": 5}}, "memorization_limit"),
        ({"generators": {"runs": ["dcgan"], "steps": 2}}, "unlabelled"),
        (
            {
                "generators": {"runs": ["cgan"], "steps": 2},
                "synthetic": {"amounts": [4], "label": "covid"},
            },
            "positive or negative",
        ),
        (
            {
                "generators": {**BASE["generators"]},
                "synthetic": {"amounts": [4], "label": "negative"},
            },
            "trained on positive",
        ),
        (
            {"classifier": {"arch": "simple-cnn", "epochs": "two"}},
            "epochs must be a whole number, got 'two'",
        ),
        ({"data": {"sources": [{"format": "dicomdir"}]}}, "unknown format 'dicomdir'"),
        ({"synthetic": {"amounts": [4], "control": "yes"}}, "control must be true or false"),
    ],
)
def test_spec_problems_are_named(tmp_path, sections, words):
    with pytest.raises(SpecError) as caught:
        load_spec(_spec(tmp_path, **sections))
    assert words in str(caught.value)
    # the base spec itself is valid, and measures what the collapse and memorization
    # checks read, unlisted
    metrics = load_spec(_spec(tmp_path)).generators[0].settings["metrics"]
    assert metrics == ["swd", "diversity", "memorization"]


def test_every_problem_of_a_spec_is_named_at_once(tmp_path):
    path = _spec(
        tmp_path,
        data={"sources": [{"format": "dicomdir"}]},
        classifier={"arch": "simple-cnn", "epochs": "two"},
        extra=1,
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert "3 problems" in message
    for words in ("unknown field(s) extra", "dicomdir", "epochs must be a whole number"):
        assert words in message


def test_study_run_fails_before_writing_anything(tmp_path):
    path = _spec(tmp_path, data={"sources": [{"format": "dicomdir"}]})
    result = runner.invoke(app, ["study", "run", str(path), "--out", str(tmp_path / "s1")])
    assert result.exit_code == 2 and "dicomdir" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "s1").exists()
    import torch

    if not torch.cuda.is_available():
        result = runner.invoke(
            app,
            [
                "study",
                "run",
                str(_spec(tmp_path)),
                "--out",
                str(tmp_path / "s2"),
                "--device",
                "cuda",
            ],
        )
        assert result.exit_code == 2 and "CUDA is not available" in result.output
        assert not (tmp_path / "s2").exists()


def test_study_report_refuses_a_folder_that_is_not_a_study(tmp_path):
    (tmp_path / "x").mkdir()
    result = runner.invoke(app, ["study", "report", str(tmp_path / "x")])
    assert result.exit_code == 2 and "not a study folder" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x" / "report.html").exists()


# ------------------------------------------------------------------ metrics offline
def test_plain_metrics_offline_fall_back_to_the_metrics_that_need_no_weights(tmp_path):
    from factory import make_packed

    make_packed(tmp_path / "P")
    make_packed(tmp_path / "F", seed=1)
    result = runner.invoke(
        app,
        [
            "metrics",
            str(tmp_path / "P"),
            str(tmp_path / "F"),
            "--out",
            str(tmp_path / "m.json"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "need no weights: swd, diversity" in result.output
    assert (
        "swd" in (tmp_path / "m.json").read_text()
        and '"fid"' not in (tmp_path / "m.json").read_text()
    )
