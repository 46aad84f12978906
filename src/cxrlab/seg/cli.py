"""``cxrlab seg``: train a lung segmenter, predict lung masks (torch is imported lazily)."""

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
    with_recorded_settings,
)

app = typer.Typer(
    help="Lung segmentation: train a MONAI U-Net on a dataset's lung masks, predict masks.",
    no_args_is_help=True,
)


@app.command("train")
@friendly_errors
def train(
    context: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (SEGRUN) to write.")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Dataset folder whose rows have lung masks (mask_path), split (required "
            "unless --resume)."
        ),
    ] = None,
    size: Annotated[int, typer.Option(help="Working resolution: square side in px.")] = 128,
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = 60,
    batch_size: Annotated[int, typer.Option(help="Images per optimizer step.")] = 8,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (cosine to 1%).")] = 2e-3,
    channels: Annotated[
        str, typer.Option(help="Comma-separated feature maps per U-Net level.")
    ] = "16,32,64,128,256",
    res_units: Annotated[int, typer.Option(help="Residual units per U-Net block.")] = 2,
    augment: Annotated[
        str, typer.Option(help="mild (warp image and mask together, gamma) or none.")
    ] = "mild",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from checkpoints/last.pt with the run's recorded settings; "
            "--epochs may go up (the extra epochs train at the schedule's final rate).",
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace what --out holds.")] = False,
    quiet: Quiet = False,
) -> None:
    """Train a lung segmentation U-Net (Dice + BCE) on the train split's masked images,
    choosing the epoch on validation Dice; writes config.yaml, epochs.csv, best.pt,
    checkpoints/last.pt, metrics.json, report.txt and val_contours.png."""
    from cxrlab.errors import CxrlabError
    from cxrlab.seg.config import SegConfig
    from cxrlab.seg.trainer import train_segmenter

    try:
        channel_list = [int(c) for c in channels.split(",") if c.strip()]
    except ValueError:
        raise CxrlabError(
            f"--channels must be comma-separated integers, got {channels!r}"
        ) from None
    values = dict(
        data=str(data) if data else None,
        out=str(out),
        size_px=size,
        channels=channel_list,
        res_units=res_units,
        augment=augment,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
    )
    values = with_recorded_settings(
        values, recorded_config(out, resume), given_options(context), {"size": "size_px"}
    )
    if values["data"] is None:
        raise CxrlabError(
            f"--data is required for a new run ({out}/config.yaml not found"
            f"{'' if resume else '; pass --resume to continue a run there'})"
        )
    config = SegConfig(**values)
    with report_interrupt(out, f"cxrlab seg train --out {out} --resume"):
        result = train_segmenter(config, resume=resume, force=force, progress=not quiet)
    typer.echo(result.report)


@app.command("predict")
@friendly_errors
def predict(
    run: Annotated[Path, typer.Argument(metavar="SEGRUN", help="Run folder of `seg train`.")],
    data: Annotated[Path, typer.Option(help="Dataset folder: every accepted image gets a mask.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="MASKS folder to write.")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    force: Annotated[bool, typer.Option(help="Replace what --out holds.")] = False,
    quiet: Quiet = False,
) -> None:
    """Predict a lung mask for every image of --data: MASKS/<id>.png (0/255 at the image's
    own size) and MASKS/masks.csv with lung fraction, components and a quality flag."""
    from cxrlab.seg.predict import predict_masks

    report = predict_masks(run, data, out, device=device, force=force, progress=not quiet)
    typer.echo(report.summary())
