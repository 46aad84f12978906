"""Typed run configurations written beside every run as ``config.yaml``."""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import ClassVar

import yaml

from cxrlab.errors import CxrlabError
from cxrlab.utils.fs import atomic_write_text


def config_defaults(cls) -> dict:
    """Field name -> default of a config dataclass (fields without one are left out): the
    CLI's option defaults come from here, so they cannot drift from the config's."""
    defaults = {}
    for item in fields(cls):
        if item.default is not MISSING:
            defaults[item.name] = item.default
        elif item.default_factory is not MISSING:
            defaults[item.name] = item.default_factory()
    return defaults


class YamlConfig:
    """Mixin for dataclass configs: ``as_dict``, ``write`` (atomic), ``from_dict``, ``read``.

    ``command`` names the CLI command whose run folders hold such a file (for errors).
    """

    command: ClassVar[str] = "cxrlab"
    #: What a run folder of this config is called in messages.
    run_kind: ClassVar[str] = "run"
    #: Fields that may differ between a run and its ``--resume`` (they do not change
    #: what is trained: where it runs, how long, how often it logs).
    resume_free_fields: ClassVar[tuple[str, ...]] = ("out", "device")

    def check_types(self) -> None:
        """Refuse a field whose value is not of its declared type (``epochs: two``), with
        one clear message instead of a comparison error deep inside. Whole numbers are
        accepted for float fields; ``None`` only where the type allows it."""
        hints = typing.get_type_hints(type(self))
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            expected = hints[item.name]
            if not _is_instance(value, expected):
                raise CxrlabError(f"{item.name} must be {_type_name(expected)}, got {value!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    def write(self, path: str | Path) -> None:
        atomic_write_text(path, yaml.safe_dump(self.as_dict(), sort_keys=False))

    def differences(self, other: YamlConfig) -> list[str]:
        """Names of the fields, other than :attr:`resume_free_fields`, that differ."""
        mine, theirs = self.as_dict(), other.as_dict()
        return [
            k
            for k in mine
            if k not in self.resume_free_fields and mine[k] != theirs.get(k, mine[k])
        ]

    def check_resume(self, recorded: YamlConfig, run: str | Path) -> None:
        """Refuse to continue the run recorded with ``recorded`` under changed settings.

        Raises:
            CxrlabError: naming every changed field.
        """
        changed = self.differences(recorded)
        if changed:
            detail = ", ".join(
                f"{k} ({getattr(recorded, k)!r} -> {getattr(self, k)!r})" for k in changed
            )
            raise CxrlabError(
                f"--resume: {run}/config.yaml differs in {detail}; resume with the same "
                f"options (only {', '.join(self.resume_free_fields)} may change) or choose "
                "another --out"
            )

    def guard_run_folder(
        self, run: str | Path, resume: bool, *, started: bool = True, force: bool = False
    ) -> None:
        """The run-folder rule every trainer follows: a started run (its ``config.yaml``
        and, per ``started``, at least one finished epoch or step) is never overwritten
        without ``--resume`` (or ``force``), and is resumed only with the same settings.

        Raises:
            CxrlabError: naming the folder and the fix, or every changed field.
        """
        run = Path(run)
        existing = run / "config.yaml"
        if not existing.is_file() or not started or force:
            return
        if not resume:
            raise CxrlabError(
                f"{run} already holds a {self.run_kind}; pass --resume to continue it or choose "
                "another --out"
            )
        self.check_resume(type(self).read(existing), run)

    @classmethod
    def from_dict(cls, values: dict):
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def read(cls, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise CxrlabError(
                f"{path} not found: is {path.parent} a run folder of `{cls.command}`?"
            )
        return cls.from_dict(yaml.safe_load(path.read_text()))


def _is_instance(value: object, expected: object) -> bool:
    """isinstance for the annotations configs use: int, float, str, bool, X | None, list[X]."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(expected) or (object,)
        return isinstance(value, (list, tuple)) and all(_is_instance(v, item) for v in value)
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected) if isinstance(expected, type) else True


def _type_name(expected: object) -> str:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(expected) if a is not type(None)]
        return " or ".join(names) + " (or null)"
    if origin is list:
        (item,) = typing.get_args(expected) or (object,)
        return f"a list of {_type_name(item)}"
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(
        expected, getattr(expected, "__name__", str(expected))
    )
