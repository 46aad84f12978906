import re

import pytest
import torch
from PIL import Image

from cxrlab.data.packed import open_packed
from cxrlab.errors import CxrlabError
from cxrlab.gen.config import GenConfig
from cxrlab.gen.sample import sample_run
from cxrlab.gen.trainer import train_generator
from factory import make_packed


def config_for(tmp_path, name="dcgan", out="run", **overrides):
    values = dict(
        model=name, data=str(tmp_path / "P"), out=str(tmp_path / out), size_px=32, steps=6, batch_size=4,
        sample_interval=3, save_interval=3, log_interval=1, device="cpu",
    )  # fmt: skip
    values.update(overrides)
    return GenConfig(**values)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("dcgan", {"diffaug": "translation,cutout,brightness,contrast", "ema": 0.9}),
        ("wgan-gp", {"n_critic": 2}),
        ("wgan", {"n_critic": 2, "augment": "mild"}),
        ("cgan", {}),
        ("vae", {}),
    ],
)
def test_resume_equals_an_uninterrupted_run_bitwise(tmp_path, name, extra):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, name, "full", **extra), progress=False)
    train_generator(config_for(tmp_path, name, "cut", steps=3, **extra), progress=False)
    train_generator(config_for(tmp_path, name, "cut", **extra), resume=True, progress=False)
    full = torch.load(tmp_path / "full/checkpoints/step_000006.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut/checkpoints/step_000006.pt", weights_only=True)
    for part in ("generator", "discriminator", "ema"):
        for key, value in full.get(part, {}).items():
            assert torch.equal(value, cut[part][key]), f"{part}.{key} differs after resume"
    full_log = (tmp_path / "full/metrics.csv").read_text().splitlines()
    cut_log = (tmp_path / "cut/metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in full_log] == [
        r.split(",")[0] for r in cut_log
    ]  # no duplicated rows


def test_a_second_run_into_the_same_folder_needs_resume(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, steps=3), progress=False)
    with pytest.raises(CxrlabError, match="--resume"):
        train_generator(config_for(tmp_path, steps=3), progress=False)


def test_size_mismatch_names_the_fix(tmp_path):
    make_packed(tmp_path / "P")
    with pytest.raises(CxrlabError, match="--size 64"):
        train_generator(config_for(tmp_path, size_px=64), progress=False)


def test_label_selects_positive_images_only(tmp_path, monkeypatch):
    import cxrlab.gen.trainer as trainer

    make_packed(tmp_path / "P")
    real, labels = trainer.load_real_images(config_for(tmp_path, label="positive"))
    assert (labels == 1).all() and len(real) == 6  # 12 train rows, half positive


def test_sample_writes_pngs_and_a_synthetic_packed(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, label="positive", ema=0.5), progress=False)
    sample_run(tmp_path / "run", tmp_path / "pngs", n=7, device="cpu")
    files = sorted((tmp_path / "pngs").glob("*.png"))
    assert len(files) == 7 and Image.open(files[0]).size == (32, 32)
    sample_run(tmp_path / "run", tmp_path / "S", n=5, packed=True, device="cpu")
    synthetic = open_packed(tmp_path / "S")
    assert synthetic.images.shape == (5, 32, 32)
    assert (synthetic.manifest["synthetic"] == "1").all() and (
        synthetic.manifest["covid"] == 1
    ).all()
    assert set(synthetic.manifest["split"]) == {"train"}


def test_unlabelled_run_cannot_make_a_labelled_packed(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(config_for(tmp_path, steps=3), progress=False)
    with pytest.raises(CxrlabError, match="no label"):
        sample_run(tmp_path / "run", tmp_path / "S", n=2, packed=True, device="cpu")


def _ddp_run(fabric, tmp_path):
    from cxrlab.gen.trainer import GenTrainer

    trainer = GenTrainer(config_for(tmp_path, "gan", steps=3, devices=2), fabric, progress=False)
    trainer.train()
    weights = torch.cat([p.detach().flatten() for p in trainer.generator.parameters()])
    torch.save(weights, tmp_path / f"rank{fabric.global_rank}.pt")


@pytest.mark.slow
def test_two_process_ddp_replicas_hold_identical_weights(tmp_path):
    from lightning_fabric import Fabric

    make_packed(tmp_path / "P")
    Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn").launch(_ddp_run, tmp_path)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert torch.equal(rank0, rank1)
    initial = torch.cat([p.flatten() for p in _initial_generator().parameters()])
    assert not torch.equal(rank0, initial), "no training happened"


def _initial_generator():
    from cxrlab.gen.models import build_model

    torch.manual_seed(0)
    return build_model("gan", 32).generator


def test_metrics_are_logged_at_each_save_interval(tmp_path):
    import csv

    make_packed(tmp_path / "P")
    config = config_for(tmp_path, "gan", metrics=["swd", "diversity"], metrics_n=8, log_interval=3)
    from cxrlab.gen.run_metrics import RunMetrics

    result = train_generator(config, progress=False, metrics_fn=RunMetrics(config))
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    metric_rows = [r for r in rows if r["swd"]]
    assert [int(r["step"]) for r in metric_rows] == [3, 6]
    assert all(
        float(r["metrics_seconds"]) > 0 and float(r["ms_ssim_fake"]) > 0 for r in metric_rows
    )
    # the run's share of time on metrics: both evaluations, within the run's seconds
    assert result.metrics_seconds == pytest.approx(
        sum(float(r["metrics_seconds"]) for r in metric_rows)
    )
    assert 0 < result.metrics_share < 1
    assert result.seconds >= result.metrics_seconds


def test_ema_warms_up_then_follows_slowly():
    from cxrlab.gen.trainer import _EMA

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = _EMA(model, decay=0.999)
    model.weight.data.fill_(1.0)
    ema.update(model, step=0)  # decay (1 + 0) / 10 = 0.1: mostly the new weights
    assert ema.module.weight.item() == pytest.approx(0.9)
    for step in range(1, 5000):
        ema.update(model, step)
    assert ema.module.weight.item() == pytest.approx(1.0, abs=1e-3)


def test_gen_train_ends_with_the_share_of_time_its_metrics_took(tmp_path):
    from typer.testing import CliRunner

    from cxrlab.cli import app

    make_packed(tmp_path / "P")
    args = ["gen", "train", "--model", "gan", "--data", str(tmp_path / "P"), "--size", "32"]
    args += ["--out", str(tmp_path / "run"), "--steps", "4", "--batch-size", "4", "-q"]
    args += ["--save-interval", "2", "--metrics", "swd,diversity", "--metrics-n", "8"]
    result = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert re.search(r"step 4 in \d+ s \(metrics \d+ s, \d+% of it\)", result.output)


def test_bf16_on_the_cpu_trains_under_autocast_and_resume_keeps_the_precision(tmp_path):
    """`--precision bf16` runs the networks under bf16 autocast on the CPU (the generator's
    convolutions give bf16 there), still learns finite weights, and a resume in another
    precision is refused."""
    from cxrlab.gen.trainer import GenTrainer, _fabric

    make_packed(tmp_path / "P")
    config = config_for(tmp_path, "dcgan", precision="bf16")
    trainer = GenTrainer(config, _fabric(config), progress=False)
    with trainer.fabric.autocast():
        out = trainer.g_model(torch.randn(2, config.latent_dim))
    assert out.dtype == torch.float32  # Fabric hands back float32 outputs
    seen = {}
    conv = next(m for m in trainer.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d))

    def record(module, args, output):
        seen["dtype"] = output.dtype

    conv.register_forward_hook(record)
    train_generator(config, progress=False)
    trained = torch.load(tmp_path / "run/checkpoints/step_000006.pt", weights_only=True)
    assert all(
        torch.isfinite(v).all() for v in trained["generator"].values() if v.is_floating_point()
    )
    trainer.train_step()
    assert seen["dtype"] == torch.bfloat16
    with pytest.raises(CxrlabError, match="precision"):
        train_generator(
            config_for(tmp_path, "dcgan", precision="32", steps=9), resume=True, progress=False
        )
    with pytest.raises(CxrlabError, match="--precision 'fp8'"):
        config_for(tmp_path, precision="fp8")
