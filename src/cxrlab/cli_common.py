"""Pieces shared by every command group of the CLI."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from cxrlab.errors import CxrlabError

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


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
