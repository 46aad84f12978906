"""``cxrlab metrics``: compare generated chest X-rays with real ones, print a table, write JSON."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cxrlab.cli_common import LabelChoice, Quiet, covid_value, friendly_errors
from cxrlab.errors import CxrlabError
from cxrlab.utils.outputs import check_output_file


class FeaturesChoice(str, Enum):
    inception = "inception"
    xrv = "xrv"


def _splits(text: str | None) -> str | tuple[str, ...] | None:
    if text is None:
        return None
    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    return parts[0] if len(parts) == 1 else parts


def format_table(values: dict[str, float]) -> str:
    """Aligned ``name  value  meaning`` lines."""
    from cxrlab.metrics.registry import value_info

    width = max(len(name) for name in values)
    lines = []
    for name, value in values.items():
        info = value_info(name)
        meaning = info.help if info else ""
        lines.append(f"{name:<{width}}  {value:>12.6g}  {meaning}".rstrip())
    return "\n".join(lines)


def _default_metrics(features: str, weights: Path | None, with_train: bool) -> str | None:
    """Every metric that applies (None), or, when the network's weights cannot be had,
    those that need none, saying so: a plain `cxrlab metrics REAL FAKE` works offline."""
    from cxrlab.metrics.api import default_metric_names
    from cxrlab.metrics.extractors import EXTRACTORS
    from cxrlab.metrics.extractors.weights import MissingWeightsError, locate_weights
    from cxrlab.metrics.registry import METRICS

    try:
        locate_weights(EXTRACTORS[features].weights_file(), weights)
    except MissingWeightsError as error:
        names = [
            n for n in default_metric_names(features, with_train) if not METRICS[n].needs_network
        ]
        typer.secho(
            f"note: {error}\nnote: computing only the metrics that need no weights: "
            f"{', '.join(names)} (give --weights or --metrics to choose)",
            fg=typer.colors.YELLOW,
            err=True,
        )
        return ",".join(names)
    return None


def _is_metrics_json(path: Path) -> bool:
    """Whether ``path`` holds what this command writes (so a rerun may replace it)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(report, dict) and "metrics" in report and "cxrlab_version" in report


@friendly_errors
def metrics_command(
    real: Annotated[
        Path, typer.Argument(help="Real images: a PACKED folder or a folder of images.")
    ],
    fake: Annotated[
        Path, typer.Argument(help="Generated images: a PACKED folder or a folder of images.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="JSON file to write (atomically).")
    ] = Path("metrics.json"),
    metrics: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: fid,kid,is,prdc,swd,diversity,memorization "
            "(default: all that apply). swd, diversity and memorization need no weights."
        ),
    ] = None,
    features: Annotated[
        FeaturesChoice,
        typer.Option(help="Network of fid/kid/is/prdc: inception (ImageNet) or xrv (CXR)."),
    ] = FeaturesChoice.inception,
    n: Annotated[
        int | None,
        typer.Option("--n", help="Use a seeded random choice of at most N images of each set."),
    ] = None,
    train: Annotated[
        Path | None,
        typer.Option(help="The generator's training images (PACKED or folder), for memorization."),
    ] = None,
    real_split: Annotated[
        str | None,
        typer.Option(help="PACKED REAL: only these split(s), comma-separated (default: all)."),
    ] = None,
    train_split: Annotated[
        str | None, typer.Option(help="PACKED --train: only these split(s).")
    ] = "train",
    label: Annotated[
        LabelChoice | None,
        typer.Option(help="PACKED REAL and --train: only this class (default: both)."),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Extractor weights file or a folder holding it (else $CXRLAB_WEIGHTS_DIR, "
            "the library's cache, then a download)."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Reference-feature cache (default $CXRLAB_CACHE_DIR or ~/.cache/cxrlab/refstats)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    force: Annotated[
        bool,
        typer.Option(help="Replace an existing --out that is not a metrics JSON (never an input)."),
    ] = False,
    allow_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-mismatch",
            help="Compare sets preprocessed differently (size, equalization, crop, lungs, "
            "bit depth); the JSON records the differences.",
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Compare generated images (FAKE) with real ones (REAL): FID, KID, IS, PRDC, SWD,
    MS-SSIM diversity and memorization of training images.

    Writes --out (values and what was compared) and, for memorization, a PNG of the
    generated images closest to a training image beside it (OUT-memorization.png).
    """
    from cxrlab import __version__
    from cxrlab.metrics.api import compute_metrics
    from cxrlab.metrics.images import ImageSource
    from cxrlab.utils.fs import atomic_write_text

    covid = covid_value(label)
    real_source = ImageSource(real, split=_splits(real_split), covid=covid)
    train_source = (
        None if train is None else ImageSource(train, split=_splits(train_split), covid=covid)
    )
    if train is not None and not (train / "meta.json").is_file():
        train_source = ImageSource(train, covid=covid)  # a folder has no splits: taken whole

    for role, path in (("REAL", real), ("FAKE", fake), ("--train", train)):
        if path is not None and not path.exists():
            raise CxrlabError(
                f"{role} {path} does not exist; give a PACKED folder or a folder of images"
            )
        if path is not None and not path.is_dir():
            # before the extractor's weights are looked for (and maybe downloaded)
            parent = (
                f" (its folder {path.parent}?)" if (path.parent / "meta.json").is_file() else ""
            )
            raise CxrlabError(
                f"{role} {path} is a file; give a PACKED folder{parent} or a folder of images"
            )
    check_output_file(
        out,
        what="a metrics JSON",
        is_kind=_is_metrics_json,
        inputs=[real, fake, train],
        force=force,
    )
    if metrics is None:
        metrics = _default_metrics(features.value, weights, with_train=train is not None)
    grid_path = out.with_name(f"{out.stem}-memorization.png")
    results = compute_metrics(
        real_source,
        fake,
        metrics,
        features=features.value,
        n=n,
        train=train_source,
        weights=weights,
        cache_dir=cache_dir,
        device=device,
        seed=seed,
        grid_path=grid_path,
        progress=not quiet,
        allow_mismatch=allow_mismatch,
    )
    report = {"metrics": dict(results), **results.info, "cxrlab_version": __version__}
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    typer.echo(
        f"{results.info['fake']} ({results.info['n_fake']} images) vs "
        f"{results.info['real']} ({results.info['n_real']} images)"
    )
    typer.echo(format_table(dict(results)))
    for note in results.info.get("preprocessing_mismatch", []):
        typer.echo(f"note: {note}")
    typer.echo(
        f"wrote {out}" + (f" and {grid_path}" if "memorization_grid" in results.info else "")
    )
