"""The spec files shipped with the package (``studies/`` in the repository)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cxrlab.errors import CxrlabError


def bundled_specs() -> dict[str, Path]:
    """name -> path of every spec shipped in ``cxrlab/studies``."""
    folder = Path(str(resources.files("cxrlab") / "studies"))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def spec_description(path: Path) -> str:
    """A spec's ``description`` on one line ("" when it has none or cannot be read)."""
    import yaml

    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return ""
    text = spec.get("description", "") if isinstance(spec, dict) else ""
    return " ".join(str(text or "").split())


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters at a word boundary, ending in "..." when cut."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    cut = text[: width - 3]
    if " " in cut and text[width - 3] != " ":
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "..."


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
