"""Generators whose numbers can be believed: labels, resume guard, divergence, held-out metrics."""

import csv

import numpy as np
import pytest
import torch
from test_training import config_for
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data.packed import open_packed
from cxrlab.errors import CxrlabError
from cxrlab.gen.sample import sample_run
from cxrlab.gen.sampling import sampling_label
from cxrlab.gen.trainer import train_generator
from factory import make_packed

runner = CliRunner()


def _cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _one_line_error(code: int, output: str, *words: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    for word in words:
        assert word in output, (word, output)


# ------------------------------------------------------------------ labels of synthetic images
def test_sampling_label_rules():
    assert sampling_label(False, "positive", None) == "positive"
    assert sampling_label(False, "positive", "positive") == "positive"
    assert sampling_label(False, None, None) is None
    assert sampling_label(True, None, "negative") == "negative"
    with pytest.raises(CxrlabError, match="trained on positive images"):
        sampling_label(False, "positive", "negative")
    with pytest.raises(CxrlabError, match="must be positive or negative"):
        sampling_label(False, "positive", "covid")
    with pytest.raises(CxrlabError, match="conditional"):
        sampling_label(True, None, None)
    with pytest.raises(CxrlabError, match="trained on negative images only"):
        sampling_label(True, "negative", "positive")


def test_gen_sample_refuses_a_label_the_run_was_not_trained_for(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, label="positive", steps=3), progress=False)
    for label, words in (("negative", "trained on positive"), ("covid", "positive or negative")):
        code, output = _cli("gen", "sample", tmp_path / "run", "--n", 2, "--packed", "--label",
                            label, "--device", "cpu", "--out", tmp_path / f"S-{label}")  # fmt: skip
        _one_line_error(code, output, words)
        assert not (tmp_path / f"S-{label}").exists()


def test_negative_run_writes_its_pngs_where_classifiers_read_them_as_negative(tmp_path):
    from cxrlab.clf.data import training_set

    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, label="negative", steps=3, split="train"), progress=False)
    sample_run(tmp_path / "run", tmp_path / "pngs", n=3, device="cpu")
    assert len(list((tmp_path / "pngs" / "negative").glob("*.png"))) == 3
    images = training_set(open_packed(tmp_path / "P"), synthetic=str(tmp_path / "pngs"), seed=0)
    assert (images.labels[images.origins == "synthetic"] == 0).all()


def test_gen_sample_says_which_class_it_wrote_and_where(tmp_path):
    make_packed(tmp_path / "P")
    for label, where, what in (
        ("positive", "S-positive", "COVID-positive"),
        ("negative", "S-negative/negative", "negative"),
        (None, "S-None/unlabelled", "unlabelled"),
    ):
        extra = {} if label is None else {"label": label}
        train_generator(config_for(tmp_path, out=f"run-{label}", steps=2, **extra), progress=False)
        code, output = _cli("gen", "sample", tmp_path / f"run-{label}", "--n", 2, "-q",
                            "--device", "cpu", "--out", tmp_path / f"S-{label}")  # fmt: skip
        assert code == 0, output
        assert f"wrote 2 {what} synthetic images to {tmp_path / where}" in output
        assert ("--label positive" in output) == (label is None), output


def test_images_of_a_generator_that_learned_held_out_rows_never_train_a_classifier(tmp_path):
    from cxrlab.clf.data import training_set
    from cxrlab.errors import DatasetError

    make_packed(tmp_path / "P")  # rows 0..11 train, 12..15 val
    for split in ("train", "train,val"):
        out = f"run-{split}"
        train_generator(
            config_for(tmp_path, out=out, label="positive", steps=2, split=split), progress=False
        )
        sample_run(tmp_path / out, tmp_path / f"S-{split}", n=2, packed=True, device="cpu")
    assert len(training_set(tmp_path / "P", synthetic=tmp_path / "S-train")) > 2
    with pytest.raises(DatasetError, match="learned 2 image.* outside its train split.*by id"):
        training_set(tmp_path / "P", synthetic=tmp_path / "S-train,val")
    code, output = _cli("gen", "train", "--model", "dcgan", "--data", tmp_path / "P", "--size", 32,
                        "--steps", 1, "--split", "train,val", "--out", tmp_path / "G", "-q",
                        "--device", "cpu", "--no-metrics")  # fmt: skip
    assert code == 0 and "warning: --split train,val" in output, output


def _resplit(packed, out, splits):
    """A copy of ``packed`` under another name, its rows split as ``splits`` says (same ids)."""
    import shutil

    from cxrlab.data.manifest import dataframe_to_csv_text

    shutil.copytree(packed, out)
    manifest = open_packed(out).manifest
    manifest["split"] = splits
    (out / "manifest.csv").write_text(dataframe_to_csv_text(manifest))
    return out


def test_every_gen_sample_output_says_what_its_generator_learned(tmp_path):
    """PNG folders too: a folder of images is refused as a PACKED is."""
    from cxrlab.clf.data import training_set
    from cxrlab.data.provenance import read_provenance
    from cxrlab.errors import DatasetError

    make_packed(tmp_path / "P")  # rows 0..11 train, 12..15 val
    train_generator(config_for(tmp_path, label="positive", steps=2, split="train,val"), progress=False)  # fmt: skip
    sample_run(tmp_path / "run", tmp_path / "pngs", n=2, device="cpu")
    record = read_provenance(tmp_path / "pngs")
    learned = record["learned"]
    assert learned["ids"] == [f"t:{i}" for i in range(1, 16, 2)]  # the positives, val ones too
    assert len(learned["pixel_phash"]) == 8 and learned["split"] == "train,val"
    assert record["run"]["path"] == str((tmp_path / "run").resolve())
    with pytest.raises(DatasetError, match="t:13 of the val split.*by id"):
        training_set(tmp_path / "P", synthetic=tmp_path / "pngs")
    # a new draw replaces the folder, provenance and all (it is still an image folder)
    sample_run(tmp_path / "run", tmp_path / "pngs", n=3, seed=1, device="cpu")
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 3
    assert read_provenance(tmp_path / "pngs")["run"]["seed"] == 1


def test_a_generator_of_a_differently_split_copy_is_caught_by_content(tmp_path):
    from cxrlab.clf.data import training_set
    from cxrlab.errors import DatasetError

    make_packed(tmp_path / "P")  # rows 0..11 train, 12..15 val
    # the same images split otherwise: the classifier's val rows 12..15 are train there
    _resplit(tmp_path / "P", tmp_path / "C", ["val"] * 4 + ["train"] * 12)
    train_generator(config_for(tmp_path, data=str(tmp_path / "C"), label="positive", steps=2,
                               split="train"), progress=False)  # fmt: skip
    sample_run(tmp_path / "run", tmp_path / "S", n=2, packed=True, device="cpu")
    with pytest.raises(DatasetError, match="found by content in another dataset.*val split"):
        training_set(tmp_path / "P", synthetic=tmp_path / "S")


def test_a_synthetic_packed_without_a_recorded_split_is_unverified_not_train(tmp_path):
    """What older cxrlab wrote: meta.json names the run but not what it learned."""
    from cxrlab.clf.data import training_set
    from cxrlab.errors import DatasetError

    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, label="positive", steps=2, split="train"), progress=False)
    sample_run(tmp_path / "run", tmp_path / "S", n=2, packed=True, device="cpu")
    (tmp_path / "S" / "provenance.json").unlink()
    with pytest.raises(DatasetError, match="no provenance.json"):
        training_set(tmp_path / "P", synthetic=tmp_path / "S")
    notes = training_set(tmp_path / "P", synthetic=tmp_path / "S", synthetic_unverified=True).notes
    assert any("unverified" in note for note in notes)


def test_a_generator_of_another_dataset_holding_held_out_images_is_caught(tmp_path):
    """The bundled sample's case: another dataset (other ids, other manifest) whose
    images are, by their source files' perceptual hashes, held-out images here."""
    from cxrlab.clf.data import training_set
    from cxrlab.data.manifest import dataframe_to_csv_text
    from cxrlab.errors import DatasetError

    make_packed(tmp_path / "P")
    make_packed(tmp_path / "O")
    # other pixels (another size, another preprocessing): only the source files' hashes tell
    noise = np.random.default_rng(7).integers(0, 256, (16, 32, 32), dtype=np.uint8)
    np.save(tmp_path / "O" / "images.npy", noise)
    hashes = [f"{(0x9C3F << 48) + i * 0x1111111:016x}" for i in range(16)]
    for name, ids in (("P", range(16)), ("O", [13] + list(range(1, 16)))):
        manifest = open_packed(tmp_path / name).manifest
        manifest["phash"] = [hashes[i] for i in ids]
        manifest["id"] = [f"{name}:{i}" for i in range(16)]
        (tmp_path / name / "manifest.csv").write_text(dataframe_to_csv_text(manifest))
    # O's train row 0 is the file of P's val row 13 (same source hash)
    train_generator(config_for(tmp_path, data=str(tmp_path / "O"), label="negative", steps=2,
                               split="train"), progress=False)  # fmt: skip
    sample_run(tmp_path / "run", tmp_path / "S", n=2, device="cpu")
    with pytest.raises(DatasetError, match="by content.*P:13 of the val split.*0 of 64 bits"):
        training_set(tmp_path / "P", synthetic=tmp_path / "S")


def test_conditional_sample_draws_the_asked_class(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, "cgan", steps=3), progress=False)
    sample_run(tmp_path / "run", tmp_path / "S", n=3, packed=True, label="negative", device="cpu")
    assert (open_packed(tmp_path / "S").manifest["covid"] == 0).all()
    code, output = _cli("gen", "sample", tmp_path / "run", "--n", 2, "--device", "cpu",
                        "--out", tmp_path / "S2")  # fmt: skip
    _one_line_error(code, output, "conditional", "--label")


# ------------------------------------------------------------------ nothing destroyed, no tracebacks
def test_gen_sample_never_replaces_a_real_packed_and_needs_one_image(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, label="positive", steps=3), progress=False)
    before = (tmp_path / "P" / "images.npy").read_bytes()
    code, output = _cli("gen", "sample", tmp_path / "run", "--n", 4, "--packed", "--device", "cpu",
                        "--out", tmp_path / "P")  # fmt: skip
    _one_line_error(code, output, "packed dataset made with other settings", "--force")
    assert (tmp_path / "P" / "images.npy").read_bytes() == before
    code, output = _cli("gen", "sample", tmp_path / "run", "--n", 0, "--out", tmp_path / "S")
    _one_line_error(code, output, "--n must be at least 1")
    code, output = _cli("gen", "sample", tmp_path / "run", "--n", 2, "--out", tmp_path / "run")
    _one_line_error(code, output, "is the input")


def test_resume_refuses_changed_settings_naming_them_but_allows_more_steps(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, steps=3), progress=False)
    with pytest.raises(CxrlabError, match="lr_g"):
        train_generator(config_for(tmp_path, steps=6, lr_g=1e-3), resume=True, progress=False)
    assert "lr_g: null" in (tmp_path / "run" / "config.yaml").read_text()  # not overwritten
    result = train_generator(config_for(tmp_path, steps=6), resume=True, progress=False)
    assert result.step == 6


def test_resume_with_another_family_is_a_clear_cli_error(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, "dcgan", steps=3), progress=False)
    code, output = _cli("gen", "train", "--model", "vae", "--data", tmp_path / "P", "--out",
                        tmp_path / "run", "--size", 32, "--steps", 6, "--device", "cpu",
                        "--resume", "-q")  # fmt: skip
    _one_line_error(code, output, "model ('dcgan' -> 'vae')")


def test_gen_train_out_may_not_be_its_data(tmp_path):
    make_packed(tmp_path / "P")
    code, output = _cli("gen", "train", "--model", "gan", "--data", tmp_path / "P", "--out",
                        tmp_path / "P", "--size", 32, "--steps", 1, "--device", "cpu")  # fmt: skip
    _one_line_error(code, output, "is the input")


# ------------------------------------------------------------------ divergence
def test_a_diverging_run_stops_naming_the_step_and_keeps_its_last_good_checkpoint(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, "gan", steps=3, save_interval=3), progress=False)
    config = config_for(tmp_path, "gan", steps=6, save_interval=3, log_interval=1)
    with pytest.raises(CxrlabError, match=r"diverged at step 4.*step_000003\.pt"):
        train_generator(_poisoned(config), resume=True, progress=False)
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert saved == ["step_000003.pt"]


def _poisoned(config):
    """The same run, whose generator weights turn NaN once resumed (a diverged state)."""
    import cxrlab.gen.trainer as trainer

    original = trainer.GenTrainer.load_state

    def load_state(self, state):
        original(self, state)
        with torch.no_grad():
            for parameter in self.generator.parameters():
                parameter.fill_(float("nan"))

    trainer.GenTrainer.load_state = load_state
    return config


@pytest.fixture(autouse=True)
def _restore_load_state():
    import cxrlab.gen.trainer as trainer

    original = trainer.GenTrainer.load_state
    yield
    trainer.GenTrainer.load_state = original


def test_sampling_refuses_a_generator_with_non_finite_weights(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, label="positive", steps=3), progress=False)
    path = tmp_path / "run" / "checkpoints" / "step_000003.pt"
    state = torch.load(path, weights_only=True)
    first = next(iter(state["generator"]))
    state["generator"][first] = torch.full_like(state["generator"][first], float("nan"))
    torch.save(state, path)
    with pytest.raises(CxrlabError, match="non-finite weights"):
        sample_run(tmp_path / "run", tmp_path / "S", n=2, ema=False, device="cpu")


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, steps=6), progress=False)
    (tmp_path / "run" / "checkpoints" / "step_000006.pt").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="falling back"):
        result = train_generator(config_for(tmp_path, steps=6), resume=True, progress=False)
    assert result.step == 6  # steps 4-6 trained again from step 3


# ------------------------------------------------------------------ metrics on held-out images
def test_a_run_killed_after_its_last_checkpoint_computes_its_last_metrics_on_resume(tmp_path):
    from cxrlab.gen.run_metrics import RunMetrics

    make_packed(tmp_path / "P")
    config = config_for(tmp_path, "gan", metrics=["swd"], metrics_n=8, log_interval=3)
    calls = []

    class KilledAtTheLastMetrics(RunMetrics):
        def __call__(self, generator, step):
            if step == 6:
                raise KeyboardInterrupt  # the machine died right after the checkpoint
            calls.append(step)
            return super().__call__(generator, step)

    with pytest.raises(KeyboardInterrupt):
        train_generator(config, progress=False, metrics_fn=KilledAtTheLastMetrics(config))
    assert (tmp_path / "run" / "checkpoints" / "step_000006.pt").is_file()
    train_generator(config, resume=True, progress=False, metrics_fn=RunMetrics(config))
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows if r["swd"]] == [3, 6]


def test_metrics_compare_with_held_out_validation_images_of_the_drawn_class(tmp_path):
    from cxrlab.gen.run_metrics import RunMetrics

    make_packed(tmp_path / "P")
    metrics = RunMetrics(config_for(tmp_path, "cgan", metrics=["swd", "memorization"]))
    assert metrics.covid == 1  # a two-class conditional run is measured on positives
    assert metrics.reference.split == "val" and metrics.reference.covid == 1
    assert metrics.train.split == ("train",) and metrics.train.covid == 1
    # a generator that returns the training images exactly is flagged as copying them
    packed = open_packed(tmp_path / "P")
    rows = packed.select("train", 1)
    copies = torch.from_numpy(np.asarray(packed.images[rows], dtype=np.float32) / 127.5 - 1)

    class Copier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, z, labels=None):
            return copies[torch.arange(len(z)) % len(copies)][:, None] + 0 * self.anchor

    metrics.config.metrics_n = len(rows)
    values = metrics(Copier(), step=1)
    assert values["memorization_share"] == 1.0


def test_metrics_need_a_validation_split_not_trained_on(tmp_path):
    from cxrlab.gen.run_metrics import RunMetrics

    make_packed(tmp_path / "P")
    with pytest.raises(CxrlabError, match="held-out val"):
        RunMetrics(config_for(tmp_path, metrics=["swd"], split="train,val"))


def test_wgan_gp_trains_under_fabric_mixed_precision(tmp_path):
    """The gradient penalty's autograd.grad goes through the unwrapped critic: Fabric's
    bf16 wrapper refuses it otherwise (found by `make gpu-check` on an H200)."""
    from lightning_fabric import Fabric

    from cxrlab.gen.trainer import GenTrainer

    make_packed(tmp_path / "P")
    fabric = Fabric(accelerator="cpu", devices=1, precision="bf16-mixed")
    trainer = GenTrainer(config_for(tmp_path, "wgan-gp", n_critic=1), fabric, progress=False)
    losses = trainer.train_step()
    assert torch.isfinite(losses["gp"]) and float(losses["gp"]) > 0


def test_gen_train_option_defaults_are_the_configs():
    """The CLI states no default of its own: each comes from GenConfig."""
    import inspect

    from cxrlab.gen.cli import train
    from cxrlab.gen.config import GenConfig
    from cxrlab.utils.config import config_defaults

    defaults = config_defaults(GenConfig)
    aliases = {"size": "size_px"}
    checked = 0
    for name, parameter in inspect.signature(train).parameters.items():
        field = aliases.get(name, name)
        if field in defaults and name not in ("metrics", "resume"):
            assert parameter.default == defaults[field], name
            checked += 1
    assert checked >= 30
