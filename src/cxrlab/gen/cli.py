"""``cxrlab gen``: train generative models and sample from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrlab.cli_common import (
    Quiet,
    friendly_errors,
    given_options,
    recorded_config,
    report_interrupt,
    warn,
    with_recorded_settings,
)
from cxrlab.gen.config import GenConfig, learns_held_out
from cxrlab.utils.config import config_defaults

#: ``gen train``'s option defaults: those of :class:`~cxrlab.gen.config.GenConfig`.
GEN = config_defaults(GenConfig)

app = typer.Typer(
    help="Train GAN/WGAN/WGAN-GP/CGAN/DCGAN/VAE/diffusion models of CXRs and sample synthetic images.",
    no_args_is_help=True,
)


@app.command("train")
@friendly_errors
def train(
    context: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="gan, wgan, wgan-gp, cgan, dcgan, vae, ddpm or ldm (required unless --resume)."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="PACKED folder of real images (required unless --resume).")
    ] = None,
    size: Annotated[
        int, typer.Option(help="Image side in px (power of two, 32-256); must match PACKED.")
    ] = GEN["size_px"],
    label: Annotated[
        str | None, typer.Option(help="Train on one class: positive or negative (default: all).")
    ] = GEN["label"],
    split: Annotated[
        str, typer.Option(help="Split(s) of PACKED to train on, comma-separated.")
    ] = GEN["split"],
    steps: Annotated[int, typer.Option(help="Generator updates (one batch each).")] = GEN["steps"],
    batch_size: Annotated[int, typer.Option(help="Images per batch and device.")] = GEN[
        "batch_size"
    ],
    sample_interval: Annotated[int, typer.Option(help="Steps between sample grids.")] = GEN[
        "sample_interval"
    ],
    save_interval: Annotated[
        int, typer.Option(help="Steps between checkpoints (and metrics).")
    ] = GEN["save_interval"],
    log_interval: Annotated[int, typer.Option(help="Steps between rows of metrics.csv.")] = GEN[
        "log_interval"
    ],
    metrics: Annotated[
        str | None, typer.Option(help="Metrics at save intervals, e.g. swd,diversity or fid,kid.")
    ] = None,
    no_metrics: Annotated[
        bool, typer.Option("--no-metrics", help="No metrics during training.")
    ] = False,
    metrics_n: Annotated[int, typer.Option(help="Generated images per metric evaluation.")] = GEN[
        "metrics_n"
    ],
    features: Annotated[
        str, typer.Option(help="Feature extractor for fid/kid/is/prdc: inception or xrv.")
    ] = GEN["features"],
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue from the newest checkpoint in --out, with the run's recorded "
            "settings (options given again must match, except --steps, --metrics and the "
            "intervals)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed (bitwise reproducible on CPU).")] = GEN[
        "seed"
    ],
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = GEN["device"],
    devices: Annotated[
        int, typer.Option(help="Data-parallel processes (Lightning Fabric DDP).")
    ] = GEN["devices"],
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 mixed on CUDA, float32 on CPU), bf16 (bf16 autocast on the CPU "
            "too: faster on CPUs with bf16 units) or 32."
        ),
    ] = GEN["precision"],
    latent_dim: Annotated[int, typer.Option(help="Size of the noise vector z.")] = GEN[
        "latent_dim"
    ],
    generator: Annotated[
        str, typer.Option(help="wgan/wgan-gp: 'conv' swaps the MLP generator for DCGAN's.")
    ] = GEN["generator"],
    diffaug: Annotated[
        str, typer.Option(help="DiffAugment policy, e.g. translation,cutout,brightness,contrast.")
    ] = GEN["diffaug"],
    spectral_norm: Annotated[
        bool, typer.Option(help="Spectral normalisation in the discriminator.")
    ] = GEN["spectral_norm"],
    loss: Annotated[
        str | None, typer.Option(help="Override the adversarial loss: bce, wasserstein or hinge.")
    ] = GEN["loss"],
    ema: Annotated[
        float, typer.Option(help="EMA decay of the generator's weights, e.g. 0.999 (0: off).")
    ] = GEN["ema"],
    augment: Annotated[
        str | None,
        typer.Option(
            help="Classical online augmentation of real images: mild, anatomical, severe."
        ),
    ] = GEN["augment"],
    lr_g: Annotated[
        float | None, typer.Option(help="Generator learning rate (default: the family's).")
    ] = GEN["lr_g"],
    lr_d: Annotated[
        float | None, typer.Option(help="Discriminator learning rate (default: the family's).")
    ] = GEN["lr_d"],
    n_critic: Annotated[
        int | None, typer.Option(help="Critic steps per generator step (default: the family's).")
    ] = GEN["n_critic"],
    wandb: Annotated[bool, typer.Option(help="Also log to Weights & Biases.")] = GEN["wandb"],
    prediction: Annotated[
        str,
        typer.Option(help="ddpm/ldm: the network predicts v (robust at high noise) or epsilon."),
    ] = GEN["prediction"],
    schedule: Annotated[
        str | None,
        typer.Option(
            help="ddpm/ldm: cosine or scaled_linear (default: ddpm cosine, ldm scaled_linear)."
        ),
    ] = GEN["schedule"],
    diffusion_steps: Annotated[
        int, typer.Option(help="ddpm/ldm: noise levels of the forward process.")
    ] = GEN["diffusion_steps"],
    autoencoder_steps: Annotated[
        int,
        typer.Option(help="ldm: the first steps train the KL autoencoder, the rest the denoiser."),
    ] = GEN["autoencoder_steps"],
    sampler: Annotated[
        str, typer.Option(help="ddpm/ldm: sampler of grids, metrics and gen sample: ddim or ddpm.")
    ] = GEN["sampler"],
    sample_steps: Annotated[
        int, typer.Option(help="ddpm/ldm: denoising steps of grids, metrics and gen sample.")
    ] = GEN["sample_steps"],
    guidance: Annotated[
        float,
        typer.Option(help="ddpm/ldm without --label: classifier-free guidance weight (0: none)."),
    ] = GEN["guidance"],
    width: Annotated[
        int | None, typer.Option(help="ddpm/ldm: UNet channels at full resolution (default 64).")
    ] = GEN["width"],
    res_blocks: Annotated[
        int, typer.Option(help="ddpm/ldm: residual blocks per UNet level.")
    ] = GEN["res_blocks"],
    quiet: Quiet = False,
) -> None:
    """Train one generative model; writes config.yaml, metrics.csv, samples/ and checkpoints/ in --out.

    Recommended for a few hundred images: --model dcgan --diffaug translation,cutout,brightness,contrast --ema 0.999

    Diffusion: --model ddpm (pixels) or ldm (latents of a KL autoencoder trained in the
    first --autoencoder-steps); without --label one run learns both classes and samples
    either with classifier-free guidance (gen sample RUN --label positive --guidance 2).
    """
    from cxrlab.errors import CxrlabError
    from cxrlab.gen.config import GenConfig
    from cxrlab.gen.train_api import train_with_metrics
    from cxrlab.utils import outputs
    from cxrlab.utils.outputs import check_output

    values = dict(
        model=model, data=str(data) if data else None, out=str(out), size_px=size, label=label,
        split=split or None,
        steps=steps, batch_size=batch_size, sample_interval=sample_interval, save_interval=save_interval,
        log_interval=log_interval,
        metrics=[] if no_metrics or not metrics else [m.strip() for m in metrics.split(",") if m.strip()],
        metrics_n=metrics_n, features=features, seed=seed, device=device, devices=devices,
        precision=precision,
        latent_dim=latent_dim, generator=generator, diffaug=diffaug, spectral_norm=spectral_norm, loss=loss,
        ema=ema, augment=augment, lr_g=lr_g, lr_d=lr_d, n_critic=n_critic, wandb=wandb,
        prediction=prediction, schedule=schedule, diffusion_steps=diffusion_steps,
        autoencoder_steps=autoencoder_steps, sampler=sampler, sample_steps=sample_steps,
        guidance=guidance, width=width, res_blocks=res_blocks,
    )  # fmt: skip
    recorded = recorded_config(out, resume)
    values = with_recorded_settings(
        values, recorded, given_options(context), {"size": "size_px", "no_metrics": "metrics"}
    )
    for option in ("model", "data"):
        if values[option] is None:
            raise CxrlabError(
                f"--{option} is required for a new run ({out}/config.yaml not found"
                f"{'' if resume else '; pass --resume to continue a run there'})"
            )
    config = GenConfig(**values)
    # refuse a bad --out before any warning, so a refused run prints its one error line
    check_output(config.out, kind=outputs.GENERATOR_RUN, inputs=[config.data])
    if not resume:
        warn(unconditional_on_both_classes(config))
    if learns_held_out(config.split):
        warn([
            f"--split {config.split or 'all rows'}: this generator learns images held out "
            "from classifiers (val/test); a classifier trained on its images would have "
            "seen them, so `clf train --synthetic` refuses its images (their provenance.json "
            "says what it learned). Leave --split train for synthetic training data."
        ])  # fmt: skip
    with report_interrupt(out, f"cxrlab gen train --out {out} --resume"):
        result = train_with_metrics(config, resume=resume, progress=not quiet)
    row = ", ".join(
        f"{k} {v:.4g}" for k, v in result.last_row.items() if k not in ("step", "seconds")
    )
    timing = f"step {result.step} in {result.seconds:.0f} s"
    if result.metrics_seconds:
        timing += (
            f" (metrics {result.metrics_seconds:.0f} s, {100 * result.metrics_share:.0f}% of it)"
        )
    typer.echo(f"{result.run}: {timing}; {row}")
    typer.echo(f"samples in {result.run / 'samples'}, checkpoints in {result.run / 'checkpoints'}")


def unconditional_on_both_classes(config) -> list[str]:
    """A warning when ``config`` trains an unconditional model, without --label, on data
    holding both classes: its images would carry no class (empty when that is not so)."""
    from cxrlab.data.packed import open_packed
    from cxrlab.errors import CxrlabError

    if config.label is not None:
        return []
    try:
        data = open_packed(config.data)
    except (CxrlabError, OSError, ValueError):
        return []  # the trainer names what is wrong with --data
    rows = data.select(config.splits)
    covid = data.manifest["covid"].to_numpy()[rows].astype(int)
    n_positive = int((covid == 1).sum())
    if n_positive == 0 or n_positive == len(covid):
        return []
    from cxrlab.gen.trainer import build_recipe

    if build_recipe(config).conditional:
        return []
    where = f"split {config.split}" if config.split else "all rows"
    return [
        f"--model {config.model} is unconditional and no --label was given: it learns the "
        f"{n_positive} COVID-19 and {len(covid) - n_positive} other images of {config.data} "
        f"({where}) as one class, so its images carry no label and cannot serve as "
        "synthetic COVID-19 (or negative) training data. Pass --label positive or "
        "--label negative, or use a class-conditional model (cgan, ddpm, ldm)."
    ]


@app.command("sample")
@friendly_errors
def sample(
    run: Annotated[Path, typer.Argument(help="Run folder of `cxrlab gen train`.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder of PNGs, or a PACKED with --packed.")
    ],
    n: Annotated[int, typer.Option(help="Number of images (the thesis added 312).")] = 312,
    label: Annotated[
        str | None,
        typer.Option(
            help="positive or negative: required for conditional models; an unconditional "
            "run draws only its training class."
        ),
    ] = None,
    step: Annotated[int | None, typer.Option(help="Checkpoint step (default: the newest).")] = None,
    ema: Annotated[bool, typer.Option(help="Use the EMA weights when the run kept them.")] = True,
    packed: Annotated[
        bool, typer.Option(help="Write a PACKED marked synthetic instead of PNG files.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed (the same seed, the same images).")] = 0,
    sampler: Annotated[
        str, typer.Option(help="Diffusion: ddim or ddpm (default: the run's --sampler).")
    ] = "default",
    sample_steps: Annotated[
        int | None, typer.Option(help="Diffusion: denoising steps (default: the run's).")
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            help="Conditional diffusion: classifier-free guidance weight (default: the run's)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Annotated[
        bool, typer.Option(help="Replace an existing --out of another kind or other images.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Write synthetic images from a trained run.

    An unconditional run draws the class it was trained on (asking for another is an
    error); a conditional run needs --label. PNGs of a negative run go into a negative/
    sub-folder (flat PNGs count as COVID-positive for `clf train --synthetic`).
    """
    from cxrlab.gen.sample import sample_run
    from cxrlab.gen.sampling import SamplingOptions

    options = SamplingOptions(sampler=sampler, steps=sample_steps, guidance=guidance)
    path = sample_run(
        run, out, n=n, label=label, step=step, ema=ema, packed=packed, seed=seed, device=device,
        options=options, force=force, progress=not quiet,
    )  # fmt: skip
    if packed:
        typer.echo(f"wrote {n} synthetic images to {path}")
        return
    where, what = path, "COVID-positive"  # flat PNGs; the other classes get a sub-folder
    for name in ("negative", "unlabelled"):
        if (path / name).is_dir():
            where, what = path / name, name
    typer.echo(f"wrote {n} {what} synthetic images to {where}")
    if what == "unlabelled":
        typer.echo(
            "note: the run learned both classes without conditioning, so its images have "
            "no class and `clf train --synthetic` cannot use them; train with --label positive"
        )
