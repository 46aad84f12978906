"""The one way images are drawn from a trained generative model.

The trainer's sample grids, the metrics at save intervals and ``cxrlab gen sample``
all call :func:`generate`, and turn its output into 8-bit pixels with
:func:`to_uint8`, so the three can never disagree on noise, labels or rounding.

A family decides how it samples through its :class:`~cxrlab.gen.models.Recipe`:
the GAN/VAE families map a latent ``z`` (B, latent_dim) through the generator in
one pass; a family with an iterative sampler (diffusion) sets ``Recipe.sample`` and
receives the :class:`SamplingOptions` (sampler, steps, guidance) and the random
generator to draw its noise from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cxrlab.errors import CxrlabError
from cxrlab.gen.config import LABELS
from cxrlab.utils.progress import tqdm


@dataclass(frozen=True)
class SamplingOptions:
    """How an iterative family samples (ignored by single-pass generators).

    Attributes:
        sampler: ``default`` (the run's choice), or a family's named sampler
            (``ddim``, ``ddpm`` for diffusion models).
        steps: denoising steps (None: the run's default).
        guidance: classifier-free guidance weight (0: none; None: the run's default).
    """

    sampler: str = "default"
    steps: int | None = None
    guidance: float | None = None


def sampling_label(conditional: bool, trained_label: str | None, asked: str | None) -> str | None:
    """The label images are drawn for, with the rules that keep synthetic labels honest.

    * An unconditional run trained on one class draws that class; asking for another is
      an error (its images would carry a label they were never trained for).
    * A conditional run draws the class asked for, which must be given.
    * An unconditional run trained on both classes draws unlabelled images (None).

    Raises:
        CxrlabError: an unknown label, a label the run was not trained for, or a
            conditional run without one.
    """
    if asked is not None and asked not in LABELS:
        raise CxrlabError(f"--label must be positive or negative, got {asked!r}")
    if conditional:
        if asked is None:
            raise CxrlabError(
                "this model is conditional: pass --label positive or --label negative"
            )
        if trained_label is not None and asked != trained_label:
            raise CxrlabError(
                f"this conditional run was trained on {trained_label} images only; "
                f"it cannot draw {asked} ones"
            )
        return asked
    if asked is not None and asked != trained_label:
        trained = f"{trained_label} images" if trained_label else "both classes without labels"
        raise CxrlabError(
            f"--label {asked}: this run was trained on {trained}, so its images are "
            f"{trained_label or 'unlabelled'}; train a run on {asked} images "
            "(gen train --label) or a conditional model to draw them"
        )
    return trained_label


@torch.no_grad()
def generate(
    model: nn.Module,
    recipe,
    n: int,
    *,
    latent_dim: int,
    covid: int | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    options: SamplingOptions | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """``n`` images (n, 1, S, S) float32 in [-1, 1] on the CPU.

    Args:
        model: the generator (EMA weights where a run kept them); put in eval mode for
            the call and restored after.
        recipe: the family's :class:`~cxrlab.gen.models.Recipe` (``conditional``, ``sample``).
        n: how many images (at least 1).
        latent_dim: size of z for single-pass generators.
        covid: the class of every image (int) or of each image ((n,) tensor) for
            conditional models; ignored by unconditional ones.
        generator: the CPU random generator all noise is drawn from (the same state
            gives the same images).
        options: sampler settings of iterative families.
        batch_size: images per forward pass.
        progress: show a bar counting images (an iterative family moves it at each
            denoising step, so minutes of sampling on a CPU are not silent).
    """
    if n < 1:
        raise CxrlabError(f"the number of images must be at least 1, got {n}")
    if recipe.conditional and covid is None:
        raise CxrlabError("a conditional model needs the class to draw (covid 0 or 1)")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    options = options or SamplingOptions()
    device = next(model.parameters()).device
    labels_all = None
    if recipe.conditional:
        labels_all = (
            covid.to(torch.int64).cpu()
            if isinstance(covid, torch.Tensor)
            else torch.full((n,), int(covid), dtype=torch.int64)
        )
    if getattr(recipe, "check_sampling", None) is not None:
        recipe.check_sampling(options)  # a refused setting stops before any work
    was_training = model.training
    model.eval()
    chunks = []
    bar = tqdm(total=n, desc="sampling", unit="img", disable=not progress, leave=False)
    try:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            labels = None if labels_all is None else labels_all[start : start + count].to(device)
            if getattr(recipe, "sample", None) is not None:
                # the batch's share of the bar, a piece per denoising step
                advance = lambda share, count=count: bar.update(count * share)  # noqa: E731
                images = recipe.sample(model, count, labels, generator, options, advance)
            else:
                z = torch.randn(count, latent_dim, generator=generator).to(device)
                images = model(z, labels)
            chunks.append(images.float().clamp(-1, 1).cpu())
            bar.n = start + count  # whole images, whatever the rounding of the pieces
            bar.refresh()
    finally:
        model.train(was_training)
        bar.close()
    return torch.cat(chunks)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 1, S, S) images in [-1, 1] -> (N, S, S) uint8 (round half away: 0 -> 128)."""
    return ((images[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def check_finite(model: nn.Module, what: str) -> None:
    """Refuse to sample from a model holding NaN or infinite weights (a diverged run).

    Raises:
        CxrlabError: naming ``what`` (the run and step).
    """
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CxrlabError(
                f"{what} holds non-finite weights ({name}): the run diverged; sample from an "
                "earlier checkpoint (--step) or retrain with a lower learning rate"
            )
