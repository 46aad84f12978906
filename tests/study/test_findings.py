import math

import pandas as pd
import pytest

from cxrlab.study.findings import (
    CON,
    NOT_MEASURED,
    OUT_OF_SITE_AUC,
    PRO,
    UNCLEAR,
    BestClassifier,
    GeneratorChecks,
    all_findings,
    best_classifier,
    best_generator_position,
    best_generators,
    classifier_findings,
    describe_change,
    generator_findings,
    grouped_statements,
    level_text,
    levels_in_order,
    matching_baseline,
    paired_rows,
    render_finding,
    selection_metric,
    study_factors,
    summarise_classifiers,
)

AXES = {
    "preprocess": ["equalize"],
    "generator": ["generator", "gen_augment"],
    "classifier": ["arch", "augment", "synthetic"],
}


def clf_rows(
    auc,
    *,
    seeds=(0, 1, 2),
    augments=("none",),
    equalizes=("none", "clahe"),
    seconds=None,
    val_auc=None,
):
    """Classifier rows of a grid: ``auc(equalize, augment, seed)``,
    ``seconds(equalize, augment, seed)`` and ``val_auc(...)`` (default: as ``auc``) give
    each row's values."""
    rows = []
    for equalize in equalizes:
        for augment in augments:
            cell = f"clf/64px-{equalize}/simple-cnn-aug_{augment}-syn_0"
            for seed in seeds:
                value = auc(equalize, augment, seed)
                rows.append(
                    {
                        "kind": "classifier",
                        "cell": cell,
                        "folder": cell,
                        "variant": f"64px-{equalize}",
                        "equalize": equalize,
                        "seed": seed,
                        "arch": "simple-cnn",
                        "augment": augment,
                        "synthetic": 0,
                        "test_roc_auc": value,
                        "val_roc_auc": value
                        if val_auc is None
                        else val_auc(equalize, augment, seed),
                        "test_sensitivity": 0.8,
                        "test_specificity": 0.7,
                        "seconds": 10.0 if seconds is None else seconds(equalize, augment, seed),
                    }
                )
    return pd.DataFrame(rows)


def only(findings, factor):
    chosen = [f for f in findings if f.factor == factor]
    assert len(chosen) == 1, chosen
    return chosen[0]


def change(finding, metric):
    return next(c for c in finding.changes if c.metric == metric)


def test_a_constant_gain_is_a_pro_with_a_zero_width_interval():
    # very different baselines per seed and augment: pairing must follow them exactly
    base = {0: 0.55, 1: 0.91, 2: 0.62}
    results = clf_rows(
        lambda eq, aug, seed: base[seed] + (0.03 if aug == "mild" else 0) + 0.1 * (eq == "clahe"),
        augments=("none", "mild"),
    )
    finding = only(classifier_findings(results, AXES), "equalize")
    auc = change(finding, "test_roc_auc")
    assert (finding.level, finding.reference, finding.n_pairs) == ("clahe", "none", 6)
    assert auc.mean == pytest.approx(0.1)
    assert auc.low == pytest.approx(0.1) and auc.high == pytest.approx(0.1)
    assert auc.verdict == PRO
    sensitivity = change(finding, "test_sensitivity")
    assert sensitivity.mean == 0 and sensitivity.verdict == UNCLEAR
    sentence = render_finding(finding)
    assert sentence.startswith(
        "equalize clahe vs none: ROC-AUC +0.100 (95% CI +0.100 to +0.100, 6 pairs): better"
    )
    assert "training time ×1.00" in sentence


def test_a_constant_loss_is_a_con():
    results = clf_rows(lambda eq, aug, seed: 0.8 - 0.05 * (eq == "clahe") + 0.01 * seed)
    auc = change(only(classifier_findings(results, AXES), "equalize"), "test_roc_auc")
    assert auc.mean == pytest.approx(-0.05) and auc.verdict == CON
    assert "worse" in render_finding(only(classifier_findings(results, AXES), "equalize"))


def test_symmetric_noise_is_no_clear_effect():
    noise = {0: 0.04, 1: -0.04, 2: 0.03, 3: -0.03}
    results = clf_rows(
        lambda eq, aug, seed: 0.75 + (noise[seed] if eq == "clahe" else 0), seeds=(0, 1, 2, 3)
    )
    finding = only(classifier_findings(results, AXES), "equalize")
    auc = change(finding, "test_roc_auc")
    assert auc.mean == pytest.approx(0.0, abs=1e-12)
    assert auc.low < 0 < auc.high
    assert auc.verdict == UNCLEAR
    assert "ROC-AUC 0.000 (95% CI -0.0" in render_finding(finding)
    assert "no clear effect" in render_finding(finding)


def test_interval_is_a_t_interval_over_pairs():
    differences = {0: 0.01, 1: 0.03, 2: 0.08}
    results = clf_rows(lambda eq, aug, seed: 0.7 + (differences[seed] if eq == "clahe" else 0))
    auc = change(only(classifier_findings(results, AXES), "equalize"), "test_roc_auc")
    values = pd.Series(differences.values())
    half = 4.302652729911275 * values.std() / math.sqrt(3)  # t(0.975, 2)
    assert auc.mean == pytest.approx(values.mean())
    assert auc.low == pytest.approx(values.mean() - half)
    assert auc.high == pytest.approx(values.mean() + half)


def test_one_pair_has_no_interval():
    results = clf_rows(lambda eq, aug, seed: 0.7 + 0.2 * (eq == "clahe"), seeds=(0,))
    finding = only(classifier_findings(results, AXES), "equalize")
    auc = change(finding, "test_roc_auc")
    assert auc.n_pairs == 1 and auc.low is None and auc.high is None
    assert auc.verdict == UNCLEAR
    assert "ROC-AUC +0.200 (one pair: too few pairs for an interval" in render_finding(finding)


def test_time_is_a_ratio_and_a_con_above_1_2():
    slow = clf_rows(
        lambda eq, aug, seed: 0.7,
        seconds=lambda eq, aug, seed: (15.0 if eq == "clahe" else 10.0) * (1 + seed),
    )
    time = change(only(classifier_findings(slow, AXES), "equalize"), "seconds")
    assert time.kind == "ratio" and time.mean == pytest.approx(1.5) and time.verdict == CON
    assert "training time ×1.50 (95% CI ×1.50 to ×1.50, 3 pairs)" in describe_change(time)
    similar = clf_rows(
        lambda eq, aug, seed: 0.7, seconds=lambda eq, aug, seed: 11.0 if eq == "clahe" else 10.0
    )
    time = change(only(classifier_findings(similar, AXES), "equalize"), "seconds")
    assert time.mean == pytest.approx(1.1) and time.verdict == UNCLEAR
    fast = clf_rows(
        lambda eq, aug, seed: 0.7, seconds=lambda eq, aug, seed: 5.0 if eq == "clahe" else 10.0
    )
    assert change(only(classifier_findings(fast, AXES), "equalize"), "seconds").verdict == PRO


def test_missing_or_single_level_factors_give_no_finding():
    results = clf_rows(lambda eq, aug, seed: 0.7 + 0.1 * (eq == "clahe"))
    factors = {f.factor for f in classifier_findings(results, AXES)}
    assert factors == {"equalize"}  # arch, augment, synthetic have one level each
    without = results.drop(columns=["equalize"])
    assert classifier_findings(without, AXES) == []
    assert classifier_findings(pd.DataFrame(), AXES) == []
    assert generator_findings(results, AXES) == []  # no generator rows


def test_pairs_never_cross_seeds():
    results = clf_rows(lambda eq, aug, seed: 0.7, seeds=(0, 1))
    # the clahe rows were run with other seeds than the reference rows
    results.loc[results["equalize"] == "clahe", "seed"] += 10
    assert classifier_findings(results, AXES) == []


def test_pairs_never_cross_other_factors():
    results = clf_rows(lambda eq, aug, seed: 0.7, augments=("none", "mild"))
    # keep only equalize none + augment none, and clahe + mild: no pair differs in one factor
    keep = ((results["equalize"] == "none") & (results["augment"] == "none")) | (
        (results["equalize"] == "clahe") & (results["augment"] == "mild")
    )
    assert all_findings(results[keep], AXES) == []
    # adding the matching clahe + none rows gives exactly their pairs
    partial = results[keep | ((results["equalize"] == "clahe") & (results["seed"] == 1))]
    equalize = only(classifier_findings(partial, AXES), "equalize")
    assert equalize.n_pairs == 1  # clahe/none/seed 1 with none/none/seed 1
    pairs = paired_rows(
        partial,
        "equalize",
        "clahe",
        "none",
        study_factors(partial, AXES)["classifier"],
        ["seconds"],
    )
    assert list(pairs.index) == [("simple-cnn", "none", "0", "1")]


def test_synthetic_reference_is_zero_and_levels_keep_study_order():
    rows = pd.DataFrame(
        {"synthetic": [100, 0, 500, 100.0], "augment": ["mild", "none", "none", "mild"]}
    )
    assert levels_in_order(rows, "synthetic") == ["0", "100", "500"]
    assert levels_in_order(rows, "augment") == ["mild", "none"]
    assert level_text(100.0) == "100" and level_text(float("nan")) == "" and level_text("a") == "a"


def test_synthetic_findings_compare_with_real_only():
    results = clf_rows(lambda eq, aug, seed: 0.7 + 0.01 * seed, equalizes=("none",))
    synthetic = results.assign(
        synthetic=100, test_roc_auc=results["test_roc_auc"] + 0.02, cell="clf/x-syn_100"
    )
    both = pd.concat([synthetic, results])  # the synthetic rows come first
    finding = only(classifier_findings(both, AXES), "synthetic")
    assert (finding.level, finding.reference) == ("100", "0")
    assert change(finding, "test_roc_auc").mean == pytest.approx(0.02)


#: What the generator checks read, measured and passing (MS-SSIM like real, no copying).
CHECKED = {"ms_ssim_fake": 0.40, "ms_ssim_real": 0.40, "memorization_share": 0.05}


def gen_rows(values, metric="swd", seconds=None):
    """Generator rows: ``values[(variant, generator)]`` is the final metric; the values
    the generator checks read are measured and pass (:data:`CHECKED`)."""
    rows = []
    for (equalize, generator), value in values.items():
        rows.append(
            {
                "kind": "generator",
                "cell": f"gen/64px-{equalize}/{generator}",
                "folder": f"gen/64px-{equalize}/{generator}",
                "variant": f"64px-{equalize}",
                "equalize": equalize,
                "seed": 0,
                "generator": generator,
                "model": generator,
                "gen_augment": "none",
                "steps": 1000,
                metric: value,
                "seconds": (seconds or {}).get((equalize, generator), 20.0),
                "selected": 0,
                **CHECKED,
            }
        )
    return pd.DataFrame(rows)


def test_generator_findings_follow_the_metric_direction():
    values = {("none", "dcgan"): 0.10, ("clahe", "dcgan"): 0.20, ("x", "dcgan"): 0.30}
    values |= {("none", "vae"): 0.05, ("clahe", "vae"): 0.15, ("x", "vae"): 0.25}
    results = gen_rows(values)
    vae = only(generator_findings(results, AXES, "swd"), "generator")
    swd = change(vae, "swd")
    assert (vae.level, vae.reference, vae.n_pairs) == ("vae", "dcgan", 3)
    assert swd.mean == pytest.approx(-0.05) and swd.verdict == PRO  # lower SWD is better
    assert "lower is better" in describe_change(swd)
    # IS: higher is better, so the same numbers are a con
    is_results = gen_rows(values, metric="is")
    is_change = change(only(generator_findings(is_results, AXES, "is"), "generator"), "is")
    assert is_change.verdict == CON and "higher is better" in describe_change(is_change)
    # each variant's generators are measured against its own preprocessed images: metrics
    # are never compared across preprocessing variants, only within one
    assert not [f for f in generator_findings(results, AXES, "swd") if f.factor == "equalize"]


def test_grouped_statements_split_pros_cons_and_unclear():
    results = clf_rows(
        lambda eq, aug, seed: 0.7 + 0.1 * (eq == "clahe") + 0.01 * seed,
        seconds=lambda eq, aug, seed: 30.0 if eq == "clahe" else 10.0,
    )
    groups = grouped_statements(classifier_findings(results, AXES))[("classifier", "equalize")]
    assert groups["Pros"] == [
        "equalize clahe vs none: ROC-AUC +0.100 (95% CI +0.100 to +0.100, 3 pairs)."
    ]
    assert groups["Cons"] == [
        "equalize clahe vs none: training time ×3.00 (95% CI ×3.00 to ×3.00, 3 pairs): "
        "costs more time."
    ]
    assert len(groups["No clear effect"]) == 1
    assert "sensitivity 0.000" in groups["No clear effect"][0]


def test_best_classifier_is_chosen_on_validation_never_on_test():
    results = clf_rows(
        lambda eq, aug, seed: {"none": 0.7, "mild": 0.8}[aug] + (0.1 if eq == "clahe" else 0),
        augments=("none", "mild"),
        # validation prefers no augmentation without CLAHE, whatever the test says
        val_auc=lambda eq, aug, seed: 0.9 if (eq, aug) == ("none", "none") else 0.6,
    )
    best = best_classifier(results, AXES)
    assert isinstance(best, BestClassifier)
    assert best.cell == "clf/64px-none/simple-cnn-aug_none-syn_0"
    assert best.val_roc_auc == pytest.approx(0.9)
    assert best.roc_auc == pytest.approx(0.7)  # its test number, reported, not chosen by
    assert best.n_seeds == 3 and best.seeds == (0, 1, 2)
    assert best.factors == {
        "equalize": "none",
        "arch": "simple-cnn",
        "augment": "none",
        "synthetic": "0",
    }
    # a tie on validation goes to the earlier cell, never to a test number
    tie = clf_rows(lambda eq, aug, seed: 0.8)
    tie.loc[tie["equalize"] == "clahe", ["test_roc_auc", "test_sensitivity"]] = 0.99
    assert best_classifier(tie, AXES).cell == "clf/64px-none/simple-cnn-aug_none-syn_0"
    assert best_classifier(pd.DataFrame(), AXES) is None
    assert best_classifier(tie.assign(val_roc_auc=float("nan")), AXES) is None
    assert best_classifier(tie.drop(columns=["val_roc_auc"]), AXES) is None


def test_matching_baseline_is_real_only_without_augmentation():
    real = clf_rows(lambda eq, aug, seed: 0.7, augments=("none", "mild"))
    synthetic = real.assign(
        synthetic=100,
        test_roc_auc=0.9,
        val_roc_auc=0.9,
        cell=real["cell"].str.replace("syn_0", "syn_100"),
    )
    results = pd.concat([real, synthetic])
    best = best_classifier(results, AXES)
    assert best.factors["synthetic"] == "100"
    baseline = matching_baseline(results, best, AXES)
    assert baseline == best.cell.replace(f"aug_{best.factors['augment']}", "aug_none").replace(
        "syn_100", "syn_0"
    )
    real_best = best_classifier(real, AXES)
    assert matching_baseline(real, real_best, AXES) == real_best.cell.replace("mild", "none")


def test_summary_intervals_over_seeds_or_from_the_bootstrap():
    results = clf_rows(lambda eq, aug, seed: 0.7 + 0.02 * seed)
    summary = summarise_classifiers(results, AXES).set_index("cell")
    row = summary.loc["clf/64px-none/simple-cnn-aug_none-syn_0"]
    assert row["n_seeds"] == 3 and row["interval"] == "seeds"
    assert row["test_roc_auc"] == pytest.approx(0.72)
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert row["test_roc_auc_low"] == pytest.approx(0.72 - half)
    one = clf_rows(lambda eq, aug, seed: 0.7, seeds=(5,)).assign(
        test_roc_auc_low=0.6, test_roc_auc_high=0.8
    )
    row = summarise_classifiers(one, AXES).iloc[0]
    assert row["interval"] == "bootstrap" and row["seeds"] == (5,)
    assert (row["test_roc_auc_low"], row["test_roc_auc_high"]) == (0.6, 0.8)
    assert math.isnan(row["test_sensitivity_low"])  # no bootstrap columns for it
    assert summarise_classifiers(pd.DataFrame(), AXES).empty
    # two far-apart seeds: the t-interval (12.7 x the standard error) is clipped to 0-1
    wide = clf_rows(lambda eq, aug, seed: 0.5 + 0.49 * seed, seeds=(0, 1))
    row = summarise_classifiers(wide, AXES).iloc[0]
    assert (row["test_roc_auc_low"], row["test_roc_auc_high"]) == (0.0, 1.0)


def test_best_generators_per_variant():
    values = {("none", "dcgan"): 0.10, ("none", "vae"): 0.05, ("clahe", "dcgan"): 0.2}
    values |= {("clahe", "vae"): 0.3}
    best = best_generators(gen_rows(values), "swd")
    assert {v: b.cell for v, b in best.items()} == {
        "64px-none": "gen/64px-none/vae",
        "64px-clahe": "gen/64px-clahe/dcgan",
    }
    higher = best_generators(gen_rows(values, metric="is"), "is")
    assert higher["64px-none"].cell == "gen/64px-none/dcgan"
    # without the metric, the runner's selection is used
    fallback = gen_rows(values).drop(columns=["swd"])
    fallback.loc[fallback["cell"] == "gen/64px-clahe/vae", "selected"] = 1
    assert {v: b.cell for v, b in best_generators(fallback, "swd").items()} == {
        "64px-clahe": "gen/64px-clahe/vae"
    }


def test_a_collapsed_or_memorizing_generator_is_never_the_best():
    values = {("none", "vae"): 0.05, ("none", "dcgan"): 0.10, ("none", "gan"): 0.20}
    rows = gen_rows(values).assign(ms_ssim_real=0.4, ms_ssim_fake=0.45, memorization_share=0.02)
    by_cell = rows.set_index("generator")
    assert best_generators(rows, "swd")["64px-none"].cell == "gen/64px-none/vae"
    rows.loc[by_cell.index == "vae", "memorization_share"] = 0.27  # copies its training images
    assert best_generators(rows, "swd")["64px-none"].cell == "gen/64px-none/dcgan"
    rows.loc[by_cell.index == "dcgan", "ms_ssim_fake"] = 0.61  # above 1.5 x 0.4
    assert best_generators(rows, "swd")["64px-none"].cell == "gen/64px-none/gan"
    checks = GeneratorChecks(collapse_ratio=1.5, memorization_limit=0.1)
    assert list(checks.flaws(rows)) == ["memorizes", "collapsed", ""]
    assert checks.flaw({**CHECKED, "memorization_share": 0.1}) is None  # at the limit: not over
    off = GeneratorChecks(collapse_ratio=None, memorization_limit=None)
    assert best_generators(rows, "swd", off)["64px-none"].cell == "gen/64px-none/vae"
    assert "0.1 of its images" in checks.explain("memorizes")


def test_best_generator_position_on_the_runners_records():
    # the runner passes one dict per generator cell; {} for a cell with no result
    records = [
        {},
        {**CHECKED, "swd": 50.0, "memorization_share": 0.27},  # best value, but copies
        {**CHECKED, "swd": 60.0, "ms_ssim_fake": 0.9, "ms_ssim_real": 0.4},  # collapsed
        {**CHECKED, "swd": float("nan")},
        {**CHECKED, "swd": 70.0},
        {**CHECKED, "swd": 65.0},
        {**CHECKED, "swd": 65.0},  # equal to the one before: the first wins
    ]
    assert best_generator_position(records, "swd") == 5
    off = GeneratorChecks(collapse_ratio=None, memorization_limit=None)
    assert best_generator_position(records, "swd", off) == 1
    higher = [{**CHECKED, "is": v} for v in (1.5, 2.5, 2.0)]  # Inception Score: higher best
    assert best_generator_position(higher, "is") == 1
    assert best_generator_position([{}, {"swd": float("nan")}], "swd") is None
    # the report falls back to the runner's record, never to a flawed generator
    rows = gen_rows({("none", "vae"): 0.05, ("none", "dcgan"): 0.1}).drop(columns=["swd"])
    rows = rows.assign(selected=1, memorization_share=[0.3, 0.0])
    assert best_generators(rows, "swd")["64px-none"].cell == "gen/64px-none/dcgan"
    # ... nor to one the checks could not read
    rows = rows.assign(memorization_share=[0.0, float("nan")])
    assert best_generators(rows, "swd")["64px-none"].cell == "gen/64px-none/vae"
    assert best_generators(rows.assign(memorization_share=float("nan")), "swd") == {}


def test_a_missing_memorization_share_is_not_measured_and_never_chosen():
    # the contract used to be "missing values pass": a generator nobody checked for
    # copying could be chosen whenever a spec did not list memorization
    checks = GeneratorChecks(collapse_ratio=1.5, memorization_limit=0.1)
    unmeasured = {k: v for k, v in CHECKED.items() if k != "memorization_share"}
    assert checks.flaw(CHECKED) is None
    assert checks.flaw(unmeasured) == NOT_MEASURED
    for missing in ("n/a", None, float("nan")):
        assert checks.flaw({**CHECKED, "memorization_share": missing}) == NOT_MEASURED
    assert checks.missing(unmeasured) == ["memorization_share"]
    assert checks.explain(NOT_MEASURED, unmeasured).startswith("memorization_share not measured")
    # the collapse check needs both MS-SSIM values the same way
    assert checks.flaw({**CHECKED, "ms_ssim_real": None}) == NOT_MEASURED
    assert checks.missing({}) == ["ms_ssim_fake", "ms_ssim_real", "memorization_share"]
    # a measured failure is named before a missing value
    assert checks.flaw({"memorization_share": 0.3}) == "memorizes"
    assert checks.flaw({"ms_ssim_fake": 0.9, "ms_ssim_real": 0.4}) == "collapsed"
    # a check that is off reads nothing, and the metrics the runner adds follow the checks
    assert GeneratorChecks(1.5, None).flaw(unmeasured) is None
    assert GeneratorChecks(None, None).flaw({}) is None
    assert checks.metrics() == ["diversity", "memorization"]
    assert GeneratorChecks(None, 0.1).metrics() == ["memorization"]
    # never the best: the lowest SWD without a memorization share loses to a checked one
    records = [{**unmeasured, "swd": 40.0}, {**CHECKED, "swd": 60.0}]
    assert best_generator_position(records, "swd", checks) == 1
    assert best_generator_position(records[:1], "swd", checks) is None
    rows = gen_rows({("none", "vae"): 40.0, ("none", "dcgan"): 60.0})
    rows.loc[rows["generator"] == "vae", "memorization_share"] = None
    assert list(checks.flaws(rows)) == [NOT_MEASURED, ""]
    assert best_generators(rows, "swd", checks)["64px-none"].cell == "gen/64px-none/dcgan"


def test_nan_values_and_missing_columns_are_tolerated():
    results = clf_rows(lambda eq, aug, seed: 0.7 + 0.1 * (eq == "clahe")).assign(
        external_roc_auc=float("nan")
    )
    results.loc[results.index[0], "test_sensitivity"] = float("nan")
    finding = only(classifier_findings(results, AXES), "equalize")
    metrics = [c.metric for c in finding.changes]
    assert "external_roc_auc" not in metrics
    assert change(finding, "test_sensitivity").n_pairs == 2
    lean = results[["kind", "cell", "equalize", "seed", "test_roc_auc"]]
    finding = only(classifier_findings(lean, AXES), "equalize")
    assert [c.metric for c in finding.changes] == ["test_roc_auc"]
    assert study_factors(lean, None) == {"classifier": ["equalize"], "generator": ["equalize"]}


# --- the joint patient bootstrap over the shared test images ---------------------------


def predictions_table(probability, covid, patients=None, threshold=0.5):
    n = len(covid)
    return pd.DataFrame(
        {
            "id": [f"img{i}" for i in range(n)],
            "patient_id": patients or [f"p{i}" for i in range(n)],
            "covid": covid,
            "probability": probability,
            "threshold": threshold,
        }
    )


def test_identical_models_differ_by_exactly_zero_in_every_resample():
    from cxrlab.study.findings import paired_test_bootstrap

    covid = [0, 1] * 10
    model = predictions_table([0.1 * (i % 10) for i in range(20)], covid)
    low, high = paired_test_bootstrap([(model, model.copy()), (model, model)], "test_roc_auc")
    assert low == 0.0 and high == 0.0


def test_a_perfect_model_against_a_chance_one_gets_an_interval_above_zero():
    import numpy as np

    from cxrlab.clf.metrics import binary_metrics
    from cxrlab.study.findings import paired_test_bootstrap

    rng = np.random.default_rng(0)
    covid = np.array([0, 1] * 30)
    perfect = predictions_table(covid * 0.8 + 0.1, covid)
    chance = predictions_table(rng.random(60), covid)
    low, high = paired_test_bootstrap([(perfect, chance)], "test_roc_auc")
    point = 1.0 - binary_metrics(covid, chance["probability"].to_numpy(), 0.5)["roc_auc"]
    assert 0 < low < point < high <= 1.0
    # rows are matched by id, not by position
    shuffled = chance.sample(frac=1.0, random_state=1)
    assert paired_test_bootstrap([(perfect, shuffled)], "test_roc_auc") == (low, high)


def test_a_difference_that_holds_over_seeds_but_not_over_test_patients_is_not_a_pro():
    # every seed's ROC-AUC is 0.05 higher with clahe: the interval over pairs is (0.05, 0.05)
    results = clf_rows(lambda equalize, augment, seed: 0.70 + (0.05 if equalize == "clahe" else 0))
    covid = [0, 1, 0, 1, 0, 1]
    weak = predictions_table([0.4, 0.6, 0.5, 0.45, 0.3, 0.7], covid)
    slightly_better = predictions_table([0.4, 0.6, 0.45, 0.5, 0.3, 0.7], covid)

    def loader(folder, seed, split):
        return slightly_better if "clahe" in folder else weak

    without = classifier_findings(results, AXES)[0]
    with_test = classifier_findings(results, AXES, predictions=loader)[0]
    auc = {c.metric: c for c in without.changes}["test_roc_auc"]
    auc_test = {c.metric: c for c in with_test.changes}["test_roc_auc"]
    assert auc.verdict == PRO and auc.test_low is None
    assert auc_test.test_low <= 0 < auc_test.test_high  # six test images decide little
    assert auc_test.verdict == UNCLEAR
    assert "over test patients" in describe_change(auc_test)
    # a missing predictions file leaves the change as it was
    assert classifier_findings(results, AXES, predictions=lambda *a: None)[0] == without


def test_with_leave_site_out_the_best_cell_is_chosen_out_of_site():
    # none validates best in-site; mild holds best on sites its folds never trained on
    results = clf_rows(
        lambda eq, aug, seed: 0.70 + 0.05 * (aug == "none"), augments=("none", "mild")
    )
    results["val_roc_auc"] = results["test_roc_auc"]
    results[OUT_OF_SITE_AUC] = 0.55 + 0.1 * (results["augment"] == "mild")
    assert selection_metric("split") == "val_roc_auc"
    assert selection_metric("leave-site-out") == OUT_OF_SITE_AUC
    in_site = best_classifier(results, AXES)
    out_of_site = best_classifier(results, AXES, selection_metric("leave-site-out"))
    assert in_site.factors["augment"] == "none" and out_of_site.factors["augment"] == "mild"
    assert out_of_site.chosen_by == OUT_OF_SITE_AUC
    assert out_of_site.chosen_value == pytest.approx(0.65)
    # and the out-of-site AUC is compared between levels, higher being better
    finding = only(classifier_findings(results, AXES), "augment")
    assert change(finding, OUT_OF_SITE_AUC).mean == pytest.approx(0.1)
    assert change(finding, OUT_OF_SITE_AUC).higher_is_better


def test_two_pairs_are_too_few_for_an_interval_or_a_verdict():
    # issue 24, item 9: a 2-pair t-interval (factor 12.7) was shown as a finding
    results = clf_rows(
        lambda eq, aug, seed: 0.7 + 0.05 * (eq == "clahe") + 0.01 * seed, seeds=(0, 1)
    )
    finding = only(classifier_findings(results, AXES), "equalize")
    auc = change(finding, "test_roc_auc")
    assert auc.n_pairs == 2 and auc.low is None and auc.high is None
    assert auc.verdict == UNCLEAR and auc.p_value is None  # not one of the report's tests
    assert "ROC-AUC +0.050 (2 pairs: too few pairs for an interval" in render_finding(finding)


def test_a_time_ratio_whose_interval_includes_one_is_no_con():
    # issue 24, item 9: x1.33 (95% CI x0.76 to x2.33) was listed as "costs more time"
    seconds = {("clahe", 0): 10.0, ("clahe", 1): 20.0, ("clahe", 2): 14.0}
    results = clf_rows(
        lambda eq, aug, seed: 0.7,
        seconds=lambda eq, aug, seed: seconds[(eq, seed)] if eq == "clahe" else 10.0,
    )
    finding = only(classifier_findings(results, AXES), "equalize")
    time = change(finding, "seconds")
    assert time.mean > 1.2 and time.low < 1 < time.high
    assert time.verdict == UNCLEAR
    assert "no clear difference in time" in render_finding(finding)
    assert not grouped_statements([finding])[("classifier", "equalize")]["Cons"]


def test_numbers_share_one_format():
    from cxrlab.study.numbers import duration_text, number_text

    assert [number_text(v) for v in (135.8, 81.4675, 92.9854, 4.257, 0.73412)] == [
        "136",
        "81.5",
        "93.0",
        "4.26",
        "0.734",
    ]
    assert number_text(100.0, count=True) == "100" and "e" not in number_text(1e2)
    assert number_text(0.00021) == "0.00021" and number_text(float("nan")) == "–"
    assert number_text(0.031, signed=True) == "+0.031"
    assert [duration_text(s) for s in (4.21, 45, 100, 3720)] == [
        "4.2 s",
        "45 s",
        "1 min 40 s",
        "1 h 02 min",
    ]
