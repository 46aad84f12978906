"""A study's synthetic images carry provenance; a generator of the nearest power-of-two
size feeds a classifier of another size only with the resize said in words."""

import json

from test_runner import TINY, write_spec

from cxrlab.study.report import render_report
from cxrlab.study.runner import run_study


def test_a_48_px_study_trains_on_64_px_synthetic_images_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRLAB_CACHE_DIR", str(tmp_path / "cache"))
    spec = {
        **TINY,
        "preprocess": {"size": 48},
        "generators": {**TINY["generators"], "steps": 2},
        "classifier": {**TINY["classifier"], "epochs": 1, "seeds": [0], "explain": 0},
    }
    out = tmp_path / "out"
    run_study(write_spec(tmp_path, spec), out, device="cpu", progress=False, log=lambda _: None)
    cell = "clf/48px-none/simple-cnn-syn_8"
    provenance = json.loads((out / "synthetic/48px-none/n8/packed/provenance.json").read_text())
    assert provenance["learned"]["options"]["size_px"] == 64  # the generator's own PACKED
    caveats = json.loads((out / "study.json").read_text())["synthetic_caveats"]
    assert list(caveats) == [cell] and "size (px) 64 vs 48" in caveats[cell][0]
    html = render_report(out)
    assert "1 classifier cell(s) trained on synthetic images from data preprocessed" in html
    assert "its images were resized" in html and "unverified" not in html


def test_the_report_says_which_cells_took_synthetic_images_unverified(tmp_path):
    from study_factory import BEST_CELL, make_study

    root = make_study(tmp_path / "study")
    status = json.loads((root / "study.json").read_text())
    status["synthetic_caveats"] = {
        BEST_CELL: [
            "synthetic images unverified (--synthetic-unverified): S has no provenance, so "
            "whether its generator learned validation or test images is not known"
        ]
    }
    (root / "study.json").write_text(json.dumps(status))
    html = render_report(root)
    assert "1 classifier cell(s) trained on synthetic images taken unverified" in html
    assert f"is not known: {BEST_CELL}" in html
