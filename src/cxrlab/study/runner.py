"""``cxrlab study run``: expand a spec's grid into cells and run them, resumably.

A *cell* is one unit of work with its own folder: the dataset, one preprocessing
variant, one generator run, one synthetic set, or one classifier setting (all its
seeds). A cell is finished when its folder holds ``cell.json`` (written atomically
last, with the cell's settings and result rows); a rerun skips finished cells whose
settings still match, resumes unfinished ones from their checkpoints (generators:
the last saved step; classifiers: the last finished epoch of each seed), and refuses
cells whose settings the spec has since changed. Which cells run when is decided by
walking the study (:meth:`StudyRunner._walk`: what each cell waits for); who runs them,
one after another here, in a process pool or as Ray tasks, by
:mod:`cxrlab.study.executor`. The study folder::

    STUDY/
      spec.yaml                 the spec as run
      study.json                cells with their status, axes, chosen generators, times
      results.csv               one row per generator cell, one per classifier cell and seed
      data/dataset/             imported and split images (manifest.csv, rejects.csv)
      data/stats/               dataset statistics and figures
      packed/<variant>/         preprocessed PACKED per variant (e.g. 64px-clahe)
      previews/<variant>.png    an image grid per variant
      gen/<variant>/<name>/     generator runs (metrics.csv, samples/, checkpoints/)
      synthetic/<variant>/n<N>/ N synthetic images of the variant's chosen generator
      clf/<variant>/<cell>/     classifier runs: run/ (cxrlab clf train), eval-test/,
                                eval-external/ (cxrlab clf evaluate)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from cxrlab.errors import CxrlabError
from cxrlab.metrics.registry import value_info
from cxrlab.study import schema
from cxrlab.study.findings import (
    IN_SITE_AUC,
    OUT_OF_SITE_AUC,
    POOLED_OUT_OF_SITE_AUC,
    SITE_GAP_AUC,
    best_generator_position,
    control_level,
    selection_metric,
)
from cxrlab.study.spec import (
    LEAVE_SITE_OUT,
    StudySpec,
    Variant,
    _slug,
    classifier_values,
    load_spec,
)
from cxrlab.utils import outputs
from cxrlab.utils.fs import atomic_write_text
from cxrlab.utils.outputs import check_output

#: Suffixes of an estimate's columns in results.csv, by key of cv.json's estimates.
_ENDS = (("", "value"), ("_low", "low"), ("_high", "high"))
CELL_FILE = "cell.json"
RESULTS = "results.csv"
#: Leave-site-out folds' own generators and synthetic images, and the lung-mask probe.
FOLD_GEN_DIR = "gen-folds"
FOLD_SYNTHETIC_DIR = "synthetic-folds"
FOLD_GENERATOR_KIND = "fold-generator"
FOLD_SYNTHETIC_KIND = "fold-synthetic"
LUNG_MASKS_DIR = "lung-masks"
PROBE_FOLDER = "eval-probe"
STUDY_JSON = "study.json"

#: Why a variant gets no synthetic images (log lines and ``skipped_cells`` in study.json):
#: a generator that fails a check, or lacks a value a check needs, is never drawn from.
UNUSABLE = "failed the generator checks (collapsed, memorizes, or not measured)"


@dataclass
class Cell:
    """One unit of work: ``id`` names it, ``folder`` (relative to the study) holds it,
    ``variant`` is the preprocessing variant it belongs to (None: the dataset)."""

    id: str
    kind: str
    folder: str
    settings: dict
    variant: Variant | None = None


@dataclass
class Todo:
    """A cell met on the walk that is not finished: its ``work`` (run by an executor) and
    the ids of the cells it still ``waits`` for (none: it can run now)."""

    cell: Cell
    work: Callable[[], list[dict]]
    waits: tuple[str, ...] = ()


#: The generator named by a variant's synthetic and classifier cells while its generators
#: are not all finished (the choice needs them all): such cells wait, never run with it.
UNDECIDED = "(generator not chosen yet)"


@dataclass
class StudyResult:
    """What one invocation of :func:`run_study` did."""

    study: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    results: pd.DataFrame | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"study {self.study}: ran {len(self.ran)} cell(s), skipped {len(self.skipped)} "
            f"finished, {self.seconds:.0f} s; results in {self.study / RESULTS}"
        )


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _final_metric_values(metrics_csv: Path) -> dict[str, float]:
    """The last logged value of every metric column of a generator's metrics.csv: every
    value a registered metric reports (:func:`cxrlab.metrics.registry.value_info`)."""
    if not metrics_csv.is_file():
        return {}
    table = pd.read_csv(metrics_csv)
    values = {}
    for column in table.columns:
        if value_info(column) is not None:
            logged = pd.to_numeric(table[column], errors="coerce").dropna()
            if len(logged):
                values[column] = float(logged.iloc[-1])
    return values


class StudyRunner:
    """Runs the cells of one spec into one study folder (see the module doc)."""

    def __init__(
        self,
        spec: StudySpec,
        out: str | Path,
        *,
        device: str = "auto",
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.spec = spec
        self.out = Path(out)
        self.device = device
        self.progress = progress
        self.log = log
        self.cells: list[Cell] = []
        self.rows: dict[str, list[dict]] = {}
        self.selected: dict[str, str] = {}
        self.previous: dict = {}  # study.json of earlier invocations
        self.previous_order: list[str] = []
        self.records: dict[str, dict] = {}  # cell id -> its cell.json, finished cells only
        self.skipped: dict[str, str] = {}  # cell id -> why it cannot run
        self.unusable: dict[str, str] = {}  # variant -> why it gets no synthetic images
        self.result = StudyResult(self.out)
        # the walk over the study (_walk): cells met, those not finished, what they wait for
        self.todo: list[Todo] = []
        self.walked = False
        self._met: set[str] = set()
        self._needs: tuple[str, ...] = ()
        self._selected_before: dict[str, str] = {}
        self._said: set[str] = set()  # lines the walks logged (each is said once)
        # result rows of the cells finished in this invocation, as their work returned them
        self.fresh_rows: dict[str, list[dict]] = {}

    # ------------------------------------------------------------------ cells
    def _marker(self, cell: Cell) -> Path:
        return self.out / cell.folder / CELL_FILE

    def _load_records(self) -> None:
        """Read every finished cell's ``cell.json`` once, when the run starts."""
        for marker in sorted(self.out.glob("*/**/" + CELL_FILE)):
            record = json.loads(marker.read_text())
            record["folder"] = marker.parent.relative_to(self.out).as_posix()
            self.records[record["id"]] = record

    def _finished(self, cell: Cell) -> dict | None:
        record = self.records.get(cell.id)
        if record is None:
            return None
        if record.get("settings") != _jsonable(cell.settings):
            old, new = record.get("settings", {}), _jsonable(cell.settings)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise CxrlabError(
                f"cell {cell.id} in {self.out} was run with other settings ({', '.join(changed)} "
                f"changed in the spec); run the new spec into another --out, or delete "
                f"{self.out / cell.folder} to redo that cell"
            )
        return record

    def _do(self, cell: Cell, work: Callable[[], list[dict]]) -> list[dict]:
        """Meet ``cell`` on the walk over the study (:meth:`_walk`): return its result rows
        when it is finished; otherwise note it in ``self.todo`` with ``work`` and the cells
        it still waits for, and return no rows. Nothing runs here: an executor
        (:mod:`cxrlab.study.executor`) runs the cells whose inputs are finished."""
        if cell.id in self._met:  # met again in this walk (a shared synthetic set)
            return self.rows.get(cell.id, [])
        self._met.add(cell.id)
        self.cells.append(cell)
        waits = tuple(need for need in self._needs if need not in self.records)
        # a cell whose inputs are not finished is never compared with its record: its
        # settings may name a generator not chosen yet
        record = None if waits else self._finished(cell)
        if record is None:
            self.todo.append(Todo(cell, work, waits))
            return []
        rows = self.fresh_rows.get(cell.id, record.get("rows", []))
        self.rows[cell.id] = rows
        return rows

    @contextmanager
    def _needing(self, *cells: str) -> Iterator[None]:
        """The cells met inside wait for ``cells`` (ids) to finish."""
        before = self._needs
        self._needs = before + cells
        try:
            yield
        finally:
            self._needs = before

    def execute(self, cell: Cell, work: Callable[[], list[dict]]) -> tuple[dict, list[dict]]:
        """Run one cell's ``work`` and write its ``cell.json`` (atomically, last: a cell
        stopped before is resumed by the next run). Writes nothing outside the cell's
        folder, so cells may run at the same time in other processes.

        Returns:
            The cell's record (as in cell.json) and its rows as ``work`` returned them.
        """
        began = time.perf_counter()
        (self.out / cell.folder).mkdir(parents=True, exist_ok=True)
        rows = [{**self._variant_of(cell), **row} for row in work()]
        seconds = time.perf_counter() - began
        record = {
            "id": cell.id,
            "kind": cell.kind,
            "settings": _jsonable(cell.settings),
            "rows": _jsonable(rows),
            "seconds": round(seconds, 2),
            "finished": _now(),
        }
        atomic_write_text(self._marker(cell), json.dumps(record, indent=2) + "\n")
        return record, rows

    def finished(self, cell: Cell, record: dict, rows: list[dict]) -> None:
        """Take a cell finished by an executor into this invocation's records."""
        self.records[cell.id] = {**record, "folder": cell.folder}
        self.fresh_rows[cell.id] = rows
        self.result.ran.append(cell.id)

    # ----------------------------------------------------------------- stages
    def _data(self) -> Path:
        from cxrlab.data.api import build_from_spec, split_dataset
        from cxrlab.data.stats import write_stats

        dataset = self.out / "data" / "dataset"
        split = self.spec.split
        settings = {"data": self.spec.data, "split": split}

        def work() -> list[dict]:
            report = build_from_spec(
                expand_source_paths(self.spec.data, self.spec.path),
                dataset,
                base=self.spec.base,
                where=str(self.spec.path),
                progress=self.progress,
            )
            self.log(f"    {report.summary()}")
            split_report = split_dataset(
                dataset,
                tuple(split.get("ratios", (0.6, 0.2, 0.2))),
                seed=int(split.get("seed", 0)),
                holdout_source=split.get("holdout_source"),
                holdout_site=split.get("holdout_site"),
            )
            self.log("    " + split_report.summary().replace("\n", "\n    "))
            write_stats(dataset, self.out / "data" / "stats")
            return []

        self._do(Cell("data", "data", "data", settings), work)
        return dataset

    def _preprocess(self, dataset: Path, variant: Variant) -> Path:
        from cxrlab.data.packed import preprocess_dataset
        from cxrlab.data.show import show_packed

        packed = self.out / "packed" / variant.name
        options = variant.options()
        # lung masks only where the variant crops or masks to the lungs: a PACKED made
        # with masks rejects the images without one, which `lungs: none` must keep
        masks = self.spec.lung_masks_path() if options.lungs != "none" else None

        def work() -> list[dict]:
            report = preprocess_dataset(
                dataset, packed, options, lung_masks=masks, progress=self.progress
            )
            self.log(f"    {report.summary()}")
            show_packed(packed, self.out / "previews" / f"{variant.name}.png", n=16)
            return []

        settings = dict(variant.values)
        if masks is not None:
            settings["lung_masks"] = self.spec.lung_masks
        self._do(
            Cell(
                f"preprocess/{variant.name}",
                "preprocess",
                f"packed/{variant.name}",
                settings,
                variant,
            ),
            work,
        )
        return packed

    def _gen_configs(self, packed: Path, variant: Variant) -> list[tuple[Cell, object]]:
        from cxrlab.gen.config import GenConfig

        spec = self.spec
        tagged = len(spec.gen_augment) > 1 or spec.gen_augment[0] is not None
        cells = []
        for augment in spec.gen_augment:
            for generator in spec.generators:
                name = generator.name + (f"-aug_{_slug(augment)}" if tagged else "")
                folder = f"gen/{variant.name}/{name}"
                settings = {**spec.gen_settings, **generator.settings}
                if self.device != "auto":
                    settings["device"] = self.device
                config = GenConfig(
                    data=str(packed),
                    out=str(self.out / folder),
                    size_px=dict(variant.values)["size"],
                    augment=augment,
                    **settings,
                )
                identity = {
                    **config.as_dict(),
                    "name": generator.name,
                    "gen_augment": augment or "none",
                }
                for volatile in ("data", "out", "device"):
                    identity.pop(volatile, None)
                cells.append(
                    (Cell(folder, schema.GENERATOR_KIND, folder, identity, variant), config)
                )
        return cells

    def _generator(self, cell: Cell, config) -> list[dict]:
        from cxrlab.gen.train_api import train_with_metrics

        def work() -> list[dict]:
            result = train_with_metrics(config, resume=True, progress=self.progress)
            values = _final_metric_values(Path(config.out) / "metrics.csv")
            return [
                {
                    schema.GENERATOR: cell.settings["name"],
                    schema.MODEL: config.model,
                    schema.GEN_AUGMENT: cell.settings["gen_augment"],
                    schema.STEPS: result.step,
                    schema.SEED: config.seed,
                    schema.SECONDS: round(result.seconds, 2),
                    **values,
                }
            ]

        return self._do(cell, work)

    def _select(self, variant: Variant, gen_cells: list[Cell]) -> str | None:
        """The variant's generator cell to sample synthetic images from: the best by
        ``select_by`` or the one ``synthetic.from`` names; either way one that passes
        the generator checks (collapse, memorization, both measured). None when none
        does; the reason is kept in ``self.unusable`` for the skipped cells."""
        spec = self.spec
        if not gen_cells:
            return None
        metric = spec.select_by
        checks = spec.checks
        rows = [self.rows[cell.id][0] if self.rows.get(cell.id) else {} for cell in gen_cells]
        usable, flawed = [], {}
        for cell, row in zip(gen_cells, rows, strict=True):
            flaw = checks.flaw(row)
            if flaw is None:
                usable.append(cell.id)
            else:  # never drawn from, whatever its metric, and whatever the spec names
                flawed[cell.id] = flaw
                self.log(f"    {cell.id} {flaw}: {checks.explain(flaw, row)}")
        if spec.synthetic_from != "best":
            named = [c.id for c in gen_cells if c.settings["name"] == spec.synthetic_from]
            chosen = [cell for cell in named if cell in usable]
            if chosen:
                return chosen[0]
            self.unusable[variant.name] = (
                f"synthetic.from generator {spec.synthetic_from!r} {UNUSABLE}: "
                + "; ".join(f"{cell} {flawed[cell]}" for cell in named)
            )
            self.log(
                f"    {self.unusable[variant.name]}: no synthetic images are drawn for "
                f"{variant.name}, and its synthetic cells are skipped"
            )
            return None
        position = best_generator_position(rows, metric, checks)
        if position is None:
            if not usable:
                self.unusable[variant.name] = f"every generator of the variant {UNUSABLE}: " + (
                    "; ".join(f"{cell} {flaw}" for cell, flaw in flawed.items())
                )
                self.log(
                    f"    every generator of {variant.name} {UNUSABLE}: no synthetic images "
                    "are drawn for it, and its synthetic cells are skipped"
                )
                return None
            self.log(
                f"    no generator of {variant.name} logged {metric!r}; using the first one "
                f"({usable[0]}) for synthetic images"
            )
            return usable[0]
        return gen_cells[position].id

    def _synthetic(self, variant: Variant, generator_cell: str, amount: int) -> Path:
        from cxrlab.gen.sample import sample_run

        folder = self._synthetic_folder(variant, amount)
        target = self.out / folder / "packed"
        settings = {
            "generator": generator_cell,
            "amount": amount,
            "label": self.spec.synthetic_label,
        }

        def work() -> list[dict]:
            sample_run(
                self.out / generator_cell,
                target,
                n=amount,
                label=self.spec.synthetic_label,
                packed=True,
                device=self.device,
            )
            return []

        self._do(Cell(folder, "synthetic", folder, settings, variant), work)
        return target

    def _classifier(
        self, packed: Path, variant: Variant, combo: dict, synthetic: Path | None, source: str
    ) -> None:
        from cxrlab.clf.config import ClfConfig
        from cxrlab.clf.evaluate import evaluate_run
        from cxrlab.clf.trainer import train_classifier
        from cxrlab.data.packed import open_packed

        spec = self.spec
        folder = self._classifier_folder(variant, combo)
        values = {k: v for k, v in combo.items() if k not in ("synthetic", "control")}
        if combo["control"]:  # as many real positives, oversampled, as synthetic images
            values["oversample_positive"] = combo["synthetic"]
        settings = classifier_values(spec.classifier_settings, values)  # recipe applied
        if self.device != "auto":
            settings["device"] = self.device
        # a generator of a non-power-of-two variant learned the nearest power of two
        # (generator_variant): its images are resized, which the run's report records
        resized = synthetic is not None and generator_variant(variant) != variant
        config = ClfConfig(
            data=str(packed),
            out=str(self.out / folder / "run"),
            synthetic=str(synthetic) if synthetic else None,
            allow_mismatch=resized,
            **settings,
        )
        identity = {
            **{
                k: v
                for k, v in config.as_dict().items()
                # checks that refuse or allow, not settings of the result
                if k
                not in (
                    "data",
                    "out",
                    "device",
                    "synthetic",
                    "synthetic_unverified",
                    "allow_mismatch",
                )
            },
            "synthetic": combo["synthetic"],
            "synthetic_from": source,
            "explain": spec.explain,
        }
        if spec.evaluation != "split":  # (a split study's cells keep the identity they had)
            identity.update(evaluation=spec.evaluation, folds=spec.folds)
        # leave-site-out folds draw their synthetic images from generators of their own
        fold_images = spec.evaluation == LEAVE_SITE_OUT and synthetic is not None
        cell = Cell(folder, schema.CLASSIFIER_KIND, folder, identity, variant)
        fold_synthetic, fold_needs = None, ()
        if fold_images:
            if source == UNDECIDED or any(need not in self.records for need in self._needs):
                # the folds cannot be planned before the PACKED and the chosen generator
                # exist: wait for fold images not planned yet
                amount = combo["synthetic"]
                fold_needs = (f"{FOLD_SYNTHETIC_DIR}/{variant.name}/n{amount}",)
            else:
                fold_synthetic = self._fold_synthetic(variant, source, combo["synthetic"], packed)
                fold_needs = tuple(self._fold_synthetic_cells(variant, combo["synthetic"], packed))
        level = control_level(combo["synthetic"]) if combo["control"] else combo["synthetic"]
        factors = {**{k: v for k, v in combo.items() if k != "control"}, schema.SYNTHETIC: level}

        def work() -> list[dict]:
            trained = train_classifier(config, resume=True, progress=self.progress)
            test = evaluate_run(
                config.out,
                packed,
                split="test",
                explain=spec.explain,
                out=self.out / folder / "eval-test",
                device=config.device,
                bootstrap=config.bootstrap,
            )
            external = None
            if (open_packed(packed).manifest["split"] == "external").any():
                external = evaluate_run(
                    config.out,
                    packed,
                    split="external",
                    out=self.out / folder / "eval-external",
                    device=config.device,
                    bootstrap=config.bootstrap,
                )
            rows = []
            for seed, seed_result in trained.seeds.items():
                row = {
                    **factors,
                    schema.SYNTHETIC_FROM: source,
                    schema.SEED: seed,
                    schema.SECONDS: round(seed_result.seconds, 2),
                    schema.BEST_EPOCH: seed_result.best_epoch,
                    schema.THRESHOLD: seed_result.threshold,
                    # what the best cell is chosen by: validation, never test
                    schema.VAL_ROC_AUC: seed_result.val_auc,
                }
                row.update(schema.evaluation_columns("test", test.seeds[seed]))
                if external is not None:
                    row.update(schema.evaluation_columns("external", external.seeds[seed]))
                rows.append(row)
            if spec.evaluation == LEAVE_SITE_OUT:
                by_seed = self._leave_site_out(
                    config, spec.folds, self.out / folder / "cv", fold_synthetic
                )
                for row in rows:
                    row.update(by_seed[int(row[schema.SEED])])
                self._lung_probe(config, packed, self.out / folder)
            return rows

        with self._needing(*fold_needs):
            self._do(cell, work)

    def _fold_synthetic(
        self, variant: Variant, generator_cell: str, amount: int, packed: Path
    ) -> dict[int, str]:
        """Per leave-site-out fold, ``amount`` synthetic images from a generator that
        learned only that fold's training rows (:mod:`cxrlab.study.fold_synthetic`):
        fold index -> their PACKED. Each fold's generator (the chosen generator's
        settings, no metrics) and each amount drawn from it is a cell of its own,
        shared by every classifier cell of the variant."""
        import dataclasses

        from cxrlab.clf.cv import plan_folds
        from cxrlab.gen.config import GenConfig
        from cxrlab.gen.sample import sample_run
        from cxrlab.gen.train_api import train_with_metrics
        from cxrlab.study.fold_synthetic import fold_packed

        chosen = GenConfig.read(self.out / generator_cell / "config.yaml")
        name = Path(generator_cell).name
        sets = {}
        # the folds cross_validate will make (the same PACKED, folds and plan seed)
        for fold in plan_folds(packed, self.spec.folds, 0).folds:
            base = f"{FOLD_GEN_DIR}/{variant.name}/{name}/{fold.name}"
            config = dataclasses.replace(
                chosen,
                data=str(self.out / base / "packed"),
                out=str(self.out / base / "run"),
                metrics=[],
                split="train",
            )
            identity = {k: v for k, v in config.as_dict().items() if k not in ("data", "out")}
            identity.update(generator=generator_cell, held_out_sites=fold.sites)

            def train(fold=fold, config=config) -> list[dict]:
                fold_packed(chosen.data, fold, config.data)
                result = train_with_metrics(config, resume=True, progress=self.progress)
                return [{"fold": fold.index, schema.STEPS: result.step,
                         schema.SECONDS: round(result.seconds, 2)}]  # fmt: skip

            self._do(Cell(base, FOLD_GENERATOR_KIND, base, identity, variant), train)
            target = self._fold_synthetic_folder(variant, amount, fold.name)

            def draw(run=config.out, target=target) -> list[dict]:
                sample_run(run, self.out / target / "packed", n=amount,
                           label=self.spec.synthetic_label, packed=True, device=self.device)  # fmt: skip
                return []

            settings = {"generator": base, "amount": amount, "label": self.spec.synthetic_label}
            with self._needing(base):
                self._do(Cell(target, FOLD_SYNTHETIC_KIND, target, settings, variant), draw)
            sets[fold.index] = str(self.out / target / "packed")
        return sets

    def _fold_synthetic_cells(self, variant: Variant, amount: int, packed: Path) -> list[str]:
        """The ids of the cells drawing a variant's per-fold synthetic images."""
        from cxrlab.clf.cv import plan_folds

        return [
            self._fold_synthetic_folder(variant, amount, fold.name)
            for fold in plan_folds(packed, self.spec.folds, 0).folds
        ]

    @staticmethod
    def _fold_synthetic_folder(variant: Variant, amount: int, fold: str) -> str:
        return f"{FOLD_SYNTHETIC_DIR}/{variant.name}/n{amount}/{fold}"

    def _lung_masks(self, folder: Path) -> Path | None:
        """A MASKS folder at ``folder`` of the dataset's own lung masks (its manifest's
        ``mask_path``, e.g. ieee8023's lungVAE annotations); None when no row has one."""
        from cxrlab.data.manifest import read_manifest
        from cxrlab.data.masks import MASK_COLUMNS, MASKS_CSV

        manifest = read_manifest(self.out / "data" / "dataset")
        if "mask_path" not in manifest.columns:
            return None
        rows = manifest[manifest["mask_path"].fillna("").astype(str) != ""]
        if rows.empty:
            return None
        table = pd.DataFrame({"id": rows["id"], "mask_path": rows["mask_path"]})
        table = table.reindex(columns=MASK_COLUMNS, fill_value="")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / MASKS_CSV, table.to_csv(index=False, lineterminator="\n"))
        return folder

    def _lung_probe(self, config, packed: Path, cell_folder: Path) -> None:
        """The shortcut probe of a leave-site-out cell's split model on the test split
        with the dataset's own lung masks (lungs removed, lungs only), when it has any:
        what the report's "Will it transfer?" section reads for the chosen recipe.
        Everything it writes stays in the cell's folder (cells may run in parallel)."""
        from cxrlab.clf.evaluate import evaluate_run

        masks = self._lung_masks(cell_folder / LUNG_MASKS_DIR)
        if masks is None:
            return
        try:
            evaluate_run(config.out, packed, split="test", shortcut_probe=True,
                         lung_masks=masks, out=cell_folder / PROBE_FOLDER, device=config.device,
                         bootstrap=config.bootstrap)  # fmt: skip
        except CxrlabError as error:  # e.g. no test image has a mask: said, not fatal
            self.log(f"    lung-mask shortcut probe not run: {error}")

    def _leave_site_out(
        self, config, folds: int | None, out: Path, fold_synthetic: dict[int, str] | None = None
    ) -> dict[int, dict]:
        """Leave-site-out cross-validation of a classifier cell's settings into ``out``
        (:func:`cxrlab.clf.cv.cross_validate`, resumed where it stopped): per seed, the
        out-of-site ROC-AUC (mean over folds, what the best cell is chosen by), the
        in-site one, the pooled out-of-site one and the in-site minus out-of-site gap
        with their 95% patient-bootstrap intervals. Test and external rows are not read."""
        import dataclasses

        from cxrlab.clf.cv import cross_validate

        # the split model's synthetic images never train a fold (their generator
        # learned the held-out sites); fold_synthetic gives each fold its own
        cv_config = dataclasses.replace(
            config, out=str(out), cv="sites", folds=folds, synthetic=None, allow_mismatch=False
        )
        summary = cross_validate(
            cv_config, resume=True, progress=self.progress, fold_synthetic=fold_synthetic
        ).summary
        columns = {}
        for seed, values in summary["per_seed"].items():
            pooled = values["out_of_site"]["metrics"]["roc_auc"]
            gap = values["gap"]["roc_auc"]
            columns[int(seed)] = {
                OUT_OF_SITE_AUC: values["fold_mean"]["out_of_site_auc"],
                IN_SITE_AUC: values["fold_mean"]["in_site_auc"],
                **{f"{POOLED_OUT_OF_SITE_AUC}{end}": pooled[key] for end, key in _ENDS},
                **{f"{SITE_GAP_AUC}{end}": gap[key] for end, key in _ENDS},
            }
        return columns

    @staticmethod
    def _synthetic_folder(variant: Variant, amount: int) -> str:
        return f"synthetic/{variant.name}/n{amount}"

    def _classifier_folder(self, variant: Variant, combo: dict) -> str:
        parts = [str(combo["arch"])]
        parts += [
            f"{'aug' if key == 'augment' else key}_{_slug(combo[key])}"
            for key in self.spec.classifier_axes
            if key != "arch"
        ]
        parts.append(f"syn_{combo['synthetic']}" + ("-oversampled" if combo["control"] else ""))
        return f"clf/{variant.name}/{'-'.join(parts)}"

    def planned_cells(self) -> int:
        """How many cells the whole study has (the dataset, variants, generators...): those
        met on the last walk over it, or, before any walk, as counted from the spec."""
        if self.walked:
            return len(self.cells)
        spec = self.spec
        variants = len(spec.variants())
        generators = len(spec.generators) * len(spec.gen_augment)
        synthetic = sum(1 for amount in spec.synthetic_amounts if amount > 0)
        planned = 1 + variants * (1 + generators + synthetic + len(spec.classifier_grid()))
        return planned - len(self.skipped)

    # -------------------------------------------------------------- the study
    def run(self, executor=None, *, dry_run: bool = False) -> StudyResult:
        """Run every cell not finished yet with ``executor`` (default: one after another
        in this process; see :mod:`cxrlab.study.executor`). With ``dry_run``, print the
        plan (every cell, done or to run) and write nothing."""
        from cxrlab.study.executor import InlineExecutor, dispatch
        from cxrlab.utils.device import resolve_device

        resolve_device(self.device)  # --device cuda without CUDA fails before any work
        # a study folder, or a new one: never the folder holding the spec, or another kind
        check_output(self.out, kind=outputs.STUDY, inputs=[self.spec.path])
        self._check_sources()
        self._preflight()
        began = time.perf_counter()
        if dry_run:
            self._read_earlier()
            self._walk()
            self.log(self.plan_text(every_cell=True))
            self.result.skipped = [c.id for c in self.cells if c.id in self.records]
            return self.result
        self.out.mkdir(parents=True, exist_ok=True)
        if not (self.out / "spec.yaml").is_file():
            shutil.copyfile(self.spec.path, self.out / "spec.yaml")
        self._read_earlier()
        self._write_status()  # the folder is a study from its first moment (resumable)
        dispatch(self, executor or InlineExecutor())
        self.result.seconds = time.perf_counter() - began
        ran = set(self.result.ran)
        self.result.ran = [c.id for c in self.cells if c.id in ran]  # in the study's order
        self.result.skipped = [c.id for c in self.cells if c.id not in ran]
        shutil.copyfile(self.spec.path, self.out / "spec.yaml")  # the spec that finished it
        self.result.results = self._write_results()
        self._write_status()
        return self.result

    def run_one(self, cell_id: str, settings: dict) -> tuple[dict, list[dict]]:
        """Run the one cell ``cell_id`` (what a worker process or Ray task does): walk the
        study as its finished cells stand, check that the cell is ready and planned with
        ``settings`` (as the process that sent it saw them), run it.

        Returns:
            The cell's record and rows (:meth:`execute`); a cell that is finished already
            (a retried task whose first try finished it) is not run again.

        Raises:
            CxrlabError: the cell waits for cells not finished in this study folder (a
                cluster node that does not see the folder the others write), or it is
                planned otherwise.
        """
        log, self.log = self.log, lambda line: None  # the walk's lines are the parent's
        self._read_earlier()
        self._walk()
        self.log = log
        todo = next((t for t in self.todo if t.cell.id == cell_id), None)
        if todo is None and cell_id in self.records:
            record = self.records[cell_id]
            return {k: v for k, v in record.items() if k != "folder"}, record.get("rows", [])
        if todo is None:
            raise CxrlabError(f"cell {cell_id} is not part of the study {self.out} any more")
        if todo.waits:
            raise CxrlabError(
                f"cell {cell_id} waits for {', '.join(todo.waits)}, which this worker does not "
                f"find finished in {self.out}: every worker must see the same study folder "
                "(a shared file system on a cluster)"
            )
        if _jsonable(todo.cell.settings) != settings:
            raise CxrlabError(
                f"cell {cell_id} is planned with other settings in this worker than in the "
                f"process that sent it; is {self.out} being written by another study run?"
            )
        return self.execute(todo.cell, todo.work)

    def _read_earlier(self) -> None:
        """What earlier invocations left in the study folder: study.json and every
        finished cell's cell.json (nothing when the folder does not exist yet)."""
        if (self.out / STUDY_JSON).is_file():
            self.previous = json.loads((self.out / STUDY_JSON).read_text())
            self._selected_before = dict(self.previous.get("selected_generators", {}))
            self.selected.update(self._selected_before)
            self.previous_order = [cell["id"] for cell in self.previous.get("cells", [])]
        self._load_records()

    def _walk(self) -> None:
        """Meet every cell of the study in the order a sequential run takes them (the
        dataset, preprocessing per variant, generators, then per variant its generator
        choice, synthetic sets and classifiers), noting what each waits for.

        Runs nothing: it fills ``self.cells`` (in order), ``self.rows`` (finished cells)
        and ``self.todo`` (the others, with their work). A variant's generator is chosen
        once all its generators are finished; until then its synthetic and classifier
        cells with synthetic images wait, named with :data:`UNDECIDED`. Walked again
        after each finished cell, so lines it logs are said once per invocation.
        """
        self.cells, self.rows, self.todo = [], {}, []
        self._met, self._needs = set(), ()
        self.skipped, self.unusable = {}, {}
        self.selected = dict(self._selected_before)
        log = self.log
        said = self._said

        def once(line: str) -> None:
            if line not in said:
                said.add(line)
                log(line)

        self.log = once
        try:
            self._walk_cells()
        finally:
            self.log = log
        self.walked = True

    def _walk_cells(self) -> None:
        dataset = self._data()
        variants = self.spec.variants()
        with self._needing("data"):
            packs = {v.name: self._preprocess(dataset, v) for v in variants}
        gen_cells: dict[str, list[Cell]] = {}
        for variant in variants:
            gen_variant = generator_variant(variant)
            if self.spec.generators and gen_variant.name not in packs:
                with self._needing("data"):
                    packs[gen_variant.name] = self._preprocess(dataset, gen_variant)
            gen_cells[variant.name] = []
            with self._needing(f"preprocess/{gen_variant.name}"):
                for cell, config in self._gen_configs(packs.get(gen_variant.name), gen_variant):
                    self._generator(cell, config)
                    gen_cells[variant.name].append(cell)
        for variant in variants:
            generators = tuple(cell.id for cell in gen_cells[variant.name])
            if all(cell in self.records for cell in generators):
                chosen = self._select(variant, gen_cells[variant.name])
                if chosen:
                    self.selected[variant.name] = chosen
                else:  # an earlier invocation's choice that the checks now refuse is no choice
                    self.selected.pop(variant.name, None)
            else:
                chosen = UNDECIDED
            for combo in self.spec.classifier_grid():
                synthetic = None
                needs_images = combo["synthetic"] > 0 and not combo["control"]
                if needs_images and chosen is None:
                    reason = self.unusable.get(
                        variant.name, f"no generator of the variant: {UNUSABLE}"
                    )
                    self.skipped[self._classifier_folder(variant, combo)] = reason
                    self.skipped[self._synthetic_folder(variant, combo["synthetic"])] = reason
                    continue
                needs = (f"preprocess/{variant.name}",)
                if needs_images:
                    with self._needing(*generators):
                        synthetic = self._synthetic(variant, chosen, combo["synthetic"])
                    needs += (self._synthetic_folder(variant, combo["synthetic"]),)
                with self._needing(*needs):
                    self._classifier(
                        packs[variant.name],
                        variant,
                        combo,
                        synthetic,
                        chosen if needs_images else "",
                    )

    def plan_text(self, *, every_cell: bool = False) -> str:
        """The plan of the last walk: cells per kind, how many are done and how many
        remain, the cells to run (``every_cell``: the finished ones too), and cells
        skipped with why."""
        waiting = {todo.cell.id: todo for todo in self.todo}
        done = sum(1 for cell in self.cells if cell.id not in waiting)
        lines = [
            f"plan: {len(self.cells)} cells in {self.out}: {done} done, "
            f"{len(self.cells) - done} to run"
        ]
        order = ["data", "preprocess", schema.GENERATOR_KIND, "synthetic"]
        kinds: dict[str, list[Cell]] = {}
        rank = {kind: place for place, kind in enumerate(order)}
        for cell in sorted(self.cells, key=lambda cell: rank.get(cell.kind, len(order))):
            kinds.setdefault(cell.kind, []).append(cell)
        for kind, cells in kinds.items():
            left = sum(1 for cell in cells if cell.id in waiting)
            lines.append(f"  {kind:<11} {len(cells):>4}: {len(cells) - left} done, {left} to run")
        for cell in self.cells:
            todo = waiting.get(cell.id)
            if todo is None and every_cell:
                lines.append(f"  done    {cell.id}")
            elif todo is not None:
                after = f"  (after {', '.join(todo.waits)})" if todo.waits else ""
                lines.append(f"  to run  {cell.id}{after}")
        for cell, reason in self.skipped.items():
            lines.append(f"  skipped {cell}: {reason}")
        return "\n".join(lines)

    def _check_sources(self) -> None:
        """Every source path of the spec is set and exists, before STUDY/ is made (a study
        whose dataset is already built needs its sources no more)."""
        if (self.out / "data" / "dataset" / "manifest.csv").is_file():
            return
        data = expand_source_paths(self.spec.data, self.spec.path)
        for source in data["sources"]:
            for key in ("path", "images"):
                if source.get(key) is None:
                    continue
                path = Path(self.spec.base) / source[key]
                if not path.exists():
                    raise CxrlabError(
                        f"{self.spec.path}: source {key} {path} does not exist; fix the path "
                        "in the spec (relative paths are relative to the spec file) or set "
                        "$CXRLAB_DATA to the folder holding the data"
                    )

    def _preflight(self) -> None:
        """Find every pretrained weights file the study needs before any work starts.

        Raises:
            MissingWeightsError: with the fix a study has (``$CXRLAB_WEIGHTS_DIR`` or a
                path in the spec; ``study run`` has no ``--weights`` or ``--pretrained``).
        """
        from cxrlab.metrics.extractors.weights import WEIGHTS_DIR_ENV, MissingWeightsError

        try:
            self._find_weights()
        except MissingWeightsError as error:
            if error.spec is None:
                raise
            missing, needed_by = error.spec, getattr(error, "needed_by", "")
            raise MissingWeightsError(
                f"the study {self.spec.path.name} needs the weights file {missing.filename}"
                f"{f' ({needed_by})' if needed_by else ''}, "
                f"which is not on this machine and cannot be downloaded. Fix: download "
                f"{missing.url} on a machine with internet into a folder and set "
                f"${WEIGHTS_DIR_ENV} to that folder, then run the same command again; or "
                "give its path in the spec (a generator's `weights:`, a classifier's "
                "`pretrained:`), or leave out what needs it (fid/kid/is/prdc metrics, "
                "pretrained classifiers)",
                missing,
            ) from None

    def _find_weights(self) -> None:
        from cxrlab.metrics.extractors import EXTRACTORS
        from cxrlab.metrics.extractors.weights import MissingWeightsError, locate_weights
        from cxrlab.metrics.registry import METRICS

        spec = self.spec
        for generator in spec.generators:
            settings = {**spec.gen_settings, **generator.settings}
            names = settings.get("metrics") or []
            names = names.split(",") if isinstance(names, str) else names
            if any(METRICS[n.strip()].needs_network for n in names if n.strip() in METRICS):
                features = settings.get("features", "inception")
                try:
                    locate_weights(EXTRACTORS[features].weights_file(), settings.get("weights"))
                except MissingWeightsError as error:
                    error.needed_by = f"generator metrics {', '.join(names)} with {features}"
                    raise
        from cxrlab.clf.config import ClfConfig
        from cxrlab.clf.models import pretrained_weights

        for combo in spec.classifier_grid():
            values = {k: v for k, v in combo.items() if k not in ("synthetic", "control")}
            config = ClfConfig(
                data="", out="", **classifier_values(spec.classifier_settings, values)
            )
            try:
                pretrained_weights(config.arch, config.resolved_pretrained)
            except MissingWeightsError as error:
                error.needed_by = f"classifier {config.arch}, pretrained {config.pretrained}"
                raise

    # ----------------------------------------------------------------- output
    @staticmethod
    def _variant_of(cell: Cell) -> dict:
        """The variant columns of a cell's rows: its name and its preprocessing values."""
        variant = cell.variant
        return {schema.VARIANT: variant.name, **dict(variant.values)} if variant else {}

    def _write_results(self) -> pd.DataFrame:
        """results.csv from every finished generator and classifier cell in the folder:
        those of this invocation in run order, then earlier ones it has not reached."""
        visited = {cell.id for cell in self.cells}
        cells = [(c.id, c.kind, c.folder, self.rows.get(c.id, [])) for c in self.cells]
        cells += [
            (r["id"], r.get("kind"), r["folder"], r.get("rows", []))
            for r in self.records.values()
            if r["id"] not in visited
        ]
        cells.sort(key=lambda cell: self._rank(cell[0]))
        records = []
        for cell_id, kind, folder, rows in cells:
            if kind not in (schema.GENERATOR_KIND, schema.CLASSIFIER_KIND):
                continue
            for row in rows:
                record = {schema.KIND: kind, schema.CELL: cell_id, schema.FOLDER: folder, **row}
                if kind == schema.GENERATOR_KIND:
                    record[schema.SELECTED] = int(cell_id in self.selected.values())
                records.append(record)
        table = pd.DataFrame.from_records(records).convert_dtypes()
        atomic_write_text(self.out / RESULTS, table.to_csv(index=False, lineterminator="\n"))
        return table

    def _synthetic_caveats(self) -> dict[str, list[str]]:
        """Per classifier cell, what its run accepted about its synthetic images (taken
        unverified, or made otherwise than its data), from the run's metrics.json."""
        caveats = {}
        for path in sorted((self.out / "clf").glob("*/*/run/metrics.json")):
            try:
                notes = json.loads(path.read_text()).get("notes") or []
            except (OSError, ValueError, AttributeError):
                continue
            said = [
                str(note)
                for note in notes
                if str(note).startswith(("synthetic images unverified", "preprocessing mismatch"))
            ]
            if said:
                caveats[path.parent.parent.relative_to(self.out).as_posix()] = said
        return caveats

    def _write_status(self) -> None:
        from cxrlab.utils.device import resolve_device

        spec = self.spec

        status = {
            "name": spec.name,
            "description": spec.description,
            "spec": str(spec.path.resolve()),  # absolute: the report's Reproduce command
            "updated": _now(),
            "device": str(resolve_device(self.device)),
            # the time every finished cell took, over all invocations (a no-op rerun adds 0)
            "wall_seconds": round(
                sum(float(r.get("seconds") or 0) for r in self.records.values()), 2
            ),
            "skipped_cells": self.skipped,
            "synthetic_caveats": self._synthetic_caveats(),
            "axes": {
                "preprocess": list(spec.preprocess_axes),
                "generator": ["generator", "gen_augment"],
                "classifier": [*spec.classifier_axes, "synthetic"],
            },
            "select_by": spec.select_by,
            "evaluation": spec.evaluation,
            # what the best classifier cell is chosen by (never a test metric)
            "classifier_selected_by": selection_metric(spec.evaluation),
            "collapse_ratio": spec.collapse_ratio,
            "memorization_limit": spec.memorization_limit,
            "planned_cells": self.planned_cells(),
            "selected_generators": self.selected,
            "cells": self._cell_status(),
        }
        atomic_write_text(self.out / STUDY_JSON, json.dumps(status, indent=2) + "\n")

    def _cell_status(self) -> list[dict]:
        """Every cell met in this invocation, then those of earlier ones not met yet."""
        listed = [{"id": cell.id, "kind": cell.kind, "folder": cell.folder} for cell in self.cells]
        met = {cell["id"] for cell in listed} | set(self.skipped)
        listed += [cell for cell in self.previous.get("cells", []) if cell["id"] not in met]
        for cell in listed:
            record = self.records.get(cell["id"])
            cell["status"] = "pending" if record is None else "finished"
            cell["seconds"] = None if record is None else record.get("seconds")
        return sorted(listed, key=lambda cell: self._rank(cell["id"]))

    def _rank(self, cell_id: str) -> tuple[int, int]:
        """Cells keep the order of the first run that met them, new ones follow."""
        if cell_id in self.previous_order:
            return (0, self.previous_order.index(cell_id))
        met = [cell.id for cell in self.cells]
        return (1, met.index(cell_id) if cell_id in met else len(met))


def generator_variant(variant: Variant) -> Variant:
    """The variant a generator for ``variant`` trains on: the same options at the
    nearest power-of-two size (generators need one); synthetic images are resized."""
    values = dict(variant.values)
    size = int(values["size"])
    power = 1 << max(5, (size - 1).bit_length())
    if power == size:
        return variant
    values["size"] = min(power, 256)
    return Variant(tuple(values.items()))


def expand_source_paths(data: dict, spec_path: Path) -> dict:
    """``data`` with ``$VARIABLES`` in source paths expanded; an unset one is an error."""
    data = {**data, "sources": [dict(source) for source in data["sources"]]}
    for source in data["sources"]:
        for key in ("path", "images"):
            if source.get(key) is None:
                continue
            expanded = os.path.expandvars(str(source[key]))
            if "$" in expanded:
                raise CxrlabError(
                    f"{spec_path}: source path {source[key]!r} names an unset environment "
                    f"variable; set it (e.g. `export CXRLAB_DATA=../shared/data`) or edit the path"
                )
            source[key] = expanded
    return data


def run_study(
    spec: str | Path | StudySpec,
    out: str | Path,
    *,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] = print,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    dry_run: bool = False,
) -> StudyResult:
    """Run (or continue) the study ``spec`` into the folder ``out``; see the module doc.

    Args:
        spec: the spec file, or a loaded spec.
        out: the study folder.
        device: auto, cpu or cuda for every cell.
        progress: progress bars (cells run in this process only).
        log: where the plan and progress lines go.
        workers: cells run at the same time; 1 (None: the default) runs them one after
            another in this process (with ``executor="ray"``: at most this many Ray tasks at
            once; None or 0 for as many as the cluster takes). Worker processes are
            spawned: a script calling this with ``workers`` > 1 does so under
            ``if __name__ == "__main__":``.
        executor: ``local`` (a process pool of ``workers``) or ``ray``.
        address: the Ray cluster to join (``executor="ray"``; None starts a local one).
        dry_run: print the plan only; write nothing.
    """
    from cxrlab.study.executor import make_executor

    spec = spec if isinstance(spec, StudySpec) else load_spec(spec)
    runner = StudyRunner(spec, out, device=device, progress=progress, log=log)
    if dry_run:
        return runner.run(dry_run=True)
    return runner.run(make_executor(executor, workers=workers, address=address, device=device))
