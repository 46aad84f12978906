"""The overwrite rule of every command that writes a folder or file.

A command never destroys what a user did not ask it to replace:

* ``--out`` may not be one of the command's inputs, lie inside one, or hold one
  (writing it would delete the input);
* an existing ``--out`` of another kind (a dataset where a PACKED is to be written,
  a generator run, a study, any folder cxrlab did not make) is refused;
* an existing ``--out`` of the same kind made with other settings is refused;

each unless ``--force`` is given, and the error says what is there. The check runs
before any work, so a refused command changes nothing on disk. A command that
writes one file (a PNG grid, a metrics JSON, an HTML report) uses
:func:`check_output_file`: an existing file is replaced only when it is of the kind
the command writes (``manifest.csv`` is never taken for a PNG), a folder never, and
a file of a folder cxrlab wrote (a dataset, a PACKED, a run, a study) never, not even
with ``--force``: a study's ``report.html`` is replaced by a rerun, its ``results.csv``
is not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from cxrlab.errors import CxrlabError

#: What :func:`folder_kind` calls each kind of folder cxrlab writes.
DATASET = "dataset"
PACKED = "packed dataset"
GENERATOR_RUN = "generator run"
CLASSIFIER_RUN = "classifier run"
STUDY = "study"
IMAGES = "image folder"
MASKS = "mask folder"
SEGMENTATION_RUN = "segmentation run"
EVALUATION = "classifier evaluation"
STATS = "stats folder"
EMPTY = "empty folder"
OTHER = "folder cxrlab did not write"
FILE = "file"


#: Folders whose own files a one-file output never replaces, not even with ``--force``.
OWNED_FOLDERS = frozenset(
    {DATASET, PACKED, GENERATOR_RUN, CLASSIFIER_RUN, STUDY, MASKS, SEGMENTATION_RUN,
     EVALUATION, STATS}
)  # fmt: skip


class OutputError(CxrlabError):
    """``--out`` would replace an input or a folder the user did not ask to replace."""


def folder_kind(path: str | Path) -> str | None:
    """What ``path`` holds: one of the kinds above, or None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_dir():
        return FILE
    names = {p.name for p in path.iterdir() if not p.name.startswith(".")}
    if not names:
        return EMPTY
    if "meta.json" in names:
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        if isinstance(meta, dict) and meta.get("format") == "cxrlab-packed":
            return PACKED
    if "manifest.csv" in names and ("dataset.json" in names or "rejects.csv" in names):
        return DATASET
    if "study.json" in names or ("spec.yaml" in names and "results.csv" in names):
        return STUDY
    if "stats.json" in names and "class_balance.png" in names:
        return STATS
    if "masks.csv" in names:
        return MASKS
    if "config.yaml" in names:
        text = (path / "config.yaml").read_text(errors="replace")
        if "\nsegmenter:" in f"\n{text}":
            return SEGMENTATION_RUN
        if "\narch:" in f"\n{text}":
            return CLASSIFIER_RUN
        if "\nmodel:" in f"\n{text}":
            return GENERATOR_RUN
        return OTHER
    if {"metrics.json", "report.txt"} <= names and any(n.startswith("seed_") for n in names):
        return EVALUATION
    pictures = names - {"provenance.json"}  # what `gen sample` writes beside its images
    suffixes = {Path(name).suffix.lower() for name in pictures}
    if suffixes <= {".png", ".jpg", ".jpeg"} and all((path / n).is_file() for n in pictures):
        return IMAGES
    return OTHER


def _a(kind: str) -> str:
    """``kind`` with its indefinite article: "an image folder", "a dataset"."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _related(out: Path, source: Path) -> str | None:
    """How ``out`` overlaps ``source``: ``is``, ``is inside``, ``holds`` or None."""
    if out == source:
        return "is"
    if out.is_relative_to(source):
        return "is inside"
    if source.is_relative_to(out):
        return "holds"
    return None


def check_output(
    out: str | Path,
    *,
    kind: str,
    inputs: Iterable[str | Path | None] = (),
    force: bool = False,
    same_settings: bool | None = None,
    option: str = "--out",
) -> str | None:
    """Refuse an ``out`` that would destroy an input or another kind of folder.

    Args:
        out: the folder (or file) the command is about to write.
        kind: what the command writes (:data:`PACKED`, :data:`DATASET`...).
        inputs: the command's inputs; ``out`` may not be, lie inside or hold any of them
            (never allowed, not even with ``force``).
        force: allow replacing an existing ``out`` of another kind or other settings.
        same_settings: for an existing ``out`` of the same kind, whether it was made
            with the same settings (None: the caller does not know, same as True).
        option: the option's name in messages.

    Returns:
        The kind of what ``out`` holds now (None: nothing there).

    Raises:
        OutputError: naming ``out``, what is there, and the fix.
    """
    target = Path(out).resolve()
    for source in inputs:
        if source is None:
            continue
        source_path = Path(source).resolve()
        relation = _related(target, source_path)
        if relation is not None:
            raise OutputError(
                f"{option} {out} {relation} the input {source}; writing it would destroy the "
                f"input: choose another {option}"
            )
    existing = folder_kind(target)
    if existing in (None, EMPTY) or force:
        return existing
    if existing != kind:
        if existing == FILE:
            raise OutputError(f"{option} {out} is a file; give a folder path (or --force)")
        raise OutputError(
            f"{option} {out} already holds {_a(existing)}, not {_a(kind)}; choose another "
            f"{option}, or pass --force to replace it"
        )
    if same_settings is False:
        raise OutputError(
            f"{option} {out} already holds {_a(kind)} made with other settings or inputs; "
            f"choose another {option}, or pass --force to replace it"
        )
    return existing


def check_output_file(
    out: str | Path,
    *,
    what: str,
    is_kind: Callable[[Path], bool],
    inputs: Iterable[str | Path | None] = (),
    force: bool = False,
    option: str = "--out",
) -> None:
    """Refuse a one-file ``out`` that would destroy an input, a folder or another file.

    Args:
        out: the file the command is about to write.
        what: what the command writes, for messages ("a PNG image", "an HTML report").
        is_kind: whether an existing file at ``out`` is such a file (then it may be
            replaced, as a rerun would).
        inputs: the command's inputs; ``out`` may not be or lie inside any of them.
        force: allow replacing an existing file of another kind.

    Raises:
        OutputError: naming ``out``, what is there, and the fix.
    """
    path = Path(out)
    if path.is_dir():
        raise OutputError(f"{option} {out} is a folder; give the path of {what} to write")
    check_output(path, kind=FILE, inputs=inputs, force=True, option=option)
    if not path.is_file() or is_kind(path):
        return
    # A file of a folder cxrlab wrote (a dataset's manifest.csv, a study's results.csv or
    # spec.yaml, a run's config.yaml) is part of that folder: replacing it breaks the
    # folder, so --force does not apply and is not suggested.
    owner = folder_kind(path.parent.resolve())
    if owner in OWNED_FOLDERS:
        raise OutputError(
            f"{option} {out} is a file of {_a(owner)} ({path.parent}) and is not {what}; "
            f"replacing it would break the {owner}: choose another {option}"
        )
    if not force:
        raise OutputError(
            f"{option} {out} already exists and is not {what}; choose another {option}, "
            "or pass --force to replace it"
        )


def starts_with(prefix: bytes) -> Callable[[Path], bool]:
    """A file test for :func:`check_output_file`: the file's first bytes are ``prefix``."""

    def test(path: Path) -> bool:
        with open(path, "rb") as handle:
            return handle.read(len(prefix)) == prefix

    return test


#: PNG files begin with these 8 bytes.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
