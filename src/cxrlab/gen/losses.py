"""Adversarial and variational objectives. Scores are (B,) tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(
    loss: str, real_scores: torch.Tensor, fake_scores: torch.Tensor
) -> torch.Tensor:
    """``bce``: -log D(x) - log(1 - D(G(z))) on logits; ``wasserstein``: E[D(fake)] - E[D(real)];
    ``hinge``: E[relu(1 - D(real))] + E[relu(1 + D(fake))] (Lim & Ye 2017)."""
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(
            real_scores, torch.ones_like(real_scores)
        ) + F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
    if loss == "wasserstein":
        return fake_scores.mean() - real_scores.mean()
    if loss == "hinge":
        return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()
    raise ValueError(f"unknown adversarial loss {loss!r}")


def generator_loss(loss: str, fake_scores: torch.Tensor) -> torch.Tensor:
    """Non-saturating ``bce`` (-log D(G(z))); ``wasserstein`` and ``hinge``: -E[D(G(z))]."""
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))
    if loss in ("wasserstein", "hinge"):
        return -fake_scores.mean()
    raise ValueError(f"unknown adversarial loss {loss!r}")


def gradient_penalty(
    critic, real_images: torch.Tensor, fake_images: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """E[(||grad_x D(x)||_2 - 1)^2] at random interpolates of real and fake (Gulrajani et al. 2017)."""
    alpha = torch.rand(
        real_images.shape[0], 1, 1, 1, device=real_images.device, dtype=real_images.dtype
    )
    mixed = (alpha * real_images + (1.0 - alpha) * fake_images).requires_grad_(True)
    scores = critic(mixed, labels)
    (gradients,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((gradients.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def elbo_loss(
    logits: torch.Tensor,
    images: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO per image: Bernoulli reconstruction of ``(images + 1) / 2`` + beta * KL(q(z|x) || N(0, I)).

    Returns (loss, reconstruction, kl), each averaged over the batch (summed over pixels/latents).
    """
    targets = (images + 1.0) / 2.0
    reconstruction = (
        F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        .flatten(1)
        .sum(1)
        .mean()
    )
    kl = (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return reconstruction + beta * kl, reconstruction, kl
