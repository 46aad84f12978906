"""A study spec: one YAML file that names a whole comparison.

A spec has up to seven sections; every field shown as a list is a *grid axis* (a scalar is
a one-level axis) and the runner crosses the axes of a section::

    name: demo
    description: what this study asks
    evaluation: split           # or leave-site-out: also folds of whole sites (clf train
                                # --cv sites), the best cell chosen by mean out-of-site AUC
    data:                       # a `cxrlab data build` spec: where the images come from
      sources:
        - format: sample        # or ieee8023, covidx, folders, figure1, actualmed, rsna
          path: null            # relative paths are relative to the spec file
      dedup: false
      split: {ratios: [0.6, 0.2, 0.2], seed: 0, holdout_source: null}
    preprocess:                 # cxrlab data preprocess options
      size: [64]
      equalize: [none, clahe]
      lungs: [none, crop]       # crop/mask variants need lung_masks (a MASKS folder:
      lung_masks: masks         # `cxrlab seg predict`), relative to the spec or $VAR
    generators:                 # optional: trained per preprocessing variant
      runs:                     # named settings of `cxrlab gen train`
        - {name: dcgan-diffaug, model: dcgan, diffaug: "translation,cutout", ema: 0.999}
      augment: [none]           # axis: classical augmentation of real batches
      label: positive
      steps: 300
      metrics: [swd, diversity]   # what the checks below read is measured whatever this lists
      select_by: swd            # which generator of a variant is "best", on validation images
      collapse_ratio: 1.5       # generated MS-SSIM above 1.5x real's: collapsed, never chosen
      memorization_limit: 0.1   # more near-copies of training images than this share: never
                                # chosen; a generator lacking a value a check reads neither
    synthetic:
      amounts: [0, 100]         # synthetic COVID-positive images added to training
      from: best                # or a generator run name (checked the same way)
      control: true             # also each amount as real positives oversampled (control arm)
    classifier:                 # `cxrlab clf train` options; lists are axes
      recipe: [baseline, transfer]   # clf train --recipe: options a cell does not set
      arch: [simple-cnn]
      augment: [none, mild]
      epochs: 8
      seeds: [0, 1, 2]
      explain: 8                # Grad-CAM images per seed of each cell
      folds: 5                  # evaluation leave-site-out only: folds of whole sites

Anything a section does not name takes the command's default; a ``recipe`` sets
every option of its row (:mod:`cxrlab.clf.recipes`) that the classifier section does
not name.

Synthetic images under ``evaluation: leave-site-out``: the ordinary (split) model of a
cell draws them from the variant's chosen generator as always, but no fold may: that
generator learned every train site, the held-out ones too. Each fold instead trains
its own generator, with the chosen one's settings, on that fold's training rows only
(its held-out sites never enter it), draws the cell's amount from it, and adds them to
that fold's training only; the control arm oversamples as many of the fold's real
positives. Fold generators are shared by every cell of the variant.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cxrlab.clf.config import ClfConfig
from cxrlab.errors import CxrlabError
from cxrlab.gen.config import GenConfig
from cxrlab.gen.models import model_names
from cxrlab.preprocess.transforms import PreprocessOptions

#: Preprocessing fields a spec may set, spec name -> PreprocessOptions field.
PREPROCESS_FIELDS = {
    "size": "size_px",
    "resize": "resize",
    "crop_top": "crop_top",
    "equalize": "equalize",
    "clahe_clip": "clahe_clip",
    "clahe_grid": "clahe_grid",
    "gamma": "gamma",
    "bit_depth": "bit_depth",
    "lungs": "lungs",
    "lung_margin": "lung_margin",
}
#: ``preprocess`` keys that are one setting, not an axis: the MASKS folder (``cxrlab seg
#: predict``) that ``lungs: crop`` or ``mask`` variants read.
PREPROCESS_SETTINGS = ("lung_masks",)
#: Classifier fields that may be grid axes (the others are plain settings).
CLASSIFIER_AXES = ("recipe", "arch", "augment", "balance", "standardize", "head", "pretrained")
#: GenConfig fields a spec may not set: the runner decides them.
_GEN_RUNNER_FIELDS = {"data", "out", "size_px", "augment", "resume"}
#: ``generators`` keys that set how the best generator is checked, not how it trains.
_CHECK_KEYS = ("collapse_ratio", "memorization_limit")
_CLF_RUNNER_FIELDS = {"data", "out", "synthetic", "synthetic_ratio", "cv", "splits_file"}
#: How a study evaluates its classifier cells (spec ``evaluation``): ``split``, the
#: dataset's own validation split; ``leave-site-out``, also folds of whole sites
#: (:mod:`cxrlab.clf.cv`), the best cell then chosen by mean out-of-site AUC.
EVALUATIONS = ("split", "leave-site-out")
LEAVE_SITE_OUT = "leave-site-out"


class SpecError(CxrlabError):
    """The spec file is malformed; the message names the file and the field."""


def as_levels(value: Any) -> list:
    """A grid axis: a list stays a list, a scalar becomes a one-level list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _slug(value: Any) -> str:
    text = "none" if value is None else str(value)
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text)


@dataclass(frozen=True)
class Variant:
    """One preprocessing variant: its values by spec field name, in spec order."""

    values: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        """``64px-clahe``; further axes append ``-field_value``."""
        settings = dict(self.values)
        parts = [f"{settings['size']}px", _slug(settings.get("equalize", "none"))]
        parts += [
            f"{key}_{_slug(value)}" for key, value in self.values if key not in ("size", "equalize")
        ]
        return "-".join(parts)

    def options(self) -> PreprocessOptions:
        return PreprocessOptions(**{PREPROCESS_FIELDS[k]: v for k, v in self.values})


@dataclass(frozen=True)
class GeneratorSetting:
    """A named generator run: the family and its `cxrlab gen train` settings."""

    name: str
    settings: dict


@dataclass
class StudySpec:
    """A parsed and checked spec (see the module doc for the file format)."""

    path: Path
    name: str
    description: str
    data: dict
    split: dict
    preprocess_axes: dict[str, list]
    generators: list[GeneratorSetting]
    gen_augment: list[str | None]
    gen_settings: dict
    select_by: str
    collapse_ratio: float | None
    memorization_limit: float | None
    synthetic_amounts: list[int]
    synthetic_from: str
    synthetic_label: str
    synthetic_control: bool
    classifier_axes: dict[str, list]
    classifier_settings: dict
    explain: int
    evaluation: str = "split"
    folds: int | None = None
    lung_masks: str | None = None
    raw: dict = field(repr=False, default_factory=dict)

    def lung_masks_path(self) -> Path | None:
        """``preprocess.lung_masks`` with ``$VARIABLES`` expanded, relative to the spec."""
        import os

        if self.lung_masks is None:
            return None
        expanded = os.path.expandvars(self.lung_masks)
        if "$" in expanded:
            raise SpecError(
                f"{self.path}: preprocess.lung_masks {self.lung_masks!r} names an unset "
                "environment variable; set it or edit the path"
            )
        return self.base / expanded

    @property
    def checks(self):
        """The :class:`~cxrlab.study.findings.GeneratorChecks` of ``collapse_ratio`` and
        ``memorization_limit``."""
        from cxrlab.study.findings import GeneratorChecks

        return GeneratorChecks(self.collapse_ratio, self.memorization_limit)

    @property
    def base(self) -> Path:
        """The folder relative paths in the spec are relative to."""
        return self.path.parent

    def variants(self) -> list[Variant]:
        keys = list(self.preprocess_axes)
        return [
            Variant(tuple(zip(keys, combo, strict=True)))
            for combo in itertools.product(*self.preprocess_axes.values())
        ]

    def classifier_grid(self) -> list[dict]:
        """Every combination of the classifier axes and synthetic amounts; with
        ``synthetic.control``, each amount also as its control arm (``control: True``:
        that many real positives oversampled instead of synthetic images). Amounts
        vary slowest: every setting on real images comes first, so a study stopped
        early has compared its settings before any synthetic arm."""
        keys = list(self.classifier_axes)
        grid = []
        for amount in self.synthetic_amounts:
            for combo in itertools.product(*self.classifier_axes.values()):
                values = dict(zip(keys, combo, strict=True))
                grid.append({**values, "synthetic": amount, "control": False})
                if self.synthetic_control and amount > 0:
                    grid.append({**values, "synthetic": amount, "control": True})
        return grid


def classifier_values(settings: dict, values: dict) -> dict:
    """The :class:`~cxrlab.clf.config.ClfConfig` fields of a classifier cell: the
    section's plain ``settings`` and the cell's axis ``values``, then its ``recipe``
    (when one is named) filling every option neither of them sets, as ``clf train
    --recipe`` does (:func:`cxrlab.clf.recipes.with_recipe`).

    Raises:
        CxrlabError: an unknown recipe.
    """
    from cxrlab.clf.recipes import with_recipe

    merged = {**settings, **values}
    recipe = merged.pop("recipe", None)
    if recipe is None:
        return merged
    return with_recipe(str(recipe), merged, set(merged))


def _section(raw: dict, name: str, path: Path, required: bool = False) -> dict:
    value = raw.get(name)
    if value is None:
        if required:
            raise SpecError(f"{path}: the spec needs a '{name}' section")
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{path}: '{name}' must be a mapping, got {type(value).__name__}")
    return dict(value)


def _check_keys(section: dict, allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise SpecError(
            f"{path}: unknown field(s) {', '.join(unknown)} in '{where}'; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


class _Problems:
    """Collects every problem of a spec, so one run of ``load_spec`` names them all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def check(self, function, *args, **kwargs):
        """Run a check; a SpecError it raises is recorded (None returned) instead."""
        try:
            return function(*args, **kwargs)
        except SpecError as error:
            self.add(str(error).removeprefix(f"{self.path}: "))
            return None

    def raise_any(self) -> None:
        if len(self.messages) == 1:
            raise SpecError(f"{self.path}: {self.messages[0]}")
        if self.messages:
            listed = "".join(f"\n  - {m}" for m in self.messages)
            raise SpecError(f"{self.path}: {len(self.messages)} problems:{listed}")


def _parse_generators(section: dict, path: Path) -> tuple[list[GeneratorSetting], dict]:
    runs = section.pop("runs", None) or []
    if not isinstance(runs, list):
        raise SpecError(f"{path}: 'generators.runs' must be a list of named settings")
    allowed = set(GenConfig.__dataclass_fields__) - _GEN_RUNNER_FIELDS
    settings = {k: v for k, v in section.items() if k not in ("augment", "select_by", *_CHECK_KEYS)}
    _check_keys(settings, allowed, "generators", path)
    if isinstance(settings.get("metrics"), str):  # "swd, diversity" as well as a list
        settings["metrics"] = _metric_names(settings["metrics"])
    generators, names = [], set()
    for number, entry in enumerate(runs, start=1):
        if isinstance(entry, str):
            entry = {"name": entry, "model": entry}
        entry = dict(entry)
        name = str(entry.pop("name", entry.get("model", "")))
        if not name or "model" not in entry:
            raise SpecError(f"{path}: generators.runs[{number}] needs a 'model' (and a 'name')")
        if name in names:
            raise SpecError(f"{path}: two generator runs are named {name!r}; names must differ")
        names.add(name)
        _check_keys(entry, allowed, f"generators.runs[{number}] ({name})", path)
        if isinstance(entry.get("metrics"), str):
            entry["metrics"] = _metric_names(entry["metrics"])
        if entry["model"] not in model_names():
            raise SpecError(
                f"{path}: generators.runs[{number}] ({name}): unknown model {entry['model']!r}; "
                f"choose one of {', '.join(model_names())}"
            )
        try:
            GenConfig(data="", out="", **{**settings, **entry})
        except (CxrlabError, TypeError) as error:
            raise SpecError(f"{path}: generators.runs[{number}] ({name}): {error}") from None
        generators.append(GeneratorSetting(name, entry))
    return generators, settings


def _metric_names(value: Any) -> list[str]:
    names = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(n).strip() for n in names if str(n).strip()]


def _check_selection(
    generators: list[GeneratorSetting],
    settings: dict,
    select_by: str,
    path: Path,
    checked: tuple[str, ...] = (),
) -> None:
    """``select_by`` must be a comparable value that every generator measures.

    A generator without ``metrics`` measures ``select_by``'s metric; every generator also
    measures ``diversity`` (the collapse check) and the metrics of ``checked`` (those
    the generator checks that are on read: ``memorization`` with a
    ``memorization_limit``), added here whatever the spec lists, so that no generator
    passes a check for lack of a value. All of them are pixel-based and cheap: they
    need no weights.
    """
    from cxrlab.metrics.registry import VALUES, metric_of_value, value_info

    info = value_info(select_by)
    if info is None or not info.comparable:
        comparable = sorted(v.name for v in VALUES.values() if v.comparable)
        raise SpecError(
            f"{path}: generators.select_by {select_by!r} is not a value generators can be "
            f"chosen by; choose one of {', '.join(comparable)}"
        )
    wanted = metric_of_value(select_by)
    common = _metric_names(settings.get("metrics"))
    for generator in generators:
        names = _metric_names(generator.settings.get("metrics", settings.get("metrics")))
        if not names:
            names = [wanted]
        elif wanted not in names:
            raise SpecError(
                f"{path}: generators.select_by is {select_by!r}, but generator "
                f"{generator.name!r} measures only {', '.join(names)}; add {wanted!r} to its "
                "metrics or choose by one of them"
            )
        generator.settings["metrics"] = list(dict.fromkeys([*names, "diversity", *checked]))
    if common and wanted not in common:
        settings["metrics"] = list(dict.fromkeys([*common, "diversity", *checked]))


def _check_synthetic_label(
    generators: list[GeneratorSetting], settings: dict, label: str, path: Path
) -> None:
    """Every generator synthetic images may come from must draw ``label`` images."""
    from cxrlab.gen.models import build_model
    from cxrlab.gen.sampling import sampling_label

    conditional: dict[str, bool] = {}
    for generator in generators:
        model = generator.settings["model"]
        if model not in conditional:
            conditional[model] = build_model(model, 32).conditional
        trained = generator.settings.get("label", settings.get("label"))
        try:
            sampling_label(conditional[model], trained, label)
        except CxrlabError as error:
            raise SpecError(
                f"{path}: synthetic.label {label!r} and generator {generator.name!r}: {error}"
            ) from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and check a spec file: types, values, source formats, and that the choices
    it asks for can be made; every problem is named (the file, the field), all at once,
    in one :class:`SpecError` before anything is written."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"study spec {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a study spec is a mapping of sections")
    problems = _Problems(path)
    problems.check(
        _check_keys,
        raw,
        {
            "name",
            "description",
            "data",
            "evaluation",
            "preprocess",
            "generators",
            "synthetic",
            "classifier",
        },
        "the top level",
        path,
    )
    data = problems.check(_section, raw, "data", path, required=True) or {}
    split = dict(data.pop("split", None) or {})
    problems.check(
        _check_keys, split, {"ratios", "seed", "holdout_source", "holdout_site"}, "data.split", path
    )
    sources = data.get("sources")
    if not sources:
        problems.add("'data.sources' must list at least one source")
    else:
        from cxrlab.data.sources import IMPORTERS

        for number, source in enumerate(as_levels(sources), start=1):
            form = source.get("format") if isinstance(source, dict) else None
            if form not in IMPORTERS:
                problems.add(
                    f"data.sources[{number}]: unknown format {form!r}; choose one of "
                    f"{', '.join(sorted(IMPORTERS))}"
                )

    preprocess = problems.check(_section, raw, "preprocess", path) or {}
    problems.check(
        _check_keys, preprocess, {*PREPROCESS_FIELDS, *PREPROCESS_SETTINGS}, "preprocess", path
    )
    lung_masks = preprocess.get("lung_masks")
    if lung_masks is not None and not isinstance(lung_masks, str):
        problems.add(f"preprocess.lung_masks must be a folder path, got {lung_masks!r}")
        lung_masks = None
    if lung_masks is None and any(
        level not in (None, "none") for level in as_levels(preprocess.get("lungs", "none"))
    ):
        problems.add(
            f"preprocess.lungs {preprocess.get('lungs')!r} needs preprocess.lung_masks: a "
            "MASKS folder with a lung mask per image (`cxrlab seg predict SEG --data DATASET "
            "--out MASKS`)"
        )
    preprocess = {k: v for k, v in preprocess.items() if k in PREPROCESS_FIELDS}
    preprocess.setdefault("size", 64)
    axes = {k: as_levels(preprocess[k]) for k in PREPROCESS_FIELDS if k in preprocess}
    for variant_values in itertools.product(*axes.values()):
        values = dict(zip(axes, variant_values, strict=True))
        try:
            PreprocessOptions(**{PREPROCESS_FIELDS[k]: v for k, v in values.items()})
        except (CxrlabError, TypeError, ValueError) as error:
            problems.add(f"preprocess {values}: {error}")
            break

    gen_section = problems.check(_section, raw, "generators", path) or {}
    gen_augment = [
        None if a in (None, "none") else a for a in as_levels(gen_section.get("augment"))
    ]
    select_by = str(gen_section.get("select_by", "swd"))
    from cxrlab.study.findings import COLLAPSE_MS_SSIM_RATIO, MEMORIZATION_LIMIT

    collapse_ratio = gen_section.get("collapse_ratio", COLLAPSE_MS_SSIM_RATIO)
    if collapse_ratio is not None and (
        isinstance(collapse_ratio, bool)
        or not isinstance(collapse_ratio, (int, float))
        or collapse_ratio <= 1
    ):
        problems.add(
            f"generators.collapse_ratio must be a number above 1 (or null: no collapse "
            f"check), got {collapse_ratio!r}"
        )
    memorization_limit = gen_section.get("memorization_limit", MEMORIZATION_LIMIT)
    if memorization_limit is not None and (
        isinstance(memorization_limit, bool)
        or not isinstance(memorization_limit, (int, float))
        or not 0 <= memorization_limit < 1
    ):
        problems.add(
            "generators.memorization_limit must be a share in [0, 1) (or null: no "
            f"memorization check), got {memorization_limit!r}"
        )
    generators, gen_settings = problems.check(_parse_generators, gen_section, path) or ([], {})

    synthetic = problems.check(_section, raw, "synthetic", path) or {}
    problems.check(
        _check_keys, synthetic, {"amounts", "from", "label", "control"}, "synthetic", path
    )
    amounts: list[int] = []
    try:
        amounts = [int(a) for a in as_levels(synthetic.get("amounts", 0))]
    except (TypeError, ValueError):
        problems.add(f"synthetic.amounts must be whole numbers, got {synthetic.get('amounts')!r}")
    if any(a < 0 for a in amounts):
        problems.add(f"synthetic.amounts must be >= 0, got {amounts}")
    synthetic_from = str(synthetic.get("from", "best"))
    synthetic_label = str(synthetic.get("label", "positive"))
    control = synthetic.get("control", False)
    if not isinstance(control, bool):
        problems.add(f"synthetic.control must be true or false, got {control!r}")
    if any(amounts) and not generators and not problems.messages:
        problems.add("synthetic.amounts asks for synthetic images but no generators run")
    if synthetic_from != "best" and synthetic_from not in {g.name for g in generators}:
        problems.add(
            f"synthetic.from {synthetic_from!r} is neither 'best' nor a generator run name"
        )
    if generators:
        from cxrlab.study.findings import GeneratorChecks

        checked = GeneratorChecks(
            collapse_ratio if isinstance(collapse_ratio, (int, float)) else None,
            memorization_limit if isinstance(memorization_limit, (int, float)) else None,
        ).metrics()
        problems.check(_check_selection, generators, gen_settings, select_by, path, tuple(checked))
        if any(amounts):
            chosen = [g for g in generators if synthetic_from in ("best", g.name)]
            problems.check(_check_synthetic_label, chosen, gen_settings, synthetic_label, path)

    evaluation = str(raw.get("evaluation") or "split")
    if evaluation not in EVALUATIONS:
        problems.add(
            f"evaluation must be one of {', '.join(EVALUATIONS)}, got {raw.get('evaluation')!r}"
        )
    leave_site_out = evaluation == LEAVE_SITE_OUT
    # synthetic images under leave-site-out come from per-fold generators (module doc)
    classifier = problems.check(_section, raw, "classifier", path) or {}
    # the leave-site-out runs' setting, kept apart: the ordinary run has no folds
    folds = classifier.pop("folds", None)
    if folds is not None and not leave_site_out:
        problems.add(f"classifier.folds needs evaluation: {LEAVE_SITE_OUT}")
        folds = None
    try:
        explain = int(classifier.pop("explain", 0))
    except (TypeError, ValueError):
        problems.add("classifier.explain must be a whole number of images")
        explain = 0
    allowed = set(ClfConfig.__dataclass_fields__) - _CLF_RUNNER_FIELDS
    problems.check(_check_keys, classifier, allowed, "classifier", path)
    classifier = {k: v for k, v in classifier.items() if k in allowed}
    classifier.setdefault("arch", "simple-cnn")
    classifier_axes = {k: as_levels(classifier.pop(k)) for k in CLASSIFIER_AXES if k in classifier}
    for combo in itertools.product(*classifier_axes.values()):
        values = dict(zip(classifier_axes, combo, strict=True))
        try:
            settings = classifier_values(classifier, values)
            ClfConfig(data="", out="", **settings)
            if leave_site_out:
                ClfConfig(data="", out="", **settings, cv="sites", folds=folds)
        except (CxrlabError, TypeError) as error:
            problems.add(f"classifier {values}: {error}")
            break
    problems.raise_any()
    return StudySpec(
        path=path.resolve(),
        name=str(raw.get("name") or path.stem),
        description=str(raw.get("description") or ""),
        data=data,
        split=split,
        preprocess_axes=axes,
        generators=generators,
        gen_augment=gen_augment,
        gen_settings=gen_settings,
        select_by=select_by,
        collapse_ratio=None if collapse_ratio is None else float(collapse_ratio),
        memorization_limit=None if memorization_limit is None else float(memorization_limit),
        synthetic_amounts=amounts,
        synthetic_from=synthetic_from,
        synthetic_label=synthetic_label,
        synthetic_control=bool(control),
        classifier_axes=classifier_axes,
        classifier_settings=classifier,
        explain=explain,
        evaluation=evaluation,
        folds=folds,
        lung_masks=lung_masks,
        raw=raw,
    )
