"""The bundled generators study (every family, selected on held-out SWD), run small."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from test_runner import write_spec

from cxrlab.gen.models import model_names
from cxrlab.study.bundled import bundled_specs
from cxrlab.study.runner import run_study
from cxrlab.study.spec import load_spec

#: Tiny diffusion networks (see tests/gen/test_diffusion.py).
TINY_DIFFUSION = {"width": 8, "res_blocks": 1, "diffusion_steps": 20, "sample_steps": 5}


def test_the_generators_study_names_every_family(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRLAB_DATA", str(tmp_path))
    spec = load_spec(bundled_specs()["generators"])
    assert sorted({g.settings["model"] for g in spec.generators}) == model_names()
    assert spec.select_by == "swd" and spec.synthetic_amounts == [0, 312]
    assert spec.synthetic_from == "best" and spec.synthetic_label == "positive"
    assert spec.preprocess_axes["size"] == [64]


@pytest.mark.slow
def test_a_tiny_generators_study_selects_the_lowest_held_out_swd(tmp_path):
    raw = yaml.safe_load(bundled_specs()["generators"].read_text())
    raw["data"] = {"sources": [{"format": "sample"}], "split": raw["data"]["split"]}
    raw["preprocess"]["size"] = 32
    generators = raw["generators"]
    generators.update(steps=4, batch_size=8, sample_interval=2, save_interval=2,
                      metrics=["swd"], metrics_n=16)  # fmt: skip
    for index, run in enumerate(generators["runs"]):
        run = {"name": run, "model": run} if isinstance(run, str) else run
        run.pop("steps", None)  # every run at the tiny budget
        if run["model"] in ("ddpm", "ldm"):
            run.update(TINY_DIFFUSION, autoencoder_steps=2)
        generators["runs"][index] = run
    raw["synthetic"]["amounts"] = [0, 8]
    raw["classifier"].update(epochs=1, batch_size=16, seeds=[0], bootstrap=20, explain=0)
    spec = write_spec(tmp_path, raw)
    run_study(spec, tmp_path / "out", device="cpu", progress=False, log=lambda line: None)

    results = pd.read_csv(tmp_path / "out" / "results.csv")
    generators = results[results["kind"] == "generator"]
    assert len(generators) == 8 and generators["swd"].notna().all()
    best = generators.loc[generators["swd"].idxmin(), "cell"]
    assert list(generators.loc[generators["selected"] == 1, "cell"]) == [best]
    classifiers = results[results["kind"] == "classifier"]
    # real only, + 8 synthetic images, and the control arm: 8 real positives oversampled
    assert set(classifiers["synthetic"].astype(str)) == {"0", "8", "8 oversampled"}
    drawn = classifiers["synthetic"].astype(str) == "8"
    assert set(classifiers.loc[drawn, "synthetic_from"]) == {best}
    study = json.loads((tmp_path / "out" / "study.json").read_text())
    assert study["selected_generators"] == {"32px-none": best}
