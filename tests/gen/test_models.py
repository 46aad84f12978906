import pytest
import torch

from cxrlab.errors import CxrlabError
from cxrlab.gen.config import GenConfig
from cxrlab.gen.models import build_model, model_names
from cxrlab.gen.trainer import train_generator
from factory import make_packed

FAMILIES = ["gan", "wgan", "wgan-gp", "cgan", "dcgan", "vae"]


def test_all_six_families_are_registered():
    assert set(FAMILIES) <= set(model_names())


@pytest.mark.parametrize("size_px", [32, 64, 256])
@pytest.mark.parametrize("name", FAMILIES)
def test_every_model_builds_and_runs_a_training_step(tmp_path, name, size_px):
    data = make_packed(tmp_path / "P", n=8, size_px=size_px)
    config = GenConfig(
        model=name, data=str(data), out=str(tmp_path / "run"), size_px=size_px, steps=1, batch_size=4,
        sample_interval=1, save_interval=1, device="cpu", n_critic=1 if name.startswith("wgan") else None,
    )  # fmt: skip
    before = {k: v.clone() for k, v in build_model(name, size_px).generator.state_dict().items()}
    result = train_generator(config, progress=False)
    assert result.step == 1
    assert (tmp_path / "run" / "samples" / "step_000001.png").is_file()
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_000001.pt", weights_only=True)
    changed = [
        k
        for k, v in state["generator"].items()
        if v.dtype.is_floating_point and not torch.equal(v, before[k])
    ]
    assert changed, "the generator's weights did not move"
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.last_row.items())


@pytest.mark.parametrize("name", FAMILIES)
def test_generator_output_shape_and_range(name):
    recipe = build_model(name, 32)
    recipe.generator.eval()
    images = recipe.generator(torch.randn(3, 100), torch.tensor([0, 1, 0]))
    assert images.shape == (3, 1, 32, 32) and images.min() >= -1 and images.max() <= 1


def test_keras_batchnorm_momentum_translation():
    recipe = build_model("gan", 32)
    norms = [m for m in recipe.generator.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and all(m.momentum == pytest.approx(0.2) for m in norms)


def test_wgan_recipes_follow_the_papers():
    wgan, gp = build_model("wgan", 64), build_model("wgan-gp", 64)
    assert (wgan.clip_value, wgan.n_critic, wgan.g_optimizer.name, wgan.g_optimizer.lr) == (
        0.01,
        5,
        "rmsprop",
        5e-5,
    )
    assert (gp.gp_weight, gp.n_critic, gp.d_optimizer.lr, gp.d_optimizer.betas) == (
        10.0,
        5,
        1e-4,
        (0.0, 0.9),
    )
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gp.discriminator.modules())
    widths = [
        m.out_channels for m in wgan.discriminator.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    assert widths == [16, 32, 64, 128]


def test_dcgan_channels_halve_as_resolution_doubles():
    recipe = build_model("dcgan", 64)
    widths = [
        m.out_channels
        for m in recipe.generator.modules()
        if isinstance(m, torch.nn.ConvTranspose2d)
    ]
    assert widths == [512, 256, 128, 64, 1]


def test_bad_sizes_and_names_are_clear_errors():
    with pytest.raises(CxrlabError, match="power of two"):
        build_model("dcgan", 48)
    with pytest.raises(CxrlabError, match="choose one of"):
        build_model("stylegan9", 64)


@pytest.mark.parametrize("p", [0.25, 0.4])
def test_cpu_dropout_drops_at_rate_p_and_scales_like_nn_dropout(p):
    from cxrlab.gen.models.layers import Dropout

    torch.manual_seed(0)
    layer = Dropout(p)
    inputs = torch.ones(400_000)
    out = layer(inputs)
    assert abs((out == 0).float().mean().item() - p) < 0.005
    assert torch.allclose(out[out != 0], torch.tensor(1.0 / (1.0 - p)))
    torch.manual_seed(0)
    assert torch.equal(layer(inputs), out)  # the global generator drives it
    maps = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    assert layer(maps).is_contiguous(memory_format=torch.channels_last)
    grads = torch.randn(4, 8, 6, 6, requires_grad=True)
    kept = layer(grads)
    kept.sum().backward()
    assert torch.equal(grads.grad, (kept != 0).float() / (1.0 - p))
    assert torch.equal(layer.eval()(maps), maps)


def test_the_benchmark_baseline_is_the_previous_cpu_path(tmp_path):
    from torch import nn

    from cxrlab.gen.models.layers import Dropout
    from cxrlab.gen.trainer import GenTrainer, _fabric

    data = make_packed(tmp_path / "P", n=8, size_px=32)
    config = GenConfig(
        model="wgan", data=str(data), out=str(tmp_path / "run"), size_px=32, batch_size=4,
        device="cpu", n_critic=1,
    )  # fmt: skip
    fast = GenTrainer(config, _fabric(config), progress=False)
    baseline = GenTrainer(config, _fabric(config), progress=False, speedups=False)
    layers = [type(m) for m in baseline.discriminator.modules() if isinstance(m, nn.Dropout)]
    assert layers and set(layers) == {nn.Dropout}
    assert any(isinstance(m, Dropout) for m in fast.discriminator.modules())
    weight = fast.discriminator.net[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert baseline.discriminator.net[0].weight.is_contiguous()
    assert fast.d_opt.param_groups[0]["foreach"] and not baseline.d_opt.param_groups[0]["foreach"]
    for trainer in (fast, baseline):
        trainer.train_step()
        assert all(p.abs().max() <= 0.01 for p in trainer.discriminator.parameters())
