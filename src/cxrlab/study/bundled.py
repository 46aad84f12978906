"""The spec files shipped with the package (``studies/`` in the repository)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cxrlab.errors import CxrlabError


def bundled_specs() -> dict[str, Path]:
    """name -> path of every spec shipped in ``cxrlab/studies``."""
    folder = Path(str(resources.files("cxrlab") / "studies"))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def resolve_spec(spec: str | Path) -> Path:
    """A spec file path, or the name of a bundled spec (``demo``, ``thesis``...)."""
    path = Path(spec)
    if path.is_file():
        return path
    bundled = bundled_specs()
    if str(spec) in bundled:
        return bundled[str(spec)]
    raise CxrlabError(
        f"study spec {spec} not found: give a YAML file or one of the bundled specs "
        f"({', '.join(bundled) or 'none installed'})"
    )
