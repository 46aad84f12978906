"""Pieces shared by every command group of the CLI."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from cxrlab.errors import CxrlabError

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Workers = Annotated[
    int | None, typer.Option(help="Decoding threads (default: all cores, or $CXRLAB_WORKERS).")
]
Force = Annotated[
    bool,
    typer.Option(
        help="Replace an existing --out of another kind or made with other settings "
        "(never one of the inputs)."
    ),
]


class LabelChoice(str, Enum):
    """The two classes a command may be restricted to (covid 1 / 0)."""

    positive = "positive"
    negative = "negative"


def covid_value(label: LabelChoice | None) -> int | None:
    """``positive`` -> 1, ``negative`` -> 0, None -> None (both classes)."""
    return None if label is None else int(label == LabelChoice.positive)


ERROR_PREFIX = "error: "


def print_error(message: str) -> None:
    """The one form every error takes on the terminal: one red ``error: ...`` line."""
    typer.secho(f"{ERROR_PREFIX}{message}", fg=typer.colors.RED, err=True)


class OneLineErrorsGroup(TyperGroup):
    """The root command group: usage errors (an unknown option, a bad value, a missing
    argument) print as one red ``error: ...`` line like cxrlab's own errors, with the
    command whose ``--help`` lists the options, instead of click's boxed ``Error`` panel
    (or its ``Error:`` line where rich is absent); exit code 2 as before."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        # typer exports BadParameter only; its base is click's ClickException
        from typer._click.exceptions import ClickException

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as error:
            if type(error).__name__ == "NoArgsIsHelpError":
                # the help is the answer to a bare command (rich printed it already)
                from typer.core import HAS_RICH

                if not HAS_RICH or self.rich_markup_mode is None:
                    error.show()
                raise SystemExit(error.exit_code) from None
            context = getattr(error, "ctx", None)
            hint = f" (see `{context.command_path} --help`)" if context is not None else ""
            print_error(f"{error.format_message()}{hint}")
            raise SystemExit(error.exit_code) from None
        except typer.Abort:
            print_error("aborted")
            raise SystemExit(1) from None
        raise SystemExit(code if isinstance(code, int) else 0)


def friendly_errors(function):
    """Turn cxrlab's own errors into one red line and exit code 2 (no traceback)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except CxrlabError as error:
            print_error(str(error))
            raise typer.Exit(code=2) from None

    return wrapper


@contextmanager
def report_interrupt(out: str | Path, resume_command: str, kept: str = "*.pt") -> Iterator[None]:
    """On Ctrl-C, say where the work stopped, what was kept and the command that goes on.

    Args:
        out: the folder being written.
        resume_command: the command that continues the work.
        kept: the glob (under ``out``, at any depth) of the files a resume starts from.

    Raises:
        typer.Exit: code 130, as a shell reports Ctrl-C, after the message.
    """
    try:
        yield
    except KeyboardInterrupt:
        out = Path(out)
        found = [p for p in out.rglob(kept) if p.is_file()] if out.is_dir() else []
        newest = max(found, key=lambda p: p.stat().st_mtime_ns) if found else None
        what = f"the newest checkpoint is {newest}" if newest else "no checkpoint was written yet"
        typer.secho(
            f"interrupted: {out} keeps what was finished; {what}. Continue with: {resume_command}",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(code=130) from None


def given_options(context: typer.Context) -> set[str]:
    """Names of the command's parameters given on the command line (or in the
    environment), as opposed to left at their defaults."""
    given = ("COMMANDLINE", "ENVIRONMENT")
    return {
        name
        for name in context.params
        if getattr(context.get_parameter_source(name), "name", None) in given
    }


def with_recorded_settings(
    values: dict[str, Any],
    recorded: Mapping[str, Any] | None,
    given: set[str],
    field_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A resumed run's settings: what the command line gave, the recorded run's for the rest.

    Args:
        values: the config's fields as the command line (with its defaults) set them.
        recorded: the run's recorded ``config.yaml`` as a dict (None: a new run).
        given: option names given on the command line (:func:`given_options`).
        field_of: option name -> config field where they differ (``size`` -> ``size_px``).

    Returns:
        ``values`` with every field no given option set taken from ``recorded``, so that
        ``--out RUN --resume`` alone continues a run with its own settings.
    """
    if recorded is None:
        return values
    field_of = field_of or {}
    set_on_command_line = {field_of.get(name, name) for name in given}
    return {
        name: (value if name in set_on_command_line or name not in recorded else recorded[name])
        for name, value in values.items()
    }


def recorded_config(out: str | Path, resume: bool) -> dict | None:
    """The ``config.yaml`` of the run in ``out`` when resuming it, else None."""
    import yaml

    path = Path(out) / "config.yaml"
    if not resume or not path.is_file():
        return None
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CxrlabError(f"--resume: cannot read {path} ({error}); choose another --out") from None
    return values if isinstance(values, dict) else None


def warn(warnings: list[str]) -> None:
    """Print each warning as one loud yellow line on stderr."""
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


def _is_number_list(argument: str) -> bool:
    parts = [p for p in argument.split(",") if p]
    try:
        [float(p) for p in parts]
    except ValueError:
        return False
    return bool(parts)


#: Options that take several numbers after one flag.
LIST_OPTIONS = ("--ratios", "--seeds")


class ListOptionsCommand(TyperCommand):
    """Accepts ``--seeds 0 1 2``, ``--seeds 0,1,2``, ``--seeds=0,1,2`` and repeated flags
    for the options of :data:`LIST_OPTIONS`.

    Click options take a fixed number of values, so the numbers following such a flag
    (and every repetition of it) are joined into one comma-separated value before
    parsing; the command reads it with :func:`numbers`.
    """

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        collected: dict[str, list[str]] = {}
        index = 0
        while index < len(args):
            argument = args[index]
            index += 1
            name, equals, inline = argument.partition("=")
            if name not in LIST_OPTIONS:
                rewritten.append(argument)
                continue
            values = collected.setdefault(name, [])
            if equals:
                values.append(inline)
            elif index < len(args) and not args[index].startswith("-"):
                # the value, numbers or not: `--seeds a,b` is then refused as not numbers
                # (it was left to the positional arguments, and the flag had none)
                values.append(args[index])
                index += 1
            while index < len(args) and _is_number_list(args[index]):
                values.append(args[index])
                index += 1
        for name, values in collected.items():
            rewritten += [name, ",".join(values)] if values else [name]
        return super().parse_args(ctx, rewritten)


def numbers(text: str, kind: type = float, option: str = "option") -> list:
    """``"0.6,0.2,0.2"`` -> ``[0.6, 0.2, 0.2]`` (``kind`` int for seeds).

    Raises:
        typer.BadParameter: naming ``option`` when a value is not a number of that kind.
    """
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list of numbers", param_hint=option) from None


def reflow(text: str) -> str:
    """A docstring as help text: the lines of each paragraph joined into one (a terminal
    wraps them at its own width), paragraphs and list items (``- ``, ``* ``) kept."""
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            line = line.strip()
            if lines and not line.startswith(("- ", "* ")):
                lines[-1] += " " + line
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Give every command of ``app`` (and of its groups) its docstring reflowed as help:
    typer's rich help keeps a docstring's line breaks, which break sentences mid-way."""
    for info in app.registered_commands:
        text = info.help if info.help is not None else inspect.getdoc(info.callback)
        if text:
            info.help = reflow(text)
    for group in app.registered_groups:
        reflow_help(group.typer_instance)
