"""``cxrlab clf``: train COVID-19 classifiers and evaluate them honestly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrlab.clf.config import (
    ARCHS,
    AUGMENTS,
    BALANCES,
    STANDARDIZATIONS,
    ClfConfig,
    PretrainConfig,
)
from cxrlab.clf.recipes import RECIPES
from cxrlab.cli_common import (
    ListOptionsCommand,
    Quiet,
    friendly_errors,
    given_options,
    numbers,
    report_interrupt,
)
from cxrlab.errors import CxrlabError
from cxrlab.utils.config import config_defaults

#: ``clf train``'s option defaults: those of :class:`~cxrlab.clf.config.ClfConfig`.
CLF = config_defaults(ClfConfig)
#: ``clf pretrain``'s option defaults: those of :class:`~cxrlab.clf.config.PretrainConfig`.
PRE = config_defaults(PretrainConfig)

app = typer.Typer(
    help=(
        "Train COVID-19 classifiers (train split only; epoch and threshold chosen on "
        "validation; test read once) and evaluate them with patient-bootstrap intervals."
    ),
    no_args_is_help=True,
)


@app.command("train", cls=ListOptionsCommand)
@friendly_errors
def train(
    context: typer.Context,
    data: Annotated[Path, typer.Option(help="PACKED folder with train/val/test splits.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    arch: Annotated[
        str | None,
        typer.Option(help=f"One of {', '.join(ARCHS)} (required unless --recipe sets it)."),
    ] = None,
    synthetic: Annotated[
        Path | None,
        typer.Option(
            help="Synthetic PACKED or folder of PNGs (COVID-19 unless in a 'negative'/'normal' "
            "sub-folder), added to training only."
        ),
    ] = None,
    synthetic_ratio: Annotated[
        float | None,
        typer.Option(help="Synthetic images per real training image (default: all of them)."),
    ] = CLF["synthetic_ratio"],
    oversample_positive: Annotated[
        int,
        typer.Option(
            help="Add this many copies of real COVID-positive training images (the control "
            "arm of a synthetic experiment: same prevalence, no new images)."
        ),
    ] = CLF["oversample_positive"],
    synthetic_unverified: Annotated[
        bool,
        typer.Option(
            "--synthetic-unverified",
            help="Accept a --synthetic source without provenance.json (not drawn by `gen "
            "sample`): whether its generator learned validation/test images is then unknown, "
            "and the report says so.",
        ),
    ] = CLF["synthetic_unverified"],
    allow_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-mismatch",
            help="Accept --synthetic images made from data preprocessed otherwise than --data "
            "(size, equalization, crop, lungs, bit depth); the report names the differences.",
        ),
    ] = CLF["allow_mismatch"],
    augment: Annotated[
        str,
        typer.Option(help=f"Online augmentation of training batches: {', '.join(AUGMENTS)}."),
    ] = CLF["augment"],
    balance: Annotated[str, typer.Option(help=f"Class imbalance: {', '.join(BALANCES)}.")] = CLF[
        "balance"
    ],
    freeze_backbone: Annotated[
        bool, typer.Option("--freeze-backbone", help="Train the head only (DeepCovid's choice).")
    ] = CLF["freeze_backbone"],
    pretrained: Annotated[
        str,
        typer.Option(
            help="auto (xrv for densenet121-xrv, else none), none, imagenet (resnet18), xrv, or a weights file."
        ),
    ] = CLF["pretrained"],
    init: Annotated[
        Path | None,
        typer.Option(
            help="Start the backbone from a `cxrlab clf pretrain` output (its folder or "
            "backbone.pt); same --arch and --standardize; the run records it."
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help=f"A named bundle of options ({', '.join(RECIPES)}); options given here win. "
            "The run records it."
        ),
    ] = None,
    head: Annotated[
        str, typer.Option(help="logit (1 output, sigmoid + BCE) or softmax (2 outputs).")
    ] = CLF["head"],
    standardize: Annotated[
        str,
        typer.Option(
            help=f"Per-image intensity standardisation, part of the model (evaluation "
            f"applies it too): {', '.join(STANDARDIZATIONS)}."
        ),
    ] = CLF["standardize"],
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = CLF["epochs"],
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = CLF["batch_size"],
    lr: Annotated[float, typer.Option(help="Initial AdamW learning rate.")] = CLF["lr"],
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = CLF["weight_decay"],
    schedule: Annotated[
        str,
        typer.Option(
            help="cosine (over the whole run), plateau (halve on val-loss plateaus) or constant."
        ),
    ] = CLF["schedule"],
    seeds: Annotated[
        str | None, typer.Option(help="Seeds, e.g. --seeds 0 1 2 or 0,1,2 (one run each).")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Patient-bootstrap resamples for the CIs.")] = CLF[
        "bootstrap"
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue unfinished seeds from their last epoch.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = CLF["device"],
    devices: Annotated[
        int,
        typer.Option(
            help="Data-parallel processes (Lightning Fabric DDP) sharing each batch, "
            "on GPUs or CPU."
        ),
    ] = CLF["devices"],
    cv: Annotated[
        str,
        typer.Option(
            help="none, or sites: leave-site-out cross-validation over the train and val "
            "rows (folds of whole sites of the manifest's site column; test/external unread)."
        ),
    ] = CLF["cv"],
    folds: Annotated[
        int | None,
        typer.Option(
            help="Folds of whole sites with --cv sites (default 5, or the sites there are)."
        ),
    ] = CLF["folds"],
    pretrain_epochs: Annotated[
        int,
        typer.Option(
            help="With --cv sites: SimCLR-pretrain the backbone this many epochs in every "
            "fold, on that fold's training rows only (OUT/pretrain/fold-NN), and start the "
            "fold from it; 0: no pretraining."
        ),
    ] = CLF["pretrain_epochs"],
    quiet: Quiet = False,
) -> None:
    """Train a classifier per seed; writes config.yaml, seed_N/ (epochs.csv, best.pt,
    predictions, confusion matrix, ROC) and metrics.json + report.txt in --out.

    The epoch (best validation AUC) and the decision threshold (Youden's J) are chosen
    on the validation split; the test split is evaluated once, at the end. With --cv
    sites, each fold is such a run in --out/fold-NN (trained on the other sites, its
    held-out sites predicted once), and cv.json, predictions.csv and report.txt give the
    pooled out-of-site and in-site figures with 95% patient-bootstrap intervals.
    """
    from cxrlab.clf.config import ClfConfig
    from cxrlab.clf.recipes import with_recipe
    from cxrlab.clf.trainer import train_classifier

    values = dict(
        arch=arch,
        data=str(data),
        out=str(out),
        synthetic=str(synthetic) if synthetic else None,
        synthetic_ratio=synthetic_ratio,
        oversample_positive=oversample_positive,
        synthetic_unverified=synthetic_unverified,
        allow_mismatch=allow_mismatch,
        augment=augment,
        balance=balance,
        freeze_backbone=freeze_backbone,
        pretrained=pretrained,
        init=str(init) if init else None,
        head=head,
        standardize=standardize,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        seeds=numbers(seeds, int, "--seeds") if seeds else [0],
        device=device,
        devices=devices,
        bootstrap=bootstrap,
        cv=cv,
        folds=folds,
        pretrain_epochs=pretrain_epochs,
    )
    values = with_recipe(recipe, values, given_options(context))
    if values["arch"] is None:
        raise CxrlabError(f"--arch is required: one of {', '.join(ARCHS)} (or a --recipe that sets it)")  # fmt: skip
    config = ClfConfig(**values)
    if cv != "none":
        from cxrlab.clf.cv import cross_validate

        cv_result = cross_validate(config, resume=resume, progress=not quiet)
        if cv_result is None:  # an extra process of multi-GPU DDP: the first one reports
            return
        typer.echo(cv_result.report)
        typer.echo(f"run folder: {cv_result.run} (cv.json, predictions.csv, report.txt, fold-NN/)")
        return
    with report_interrupt(out, "the same `cxrlab clf train` command with --resume"):
        result = train_classifier(config, resume=resume, progress=not quiet)
    if result is None:  # an extra process of multi-GPU DDP: the first one reports
        return
    typer.echo(result.report)
    typer.echo(f"run folder: {result.run} (metrics.json, report.txt)")


@app.command("pretrain")
@friendly_errors
def pretrain(
    data: Annotated[Path, typer.Argument(help="PACKED folder (labels are not read).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    arch: Annotated[
        str, typer.Option(help=f"Whose backbone to pretrain: {', '.join(ARCHS)}.")
    ] = "resnet18",
    pretrain_on: Annotated[
        str,
        typer.Option(
            help="Splits whose real images are used, e.g. train or train,val; anything "
            "but train only when named here (recorded)."
        ),
    ] = ",".join(PRE["pretrain_on"]),
    splits_file: Annotated[
        Path | None,
        typer.Option(
            help="CSV (id, split) replacing the PACKED's splits, e.g. a leave-site-out "
            "fold's fold-NN/splits.csv: pretrain on that fold's training rows only."
        ),
    ] = None,
    standardize: Annotated[
        str,
        typer.Option(
            help=f"The --standardize the classifier will use: {', '.join(STANDARDIZATIONS)}."
        ),
    ] = PRE["standardize"],
    epochs: Annotated[int, typer.Option(help="Passes over the images.")] = PRE["epochs"],
    batch_size: Annotated[
        int, typer.Option(help="Images per step (two views each; the rest are negatives).")
    ] = PRE["batch_size"],
    lr: Annotated[float, typer.Option(help="Initial AdamW learning rate (cosine).")] = PRE["lr"],
    temperature: Annotated[float, typer.Option(help="NT-Xent temperature.")] = PRE["temperature"],
    seed: Annotated[int, typer.Option(help="Weights, image order and views.")] = PRE["seed"],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last finished epoch.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = PRE["device"],
    quiet: Quiet = False,
) -> None:
    """Self-supervised pretraining (SimCLR, lightly's NT-Xent loss) of a classifier's
    backbone on unlabelled images; writes backbone.pt, pretrain.json (what it saw) and
    images.csv for `cxrlab clf train --init OUT`."""
    from cxrlab.clf.pretrain import pretrain_backbone

    config = PretrainConfig(
        backbone=arch,
        data=str(data),
        out=str(out),
        pretrain_on=[s.strip() for s in pretrain_on.split(",") if s.strip()],
        splits_file=str(splits_file) if splits_file else None,
        standardize=standardize,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        temperature=temperature,
        seed=seed,
        device=device,
    )
    with report_interrupt(out, "the same `cxrlab clf pretrain` command with --resume"):
        result = pretrain_backbone(config, resume=resume, progress=not quiet)
    record = result.record
    seen = ", ".join(f"{n} {split}" for split, n in record["images"].items())
    typer.echo(
        f"{record['arch']} backbone pretrained ({record['method']}, {record['epochs']} epochs, "
        f"{seen} images; loss {record['loss_per_epoch'][0]:.3f} -> "
        f"{record['loss_per_epoch'][-1]:.3f})"
    )
    typer.echo(f"written to {result.weights}; use it with `cxrlab clf train --init {result.out}`")


@app.command("evaluate")
@friendly_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder of `cxrlab clf train`.")],
    data: Annotated[Path, typer.Option(help="PACKED folder to evaluate on (any source).")],
    split: Annotated[
        str,
        typer.Option(
            help="test, external, val, or all (every real image: a dataset from another source)."
        ),
    ] = "test",
    explain: Annotated[
        int, typer.Option(help="Grad-CAM overlays of this many images per seed (0: none).")
    ] = 0,
    shortcut_probe: Annotated[
        bool,
        typer.Option("--shortcut-probe", help="Evaluate again with the lung field blacked out."),
    ] = False,
    lung_masks: Annotated[
        Path | None,
        typer.Option(
            help="MASKS folder of `cxrlab seg predict`: the probe removes, then keeps only, "
            "the real lungs, and Grad-CAM's heat share inside the lungs is measured on them "
            "(default: a central box)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (default RUN/eval/<data>-<split>)."),
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Patient-bootstrap resamples for the CIs.")] = 2000,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    allow_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-mismatch",
            help="Evaluate on images preprocessed otherwise than the model's training data "
            "(size, equalization, crop, lungs, bit depth); the report names the differences.",
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Evaluate every seed of RUN on a split of --data: metrics with 95% patient-bootstrap
    intervals, confusion matrix and ROC PNGs, predictions CSV; optionally Grad-CAM and a
    shortcut probe."""
    from cxrlab.clf.evaluate import evaluate_run

    result = evaluate_run(
        run,
        data,
        split=split,
        explain=explain,
        shortcut_probe=shortcut_probe,
        out=out,
        device=device,
        bootstrap=bootstrap,
        lung_masks=lung_masks,
        allow_mismatch=allow_mismatch,
        progress=not quiet,
    )
    typer.echo(result.report)
    typer.echo(f"written to {result.out} (metrics.json, report.txt)")


@app.command("predict")
@friendly_errors
def predict_images(
    run: Annotated[Path, typer.Argument(help="Run folder of `cxrlab clf train`.")],
    images: Annotated[
        list[Path],
        typer.Argument(help="Image files and folders of them (searched recursively)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write.")] = Path(
        "preds.csv"
    ),
    explain: Annotated[
        int,
        typer.Option(
            help="Grad-CAM overlays of the first N images (first seed) in <out>-gradcam.png."
        ),
    ] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    force: Annotated[
        bool,
        typer.Option(help="Replace an existing --out that is not a predictions CSV."),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Predict COVID-19 for new, unlabelled images: each file is preprocessed as RUN's
    training images were (the same code as `data preprocess`), every trained seed
    predicts it, and --out gets per file the mean probability, the mean validation
    threshold and the call (covid or other). Not a diagnosis: a research model's
    output."""
    from cxrlab.clf.unlabelled import predict_files

    report = predict_files(
        run, images, out, explain=explain, device=device, force=force, progress=not quiet
    )
    typer.echo(report.summary())
