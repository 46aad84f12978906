"""What the report reads of a study folder: :class:`Study` and :func:`load_study`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from cxrlab.errors import CxrlabError
from cxrlab.study.findings import (
    COLLAPSE_MS_SSIM_RATIO,
    MEMORIZATION_LIMIT,
    SELECTION_METRIC,
    Finding,
    GeneratorChecks,
    all_findings,
)


@dataclass
class Study:
    """What the report reads of a study folder.

    Attributes:
        root: the study folder.
        info: ``study.json`` (empty when missing).
        spec: ``spec.yaml`` (empty when missing).
        results: ``results.csv`` (empty when missing).
        notes: problems met while reading (shown in the report).
    """

    root: Path
    info: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)
    results: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    @property
    def axes(self) -> dict:
        axes = self.info.get("axes")
        return axes if isinstance(axes, dict) else {}

    @property
    def select_by(self) -> str:
        return str(self.info.get("select_by") or "swd")

    @property
    def classifier_selected_by(self) -> str:
        """What the best classifier cell is chosen by (study.json; validation ROC-AUC
        before it said, or with ``evaluation: split``)."""
        return str(self.info.get("classifier_selected_by") or SELECTION_METRIC)

    @property
    def checks(self) -> GeneratorChecks:
        """How the run checked its generators (study.json; the defaults before it said)."""
        return GeneratorChecks(
            self.info.get("collapse_ratio", COLLAPSE_MS_SSIM_RATIO),
            self.info.get("memorization_limit", MEMORIZATION_LIMIT),
        )

    @cached_property
    def findings(self) -> list[Finding]:
        """Every finding of the study (:func:`~cxrlab.study.findings.all_findings`, with
        the test-patient bootstrap from the cells' predictions), computed once: the
        summary and the pros and cons read the same ones."""
        return all_findings(
            self.results, self.axes, self.select_by, predictions=prediction_loader(self.root)
        )

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.spec.get("name") or self.root.name)

    def path(self, relative: str | Path) -> Path | None:
        """``root / relative`` when it stays inside the study folder, else None."""
        path = (self.root / relative).resolve()
        return path if path.is_relative_to(self.root.resolve()) else None


def load_study(study: str | Path) -> Study:
    """Read ``study.json``, ``spec.yaml`` and ``results.csv`` of a study folder.

    Raises:
        CxrlabError: ``study`` is not a folder, or not a study's.
    """
    root = Path(study)
    if not root.is_dir():
        raise CxrlabError(
            f"study folder {root} not found; run `cxrlab study run SPEC --out {root}`"
        )
    if not (root / "study.json").is_file() and not (root / "results.csv").is_file():
        raise CxrlabError(
            f"{root} is not a study folder (no study.json or results.csv); give the --out of "
            "`cxrlab study run`"
        )
    loaded = Study(root)
    if (root / "study.json").is_file():
        try:
            info = json.loads((root / "study.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            loaded.notes.append(f"study.json could not be read: {error}")
        else:
            if isinstance(info, dict):
                loaded.info = info
            else:
                loaded.notes.append("study.json does not hold an object; ignored")
    if (root / "spec.yaml").is_file():
        import yaml

        try:
            spec = yaml.safe_load((root / "spec.yaml").read_text(encoding="utf-8"))
            loaded.spec = spec if isinstance(spec, dict) else {}
        except (OSError, yaml.YAMLError) as error:
            loaded.notes.append(f"spec.yaml could not be read: {error}")
    if (root / "results.csv").is_file():
        try:
            loaded.results = pd.read_csv(root / "results.csv", keep_default_na=True)
        except (OSError, ValueError) as error:  # EmptyDataError is a ValueError
            loaded.notes.append(f"results.csv could not be read: {error}")
    return loaded


def prediction_loader(root: Path):
    """Reads a classifier cell's per-seed predictions (``eval-test``/``eval-external``)."""
    cache: dict[tuple[str, int, str], pd.DataFrame | None] = {}

    def load(folder: str, seed: int, split: str) -> pd.DataFrame | None:
        key = (folder, seed, split)
        if key not in cache:
            path = root / folder / f"eval-{split}" / f"seed_{seed}" / f"predictions_{split}.csv"
            cache[key] = pd.read_csv(path) if path.is_file() else None
        return cache[key]

    return load
