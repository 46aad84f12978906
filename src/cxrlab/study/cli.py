"""``cxrlab study``: run a whole comparison from one spec, and report it as one HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrlab.cli_common import Quiet, friendly_errors, report_interrupt
from cxrlab.study.bundled import bundled_specs

app = typer.Typer(
    help="Run a grid of preprocessing / generator / classifier settings from one YAML spec "
    "(resumable), and write one self-contained HTML report.",
    no_args_is_help=True,
)


@app.command("run")
@friendly_errors
def run(
    spec: Annotated[
        str,
        typer.Argument(
            help="Spec YAML file, or a bundled spec by name: "
            f"{', '.join(bundled_specs())} (see `cxrlab study list`)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Study folder.")],
    device: Annotated[
        str, typer.Option(help="auto, cpu or cuda; overrides the spec's device settings.")
    ] = "auto",
    report: Annotated[
        bool, typer.Option(help="Write STUDY/report.html when the study finishes.")
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Cells run at the same time, each in its own process with one GPU (round "
            "robin over the visible ones) and its share of the CPU cores; 1 (the default) "
            "runs them one after another here. With --executor ray: tasks at once (default "
            "0: as many as the cluster places).",
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="local (a process pool of --workers) or ray (Ray tasks, one GPU each on "
            "CUDA; needs pip install 'cxrlab\\[ray]').",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join (with --executor ray; default: start one here)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the plan (every cell, done or to run) and write nothing."
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Run every cell of SPEC into OUT; rerun the same command to continue after an
    interruption (finished cells are skipped, unfinished ones resume from checkpoints).
    It prints the plan first (cells done and to run), then a line per cell with the
    count done of the total."""
    from cxrlab.study.bundled import resolve_spec
    from cxrlab.study.runner import run_study

    again = f"cxrlab study run {spec} --out {out}"
    again += f" --workers {workers}" if workers is not None else ""
    again += f" --executor {executor}" if executor != "local" else ""
    again += f" --address {address}" if address else ""
    with report_interrupt(out, again, kept="*.pt"):
        result = run_study(
            resolve_spec(spec),
            out,
            device=device,
            progress=not quiet,  # bars of cells run in this process (--workers 1)
            log=typer.echo,
            workers=workers,
            executor=executor,
            address=address,
            dry_run=dry_run,
        )
    if dry_run:
        return
    typer.echo(result.summary())
    if report:
        from cxrlab.study.report import write_report

        typer.echo(f"report: {write_report(out)}")


@app.command("report")
@friendly_errors
def report(
    study: Annotated[Path, typer.Argument(help="Study folder of `cxrlab study run`.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file (default STUDY/report.html).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace an existing --out file that is not a cxrlab report.")
    ] = False,
) -> None:
    """Write one self-contained HTML page (images embedded) from a study folder."""
    from cxrlab.study.report import write_report

    typer.echo(f"wrote {write_report(study, out, force=force)}")


@app.command("list")
def list_specs() -> None:
    """List the specs bundled with cxrlab, each with its description."""
    import shutil

    from cxrlab.study.bundled import bundled_specs, shorten, spec_description

    specs = bundled_specs()
    width = max((len(name) for name in specs), default=0) + 2
    columns = shutil.get_terminal_size((100, 24)).columns
    room = max(columns - width - 1, 20)
    for name, path in specs.items():
        typer.echo(f"{name:{width}s}{shorten(spec_description(path), room)}".rstrip())
    if specs:
        folder = next(iter(specs.values())).parent
        typer.echo(f"(files in {folder})")
