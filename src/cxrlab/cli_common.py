"""Pieces shared by every command group of the CLI."""

from __future__ import annotations

import functools
import inspect
from enum import Enum
from typing import Annotated

import typer
from typer.core import TyperCommand

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


def friendly_errors(function):
    """Turn cxrlab's own errors into one red line and exit code 2 (no traceback)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except CxrlabError as error:
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None

    return wrapper


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
