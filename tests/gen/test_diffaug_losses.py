import pytest
import torch

from cxrlab.errors import CxrlabError
from cxrlab.gen.diffaug import brightness, contrast, cutout, diff_augment, parse_policy, translation
from cxrlab.gen.losses import discriminator_loss, elbo_loss, generator_loss, gradient_penalty


def test_translation_shifts_content_and_fills_black():
    images = torch.full((64, 1, 16, 16), -1.0)
    images[:, :, 6:10, 6:10] = 1.0  # a bright 4x4 square in the middle
    out = translation(images, ratio=0.125)
    assert torch.equal(out.sum(dim=(1, 2, 3)), images.sum(dim=(1, 2, 3)))  # the square stays inside
    moved = (out != images).flatten(1).any(1)
    assert moved.float().mean() > 0.5


def test_cutout_blacks_out_a_quarter_of_the_area():
    out = cutout(torch.ones(8, 1, 16, 16), ratio=0.5)
    assert ((out == -1).flatten(1).sum(1) == 64).all()


def test_brightness_and_contrast_per_sample():
    images = torch.linspace(-0.5, 0.5, 16).view(1, 1, 4, 4).repeat(32, 1, 1, 1)
    shifted = brightness(images)
    offsets = (shifted - images).flatten(1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets)) and offsets[:, 0].std() > 0
    scaled = contrast(images)
    assert torch.allclose(scaled.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-6)


def test_diffaug_is_differentiable_and_policies_are_checked():
    images = torch.rand(4, 1, 16, 16, requires_grad=True)
    diff_augment(images, "translation,cutout,color").sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert parse_policy("none") == [] and parse_policy(" translation , cutout ") == [
        "translation",
        "cutout",
    ]
    with pytest.raises(CxrlabError):
        parse_policy("rotate")


def test_losses_closed_forms():
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([1.0, -1.0])
    assert discriminator_loss("wasserstein", real, fake) == pytest.approx(0.0 - 3.0)
    assert discriminator_loss("hinge", real, fake) == pytest.approx(0.0 + (2.0 + 0.0) / 2)
    zeros = torch.zeros(3)
    assert discriminator_loss("bce", zeros, zeros) == pytest.approx(2 * 0.693147, rel=1e-5)
    assert generator_loss("bce", zeros) == pytest.approx(0.693147, rel=1e-5)
    assert generator_loss("hinge", fake) == pytest.approx(0.0)


def test_gradient_penalty_of_a_linear_critic():
    weight = torch.full((1, 1, 4, 4), 0.5)  # ||grad|| = sqrt(16 * 0.25) = 2 everywhere

    def critic(images, labels=None):
        return (images * weight).sum(dim=(1, 2, 3))

    penalty = gradient_penalty(critic, torch.rand(5, 1, 4, 4), torch.rand(5, 1, 4, 4))
    assert penalty == pytest.approx((2.0 - 1.0) ** 2)


def test_elbo_kl_is_zero_for_the_prior():
    logits = torch.zeros(2, 1, 4, 4)
    images = torch.zeros(2, 1, 4, 4)  # targets 0.5
    loss, reconstruction, kl = elbo_loss(logits, images, torch.zeros(2, 3), torch.zeros(2, 3))
    assert kl == pytest.approx(0.0) and reconstruction == pytest.approx(16 * 0.693147, rel=1e-5)
    _, _, kl_shifted = elbo_loss(logits, images, torch.ones(2, 3), torch.zeros(2, 3))
    assert kl_shifted == pytest.approx(1.5)
