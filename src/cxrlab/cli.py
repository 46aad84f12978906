"""The ``cxrlab`` command line: each command is a thin call into the package."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cxrlab import __version__
from cxrlab.cli_common import OneLineErrorsGroup, Quiet, friendly_errors, reflow_help

app = typer.Typer(
    help=(
        "cxrlab: turn messy public chest X-ray collections into trustworthy COVID-19 "
        "detection experiments. Start with `cxrlab demo`, or `cxrlab data --help`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OneLineErrorsGroup,
)


def _register_subcommands() -> None:
    from cxrlab.clf.cli import app as clf_app
    from cxrlab.data.cli import app as data_app
    from cxrlab.gen.cli import app as gen_app
    from cxrlab.metrics.cli import metrics_command
    from cxrlab.seg.cli import app as seg_app
    from cxrlab.study.cli import app as study_app

    app.add_typer(data_app, name="data")
    app.add_typer(gen_app, name="gen")
    app.command("metrics")(metrics_command)
    app.add_typer(clf_app, name="clf")
    app.add_typer(study_app, name="study")
    app.add_typer(seg_app, name="seg")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cxrlab {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """cxrlab command line."""
    from cxrlab.utils.allocator import tune_allocator

    tune_allocator()  # fewer page faults per training step (see the module)


@app.command("demo")
@friendly_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for everything the demo makes.")
    ] = Path("runs/demo"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Cells run at the same time (default: 2 on a CPU of 2+ cores, else 1)."
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Run the demo study (studies/demo.yaml) on the bundled sample of real CXRs and
    write its HTML report (under 10 minutes on a 2-core CPU; rerun to resume)."""
    from cxrlab.demo import run_demo

    report = run_demo(out, progress=not quiet, device=device, log=typer.echo, workers=workers)
    typer.echo(f"report: {report.resolve()}")


def run() -> None:  # pragma: no cover - entry point for `python -m cxrlab`
    app(prog_name="cxrlab")
    sys.exit(0)


_register_subcommands()
reflow_help(app)
