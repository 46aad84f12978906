"""Diffusion families (ddpm, ldm) as members of the one training loop and sampler."""

import csv

import numpy as np
import pytest
import torch
from test_gen_trust import _cli, _one_line_error
from test_training import config_for

from cxrlab.data.packed import open_packed
from cxrlab.errors import CxrlabError
from cxrlab.gen.config import GenConfig
from cxrlab.gen.sample import generate_uint8, load_generator, sample_run
from cxrlab.gen.sampling import SamplingOptions
from cxrlab.gen.trainer import build_recipe, train_generator
from factory import make_packed

#: Tiny networks: 8 channels at full resolution, one residual block, 20 noise levels.
TINY = {"width": 8, "res_blocks": 1, "diffusion_steps": 20, "sample_steps": 5}


def tiny(tmp_path, name="ddpm", out="run", **overrides):
    return config_for(tmp_path, name, out, **{**TINY, **overrides})


def _equal_states(full: dict, cut: dict, where: str = "") -> None:
    for key, value in full.items():
        if isinstance(value, dict):
            _equal_states(value, cut[key], f"{where}{key}.")
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, cut[key]), f"{where}{key} differs after resume"


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("ddpm", {"ema": 0.9}),  # conditional: both classes, label dropout
        ("ddpm", {"label": "positive", "prediction": "epsilon", "schedule": "scaled_linear"}),
        ("ldm", {"ema": 0.9, "autoencoder_steps": 4}),  # the cut falls in the autoencoder phase
    ],
)
def test_diffusion_resume_equals_an_uninterrupted_run_bitwise(tmp_path, name, extra):
    make_packed(tmp_path / "P")
    train_generator(tiny(tmp_path, name, "full", **extra), progress=False)
    train_generator(tiny(tmp_path, name, "cut", steps=3, **extra), progress=False)
    train_generator(tiny(tmp_path, name, "cut", **extra), resume=True, progress=False)
    full = torch.load(tmp_path / "full/checkpoints/step_000006.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut/checkpoints/step_000006.pt", weights_only=True)
    parts = ("generator", "ema", "g_optimizer", "extra_modules", "extra_optimizers")
    for part in parts:
        if part in full:
            _equal_states(full[part], cut[part], f"{part}.")
    if name == "ldm":
        assert set(full["extra_modules"]) == {"autoencoder", "discriminator"}
        assert float(full["generator"]["latent_scale"]) > 0  # estimated once, recorded
        assert float(full["ema"]["latent_scale"]) == float(full["generator"]["latent_scale"])
    initial = build_recipe(tiny(tmp_path, name, "x", **extra)).generator.state_dict()
    moved = [k for k, v in initial.items() if not torch.equal(v, full["generator"][k])]
    assert moved, "no training happened"


def test_ldm_trains_the_autoencoder_first_then_the_denoiser_on_its_frozen_copy(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(tiny(tmp_path, "ldm", autoencoder_steps=3), progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [bool(r["ae_reconstruction"]) for r in rows] == [True] * 3 + [False] * 3
    assert [bool(r["loss"]) for r in rows] == [False] * 3 + [True] * 3
    state = torch.load(tmp_path / "run/checkpoints/step_000006.pt", weights_only=True)
    trained = state["extra_modules"]["autoencoder"]
    for key, value in trained.items():  # the decoder used for sampling is the trained one
        assert torch.equal(state["generator"][f"autoencoder.{key}"], value), key


def test_ldm_ema_starts_with_the_denoiser_not_with_the_autoencoder(tmp_path):
    """The denoiser's EMA ramps up from its own first step: counted from step 0, the
    ramp would be nearly done when the denoiser starts and the average would keep
    most of the untrained network (0.999 ** 1,447 = 24% after 849 autoencoder steps)."""
    make_packed(tmp_path / "P")
    config = tiny(tmp_path, "ldm", ema=0.999, autoencoder_steps=3, steps=6, save_interval=1)
    train_generator(config, progress=False)
    states = [
        torch.load(tmp_path / f"run/checkpoints/step_{step:06d}.pt", weights_only=True)
        for step in range(3, 7)
    ]
    unet = [k for k, v in states[0]["generator"].items() if k.startswith("unet.")]
    average = {k: states[0]["generator"][k].clone() for k in unet}
    for key in unet:  # no average moves before the denoiser trains
        assert torch.equal(states[0]["ema"][key], average[key]), key
    for k, state in enumerate(states[1:], start=1):  # the ramp's decay (1 + k) / (10 + k)
        for key in unet:
            average[key] += (1 - (1 + k) / (10 + k)) * (state["generator"][key] - average[key])
    moved = 0
    for key in unet:
        torch.testing.assert_close(states[-1]["ema"][key], average[key], rtol=1e-5, atol=1e-7)
        moved += not torch.equal(average[key], states[0]["generator"][key])
    assert moved > 10


def test_grids_metrics_and_gen_sample_of_a_conditional_run(tmp_path):
    make_packed(tmp_path / "P")
    config = tiny(tmp_path, metrics=["swd", "diversity"], metrics_n=8, log_interval=3)
    from cxrlab.gen.run_metrics import RunMetrics

    train_generator(config, progress=False, metrics_fn=RunMetrics(config))
    assert sorted(p.name for p in (tmp_path / "run/samples").glob("*.png")) == [
        "step_000003.png",
        "step_000006.png",
    ]
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows if r["swd"]] == [3, 6]
    # one conditional run draws either class, guided, through the CLI
    for label, covid in (("positive", 1), ("negative", 0)):
        code, output = _cli("gen", "sample", tmp_path / "run", "--n", 3, "--packed", "--label",
                            label, "--guidance", 2.0, "--sampler", "ddpm", "--sample-steps", 4,
                            "--device", "cpu", "--out", tmp_path / f"S-{label}")  # fmt: skip
        assert code == 0, output
        synthetic = open_packed(tmp_path / f"S-{label}")
        assert (
            synthetic.images.shape == (3, 32, 32) and (synthetic.manifest["covid"] == covid).all()
        )
    code, output = _cli("gen", "sample", tmp_path / "run", "--n", 2, "--device", "cpu",
                        "--out", tmp_path / "S-none")  # fmt: skip
    _one_line_error(code, output, "conditional", "--label")


def test_sampling_is_deterministic_for_a_seed_with_either_sampler(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(tiny(tmp_path, steps=3), progress=False)
    loaded = load_generator(tmp_path / "run", device="cpu")
    for sampler in ("ddim", "ddpm"):
        options = SamplingOptions(sampler=sampler, steps=4, guidance=1.0)
        first = generate_uint8(loaded, 4, label="positive", seed=3, options=options)
        again = generate_uint8(loaded, 4, label="positive", seed=3, options=options)
        other = generate_uint8(loaded, 4, label="positive", seed=4, options=options)
        assert np.array_equal(first, again) and not np.array_equal(first, other), sampler
    # the full DDPM chain (MONAI's DDPMScheduler) too
    full = SamplingOptions(sampler="ddpm", steps=TINY["diffusion_steps"])
    assert np.array_equal(
        generate_uint8(loaded, 2, label="negative", seed=1, options=full),
        generate_uint8(loaded, 2, label="negative", seed=1, options=full),
    )


def test_the_sampling_bar_moves_at_each_denoising_step_and_changes_no_image(tmp_path, monkeypatch):
    import cxrlab.gen.sampling as sampling

    make_packed(tmp_path / "P")
    train_generator(tiny(tmp_path, steps=2), progress=False)
    loaded = load_generator(tmp_path / "run", device="cpu")
    options = SamplingOptions(sampler="ddim", steps=4)
    draw = dict(label="positive", seed=0, options=options, batch_size=3)
    quiet = generate_uint8(loaded, 5, **draw)
    moves = []

    class Recorder(sampling.tqdm):
        def update(self, n=1):
            if not self.disable:
                moves.append(n)
            return super().update(n)

    monkeypatch.setattr(sampling, "tqdm", Recorder)
    shown = generate_uint8(loaded, 5, progress=True, **draw)
    assert np.array_equal(quiet, shown)
    assert len(moves) == 2 * 4  # two batches (3 + 2 images), four steps each
    assert sum(moves) == pytest.approx(5)


def test_an_unconditional_run_draws_its_class_and_refuses_guidance(tmp_path):
    make_packed(tmp_path / "P")
    train_generator(tiny(tmp_path, "ldm", label="negative", autoencoder_steps=2), progress=False)
    loaded = load_generator(tmp_path / "run", device="cpu")
    assert not loaded.conditional
    sample_run(tmp_path / "run", tmp_path / "pngs", n=2, device="cpu")
    assert len(list((tmp_path / "pngs" / "negative").glob("*.png"))) == 2
    code, output = _cli("gen", "sample", tmp_path / "run", "--n", 2, "--guidance", 1.0,
                        "--device", "cpu", "--out", tmp_path / "S")  # fmt: skip
    _one_line_error(code, output, "--guidance", "without --label")
    code, output = _cli("gen", "sample", tmp_path / "run", "--n", 2, "--sampler", "euler",
                        "--device", "cpu", "--out", tmp_path / "S")  # fmt: skip
    _one_line_error(code, output, "--sampler must be ddim or ddpm")
    code, output = _cli("gen", "sample", tmp_path / "run", "--n", 2, "--sample-steps", 21,
                        "--device", "cpu", "--out", tmp_path / "S")  # fmt: skip
    _one_line_error(code, output, "--sample-steps", "20")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"prediction": "x0"}, "--prediction must be epsilon or v"),
        ({"schedule": "linear"}, "--schedule must be cosine or scaled_linear"),
        ({"sampler": "euler"}, "--sampler must be ddim or ddpm"),
        ({"sample_steps": 30, "diffusion_steps": 20}, "--sample-steps 30 exceeds"),
        ({"guidance": 1.0, "label": "positive"}, "cannot be guided"),
        ({"diffaug": "translation"}, "--diffaug applies to the GAN"),
        ({"n_critic": 2}, "--n-critic applies to the GAN"),
        ({"width": 12}, "--width must be a multiple of 8"),
    ],
)
def test_invalid_diffusion_settings_name_the_option(overrides, words):
    with pytest.raises(CxrlabError, match=words):
        GenConfig(model="ddpm", data="P", out="run", **overrides)


def test_gen_train_help_shows_the_diffusion_options():
    code, output = _cli("gen", "train", "--help")
    assert code == 0
    for option in ("--prediction", "--schedule", "--autoencoder-steps", "--sampler",
                   "--sample-steps", "--guidance", "ddpm", "ldm"):  # fmt: skip
        assert option in output, option


def _two_shades(path, dark=-0.6, bright=0.6):
    """A PACKED of flat images: negatives all ``dark``, positives all ``bright`` (in [-1, 1])."""
    make_packed(path)
    packed = open_packed(path)
    covid = packed.manifest["covid"].astype(int).to_numpy()
    shade = np.where(covid == 1, bright, dark)
    images = np.round((shade[:, None, None] + 1) * 127.5) * np.ones((1, 32, 32))
    np.save(path / "images.npy", images.astype(np.uint8))


def test_samples_come_from_the_trained_network_class_by_class(tmp_path):
    """A tiny conditional model overfit to two flat shades reproduces each class's
    brightness: a sampler that ignored the network (or the class) could not."""
    _two_shades(tmp_path / "P")
    config = tiny(tmp_path, steps=400, batch_size=8, lr_g=2e-3, save_interval=400,
                  sample_interval=400, log_interval=50, sample_steps=10)  # fmt: skip
    train_generator(config, progress=False)
    loaded = load_generator(tmp_path / "run", ema=False, device="cpu")
    means = {
        label: generate_uint8(loaded, 8, label=label, seed=0).astype(float).mean() / 127.5 - 1
        for label in ("negative", "positive")
    }
    assert means["negative"] == pytest.approx(-0.6, abs=0.2), means
    assert means["positive"] == pytest.approx(0.6, abs=0.2), means


def _ddp_ldm(fabric, tmp_path):
    from cxrlab.gen.trainer import GenTrainer

    config = tiny(tmp_path, "ldm", steps=4, autoencoder_steps=2, devices=2)
    trainer = GenTrainer(config, fabric, progress=False)
    trainer.train()
    modules = {"generator": trainer.generator, **trainer.recipe.extra_modules}
    weights = {
        name: torch.cat([p.detach().flatten() for p in m.parameters()])
        for name, m in modules.items()
    }
    torch.save(weights, tmp_path / f"rank{fabric.global_rank}.pt")


@pytest.mark.slow
def test_two_process_ddp_ldm_replicas_hold_identical_weights(tmp_path):
    from lightning_fabric import Fabric

    make_packed(tmp_path / "P")
    Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn").launch(_ddp_ldm, tmp_path)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert set(rank0) == {"generator", "autoencoder", "discriminator"}
    for name, weights in rank0.items():
        assert torch.equal(weights, rank1[name]), f"{name} differs between replicas"


@pytest.mark.parametrize("name", ["ddpm", "ldm"])
@pytest.mark.parametrize("size_px", [32, 64, 128, 256])
def test_every_size_denoises_and_decodes_to_the_right_shapes(name, size_px):
    from cxrlab.gen.models import DiffusionOptions, ModelOptions, build_model

    options = ModelOptions(diffusion=DiffusionOptions(width=8, res_blocks=1, timesteps=10))
    model = build_model(name, size_px, options).generator.eval()
    side = size_px // 4 if name == "ldm" else size_px
    noisy = torch.randn(2, model.channels, side, side)
    with torch.no_grad():
        prediction = model(noisy, torch.tensor([0, 9]), torch.tensor([0, 2]))
        assert prediction.shape == noisy.shape
        if name == "ldm":
            assert model.decode(noisy).shape == (2, 1, size_px, size_px)


@pytest.mark.parametrize(("total", "steps"), [(20, 5), (1000, 50), (1000, 30), (20, 20), (7, 3)])
def test_ddim_visits_strided_levels_and_ends_on_the_clean_image(total, steps):
    from cxrlab.gen.models import DiffusionOptions
    from cxrlab.gen.models.diffusion import DiffusionFamily

    family = DiffusionFamily(32, DiffusionOptions(timesteps=total), latent=False)
    scheduler, _ = family._sampling_scheduler("ddim", steps)
    levels = scheduler.timesteps.tolist()
    stride = total // steps
    assert len(levels) == steps and levels[0] <= total - 1 and 0 <= levels[-1] < stride
    assert all(a - b == stride for a, b in zip(levels, levels[1:], strict=False))


class TwoShades(torch.nn.Module):
    """The exact noise prediction for flat images of one of two shades, a denoiser
    whose class conditioning matters by construction.

    The clean image is flat at ``shades[k]``; label ``c`` (0, 1, or 2 the null class)
    draws shade ``k`` with probability ``chances[c][k]``. Given a noisy image
    x_t = sqrt(a) x_0 + sqrt(1 - a) eps, the posterior over the two shades follows
    from their Gaussian likelihoods, and the prediction is E[eps | x_t, label]: what a
    perfectly trained epsilon network predicts.
    """

    def __init__(self, alphas_cumprod, shades, chances) -> None:
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.double())
        self.register_buffer("shades", torch.tensor(shades, dtype=torch.float64))
        self.register_buffer("log_chances", torch.tensor(chances, dtype=torch.float64).log())
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the sampler reads its device

    def forward(self, noisy, timesteps, class_labels=None):
        x = noisy.double().flatten(1)  # (B, D)
        a = self.alphas_cumprod[timesteps][:, None]  # (B, 1)
        centres = a.sqrt()[:, :, None] * self.shades[None, :, None]  # (B, 2, 1)
        distance = ((x[:, None, :] - centres) ** 2).sum(-1)  # (B, 2)
        posterior = torch.softmax(self.log_chances[class_labels] - distance / (2 * (1 - a)), 1)
        clean = (posterior * self.shades).sum(1, keepdim=True)  # (B, 1)
        return ((x - a.sqrt() * clean) / (1 - a).sqrt()).view_as(noisy).float()


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_guidance_moves_samples_towards_the_asked_class(sampler):
    """Each class keeps 30% of the other's images (its shade), the null class is half
    and half: classifier-free guidance, p(x | c)^(1 + w) / p(x)^w, must raise the
    share of samples of the asked class's own shade as w grows. A sign error in the
    guidance (or the conditional and null predictions swapped) lowers it instead."""
    from cxrlab.gen.models import DiffusionOptions
    from cxrlab.gen.models.diffusion import DiffusionFamily, DiffusionModel

    settings = DiffusionOptions(timesteps=50, prediction="epsilon", class_conditional=True)
    family = DiffusionFamily(8, settings, latent=False)
    shades = (-0.5, 0.5)  # class 0 dark, class 1 bright
    chances = [[0.7, 0.3], [0.3, 0.7], [0.5, 0.5]]
    model = DiffusionModel(
        TwoShades(family.noise_scheduler.alphas_cumprod, shades, chances), side_px=8
    ).eval()
    n = 200
    for covid in (0, 1):
        shares = []
        for guidance in (0.0, 1.0, 4.0):
            options = SamplingOptions(sampler=sampler, steps=25, guidance=guidance)
            images = family.sample(
                model, n, torch.full((n,), covid), torch.Generator().manual_seed(0), options
            )
            bright = images.flatten(1).mean(1) > 0
            shares.append(float((bright if covid else ~bright).float().mean()))
        # guided: own shade with odds (0.7 / 0.3)^(1 + w) against (0.5 / 0.5)^w
        expected = [1 / (1 + (3 / 7) ** (1 + w)) for w in (0.0, 1.0, 4.0)]  # 0.70, 0.84, 0.99
        assert shares == pytest.approx(expected, abs=0.1), (covid, shares)
        assert shares[0] + 0.05 < shares[1] < shares[2], (covid, shares)
