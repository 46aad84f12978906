"""Typed run configurations written beside every run as ``config.yaml``."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import ClassVar

import yaml

from cxrlab.errors import CxrlabError
from cxrlab.utils.fs import atomic_write_text


class YamlConfig:
    """Mixin for dataclass configs: ``as_dict``, ``write`` (atomic), ``from_dict``, ``read``.

    ``command`` names the CLI command whose run folders hold such a file (for errors).
    """

    command: ClassVar[str] = "cxrlab"

    def as_dict(self) -> dict:
        return asdict(self)

    def write(self, path: str | Path) -> None:
        atomic_write_text(path, yaml.safe_dump(self.as_dict(), sort_keys=False))

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
