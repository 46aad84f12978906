"""Leave-site-out cross-validation: will the classifier hold in a hospital it never saw?

Every ordinary split mixes sites, so its validation and test figures measure the
classifier on hospitals it trained on. Here the rows of the PACKED's ``train`` and
``val`` splits (never ``test`` or ``external``: those stay read-once) are cut into K
folds of **whole sites** (the manifest's ``site`` column). Each fold is an ordinary
classifier run (:func:`~cxrlab.clf.trainer.train_classifier`'s machinery, every seed
of the config) in ``OUT/fold-NN/``:

* it trains on the other sites, with its own validation drawn from them by patient
  (:func:`~cxrlab.data.split.plan_splits`, 75/25, stratified by label), which chooses
  the epoch and the threshold (Youden's J) as always;
* it predicts its held-out sites once, at the end: in the fold's run they are its
  ``test`` split (``fold-NN/splits.csv`` names every row's role; rows it does not
  list, the PACKED's test and external ones, are never read).

Sites are kept whole: sites that share a patient or a duplicate image (the split's
leakage groups) are one unit and go to the same fold. Rows whose site is ``unknown``
never form a held-out fold; they only train (unless they share a patient with a known
site, which they then follow). Units are dealt to folds greedily, largest first (ties
in a seeded order): a fold without any unit first, then a fold that lacks a class the
unit brings, then the fold whose COVID-19 and other counts move closest to an even
share; so every fold holds both classes where the data allow.

Pooled over folds, the held-out predictions (each at its fold's own validation
threshold) give the **out-of-site** ROC-AUC, sensitivity and specificity; the folds'
validation predictions pooled give the **in-site** ones; intervals are 95% patient
bootstraps, and the gap (in-site minus out-of-site) is bootstrapped with the two pools
drawn together (:func:`~cxrlab.clf.metrics.paired_bootstrap`), since one patient is in
one fold's validation and another fold's held-out sites. Each fold's own AUCs, their
mean over folds (pooling mixes models whose probabilities are not on one scale; the
mean does not) and every site's out-of-site AUC are reported too. ``OUT/cv.json``,
``OUT/predictions.csv`` (out-of-site), ``OUT/predictions_in_site.csv`` and
``OUT/report.txt`` hold the results; a finished fold is not trained again, an
interrupted one resumes from its checkpoint (``--resume``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlab.clf.config import ClfConfig
from cxrlab.clf.data import generated_mask
from cxrlab.clf.metrics import (
    CONFIDENCE,
    METRICS,
    binary_metrics,
    bootstrap_intervals,
    mean_sd,
    paired_bootstrap,
    percentile_interval,
)
from cxrlab.data.duplicates import UnionFind
from cxrlab.data.manifest import MANIFEST, SITE, UNKNOWN_SITE
from cxrlab.data.packed import Packed, open_packed
from cxrlab.data.split import leakage_groups, plan_splits
from cxrlab.errors import CxrlabError, DatasetError
from cxrlab.utils.fs import atomic_write_text

#: Folds when ``--folds`` is not given (fewer when there are fewer usable sites).
DEFAULT_FOLDS = 5
#: Share of a fold's training rows (by patient group) that form its validation.
VAL_FRACTION = 0.25
#: The split a fold's held-out rows take in its run: read once, after training.
HELD_OUT = "test"
#: The PACKED splits cross-validation draws from (test and external stay read-once).
POOL_SPLITS = ("train", "val")
#: Metrics the gap (in-site minus out-of-site) is given for.
GAP_METRICS = ("roc_auc", "sensitivity", "specificity")
SPLITS_CSV = "splits.csv"
#: ``OUT/PRETRAIN_DIR/fold-NN``: a fold's own SimCLR backbone (``pretrain_epochs``).
PRETRAIN_DIR = "pretrain"
CV_JSON = "cv.json"
PREDICTIONS = "predictions.csv"
PREDICTIONS_IN_SITE = "predictions_in_site.csv"
PREDICTION_COLUMNS = ["id", "patient_id", "site", "fold", "seed", "covid", "probability", "threshold"]  # fmt: skip


def fold_name(index: int) -> str:
    """``fold-00``, ``fold-01``, ...: a fold's sub-run folder."""
    return f"fold-{index:02d}"


@dataclass
class Fold:
    """One fold: the sites it holds out and every row's role in its run.

    Attributes:
        index: 0-based.
        sites: the held-out sites, sorted.
        splits: ``id`` and ``split`` (``train``, ``val`` or :data:`HELD_OUT`) of every row
            the fold's run uses.
        warnings: the validation split's (a class missing from it).
    """

    index: int
    sites: list[str]
    splits: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return fold_name(self.index)

    def count(self, split: str, covid: int | None = None) -> int:
        rows = self.splits["split"] == split
        if covid is not None:
            rows &= self.splits["covid"] == covid
        return int(rows.sum())


@dataclass
class FoldPlan:
    """How the PACKED's train and val rows are cut into folds of whole sites.

    Attributes:
        folds: the folds.
        sites: per site, its real images, COVID-19 images and fold.
        merged: groups of sites kept in one fold because they share patients or images.
        unknown_rows: train/val rows with site ``unknown`` that train in every fold.
        seed: the seed of the fold assignment and validation splits.
        unknown_followers: rows with site ``unknown`` held out with the known site whose
            patient (or duplicate image) they share.
    """

    folds: list[Fold]
    sites: dict[str, dict[str, int]]
    merged: list[list[str]]
    unknown_rows: int
    seed: int
    unknown_followers: int = 0

    def notes(self) -> list[str]:
        """What a reader of the figures must know about the plan."""
        notes = []
        if self.unknown_rows:
            notes.append(
                f"{self.unknown_rows} train/val image(s) with site {UNKNOWN_SITE!r} are "
                "never held out: they train (or validate) in every fold"
            )
        if self.unknown_followers:
            notes.append(
                f"{self.unknown_followers} image(s) with site {UNKNOWN_SITE!r} share a patient "
                "or an image with a known site: held out with it (site 'unknown' in the tables)"
            )
        for group in self.merged:
            notes.append(
                f"sites {', '.join(group)} share patients or duplicate images: held out together"
            )
        for fold in self.folds:
            for covid, name in ((1, "COVID-19"), (0, "non-COVID-19")):
                if fold.count(HELD_OUT, covid) == 0:
                    notes.append(
                        f"{fold.name} (held out: {', '.join(fold.sites)}) holds no {name} "
                        "image: its own out-of-site AUC is undefined (its rows still count "
                        "in the pooled figures)"
                    )
            notes += [f"{fold.name} validation: {w}" for w in fold.warnings]
        return notes


# ------------------------------------------------------------------ the plan
def row_sites(packed: Packed) -> pd.Series:
    """The ``site`` of every manifest row (empty values read as ``unknown``)."""
    sites = packed.manifest[SITE].fillna("").astype(str).str.strip()
    return sites.where(sites != "", UNKNOWN_SITE)


def _made_before_sites(packed: Packed) -> bool:
    """Whether the PACKED's ``manifest.csv`` has no ``site`` column at all (it is read
    as all ``unknown``): it was made before cxrlab recorded sites."""
    with open(packed.path / MANIFEST, encoding="utf-8") as file:
        header = file.readline().strip().split(",")
    return SITE not in header


def assign_units(counts: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Deal units (sites, or sites kept together) to folds; the fold of each unit.

    Args:
        counts: (U, 2) images per unit: non-COVID-19, COVID-19.
        n_folds: K <= U.
        seed: orders units of equal size.

    Returns:
        (U,) fold index per unit; every fold gets at least one unit, and a unit goes
        first to a fold lacking a class it brings, then where the class counts move
        closest to an even share (``counts.sum(0) / K`` each).
    """
    counts = np.asarray(counts, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(counts))
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]  # largest first
    target = counts.sum(0) / n_folds
    filled = np.zeros((n_folds, 2))
    fold_of = np.full(len(counts), -1)
    for unit in order:

        def key(fold: int, unit: int = unit) -> tuple:
            empty = filled[fold].sum() == 0
            brings = int(((counts[unit] > 0) & (filled[fold] == 0)).sum())
            after = filled[fold] + counts[unit]
            cost = ((after - target) ** 2).sum() - ((filled[fold] - target) ** 2).sum()
            return (not empty, -brings, cost, fold)

        fold = min(range(n_folds), key=key)
        fold_of[unit] = fold
        filled[fold] += counts[unit]
    return fold_of


def plan_folds(packed: str | Path | Packed, folds: int | None = None, seed: int = 0) -> FoldPlan:
    """Cut the train and val rows of ``packed`` into folds of whole sites.

    Args:
        packed: a PACKED whose manifest has a ``site`` column.
        folds: K; None: :data:`DEFAULT_FOLDS`, or the number of usable sites when fewer.
        seed: the same seed gives the same folds and validation splits.

    Raises:
        DatasetError: no ``site`` column, no known site, fewer than two usable sites
            (or units of sites), more folds than units, or a fold whose training rows
            hold one class only.
    """
    data = packed if isinstance(packed, Packed) else open_packed(packed)
    sites_all = row_sites(data)
    in_pool = data.manifest["split"].isin(POOL_SPLITS).to_numpy()
    pool = data.manifest[in_pool].reset_index(drop=True)
    if pool.empty:
        raise DatasetError(
            f"{data.path}: no rows in the train or val split to cross-validate; split the "
            "dataset (`cxrlab data split DATASET --by patient`) and preprocess it again"
        )
    real = ~generated_mask(pool)
    sites = sites_all[in_pool].reset_index(drop=True)
    known = sorted(set(sites[real]) - {UNKNOWN_SITE})
    # a generated row naming a site without real rows cannot be held out: training only
    sites = sites.where(sites.isin(known), UNKNOWN_SITE)
    if not known and _made_before_sites(data):
        raise DatasetError(
            f"{data.path}/manifest.csv has no {SITE!r} column (it was made before cxrlab "
            "recorded sites), so its images cannot be grouped by site: import the dataset "
            "again (`cxrlab data import ...`), split it and preprocess it again"
        )
    if not known:
        raise DatasetError(
            f"{data.path}: no sites: every train/val image has site {UNKNOWN_SITE!r}; "
            "import the dataset with a site for its images (`cxrlab data import --help`: "
            "--site-from, --site-level, --site-regex), split and preprocess it again"
        )
    # Sites linked by a patient or a duplicate image are one unit; an unknown-site row
    # in such a group follows its known site (holding the site out but training on the
    # patient's other images would leak it).
    groups = leakage_groups(pool)
    site_index = {site: i for i, site in enumerate(known)}
    links = UnionFind(len(known))
    group_site: dict[int, int] = {}
    for group, site in zip(groups, sites, strict=True):
        if site == UNKNOWN_SITE:
            continue
        if group in group_site:
            links.union(group_site[group], site_index[site])
        else:
            group_site[int(group)] = site_index[site]
    unit_of_site = {site: links.find(site_index[site]) for site in known}
    unit_ids = sorted(set(unit_of_site.values()))
    unit_sites = {u: sorted(s for s in known if unit_of_site[s] == u) for u in unit_ids}
    row_unit = np.array(
        [
            unit_of_site[sites[i]]
            if sites[i] != UNKNOWN_SITE
            else (links.find(group_site[g]) if g in group_site else -1)
            for i, g in enumerate(groups)
        ]
    )
    if len(unit_ids) < 2:
        what = (
            f"only one site ({known[0]})"
            if len(known) == 1
            else f"sites {', '.join(known)} share patients or images, so they form one group"
        )
        raise DatasetError(
            f"{data.path}: leave-site-out validation needs at least 2 sites in the train and "
            f"val splits; it has {what}"
        )
    n_folds = min(DEFAULT_FOLDS, len(unit_ids)) if folds is None else folds
    if n_folds > len(unit_ids):
        raise DatasetError(
            f"--folds {folds} is more than the {len(unit_ids)} group(s) of whole sites in "
            f"{data.path} ({'; '.join(', '.join(s) for s in unit_sites.values())}); give "
            f"--folds {len(unit_ids)} or fewer"
        )
    covid = pool["covid"].astype(int).to_numpy()
    counts = np.array(
        [[((row_unit == u) & real & (covid == c)).sum() for c in (0, 1)] for u in unit_ids]
    )
    fold_of_unit = dict(zip(unit_ids, assign_units(counts, n_folds, seed), strict=True))
    row_fold = np.array([fold_of_unit[u] if u >= 0 else -1 for u in row_unit])

    plan_folds_list = []
    for index in range(n_folds):
        held = row_fold == index
        training = pool[~held]
        if training.loc[real[~held], "covid"].astype(int).nunique() < 2:
            raise DatasetError(
                f"{data.path}: {fold_name(index)} (held out: "
                f"{', '.join(s for u in unit_ids if fold_of_unit[u] == index for s in unit_sites[u])}"
                ") would train on one class only: the other sites hold no image of the "
                "other class; use fewer --folds or a dataset with both classes at more sites"
            )
        split, warnings = plan_splits(
            training.reset_index(drop=True), (1.0 - VAL_FRACTION, VAL_FRACTION), seed=seed + index
        )
        roles = pd.concat(
            [
                pd.DataFrame(
                    {
                        "id": training["id"].to_numpy(),
                        "split": split.to_numpy(),
                        "covid": training["covid"].astype(int).to_numpy(),
                    }
                ),
                # held-out real rows only: generated copies of them neither train nor judge
                pd.DataFrame(
                    {
                        "id": pool.loc[held & real, "id"].to_numpy(),
                        "split": HELD_OUT,
                        "covid": pool.loc[held & real, "covid"].astype(int).to_numpy(),
                    }
                ),
            ],
            ignore_index=True,
        )
        held_sites = sorted(s for u in unit_ids if fold_of_unit[u] == index for s in unit_sites[u])
        plan_folds_list.append(Fold(index, held_sites, roles, warnings))

    site_table = {}
    for site in known:
        rows = (sites == site).to_numpy() & real
        site_table[site] = {
            "images": int(rows.sum()),
            "covid": int(covid[rows].sum()),
            "fold": int(fold_of_unit[unit_of_site[site]]),
        }
    merged = [s for s in unit_sites.values() if len(s) > 1]
    unknown_rows = int(((row_unit == -1) & real).sum())
    followers = int(((sites == UNKNOWN_SITE).to_numpy() & (row_unit >= 0) & real).sum())
    return FoldPlan(plan_folds_list, site_table, merged, unknown_rows, seed, followers)


# ------------------------------------------------------------------ training
def fold_config(config: ClfConfig, fold: Fold) -> ClfConfig:
    """The ordinary run config of one fold: ``OUT/fold-NN`` with its splits file (and,
    with ``pretrain_epochs``, its backbone from ``OUT/pretrain/fold-NN``)."""
    out = Path(config.out) / fold.name
    extra = {}
    if config.pretrain_epochs:
        extra = {"init": str(pretrain_folder(config, fold)), "pretrain_epochs": 0}
    return dataclasses.replace(
        config, out=str(out), cv="none", folds=None, splits_file=str(out / SPLITS_CSV), **extra
    )


def pretrain_folder(config: ClfConfig, fold: Fold) -> Path:
    """Where fold ``fold``'s own pretrained backbone goes."""
    return Path(config.out) / PRETRAIN_DIR / fold.name


def pretrain_config(config: ClfConfig, fold: Fold):
    """The :class:`~cxrlab.clf.config.PretrainConfig` of ``fold``'s backbone: the
    ``train`` rows of the fold's ``splits.csv`` only (not its validation, never its
    held-out sites), the run's architecture, standardisation, device and first seed."""
    from cxrlab.clf.config import PretrainConfig

    return PretrainConfig(
        backbone=config.arch,
        data=config.data,
        out=str(pretrain_folder(config, fold)),
        pretrain_on=["train"],
        splits_file=str(Path(config.out) / fold.name / SPLITS_CSV),
        standardize=config.standardize,
        epochs=config.pretrain_epochs,
        seed=config.seeds[0],
        device=config.device,
    )


def pretrain_fold(config: ClfConfig, fold: Fold, resume: bool, progress: bool) -> None:
    """Pretrain ``fold``'s backbone unless it has finished (an interrupted pretraining
    continues from its last epoch when ``resume``)."""
    from cxrlab.clf.pretrain import pretrain_backbone
    from cxrlab.utils.progress import tqdm

    if progress:
        tqdm.write(f"{fold.name}: SimCLR pretraining on the other sites' training rows")
    pretrain_backbone(pretrain_config(config, fold), resume=resume, progress=progress)


def _splits_text(fold: Fold) -> str:
    return fold.splits[["id", "split"]].to_csv(index=False, lineterminator="\n")


def _fold_finished(config: ClfConfig) -> bool:
    run = Path(config.out)
    return (run / "metrics.json").is_file() and all(
        (run / f"seed_{seed}" / "metrics.json").is_file() for seed in config.seeds
    )


def _train_folds(fabric, configs: list[ClfConfig], resume: bool, progress: bool) -> dict | None:
    """Every unfinished fold's seeds, one fold after the other, in each of Fabric's
    processes (one launch for all, as multi-GPU DDP needs); the first process's results."""
    from cxrlab.clf.trainer import train_seeds
    from cxrlab.utils.progress import tqdm

    results = {}
    for config in configs:
        if progress and fabric.is_global_zero:
            tqdm.write(f"{Path(config.out).name}: training on the other sites")
        results[config.out] = train_seeds(fabric, config, resume, progress)
    return results if fabric.is_global_zero else None


@dataclass
class CvResult:
    """A finished leave-site-out validation: ``summary`` is what ``cv.json`` holds."""

    run: Path
    plan: FoldPlan
    summary: dict
    report: str
    trained: list[str]
    skipped: list[str]


def cross_validate(
    config: ClfConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    plan_seed: int = 0,
    fold_synthetic: dict[int, str] | None = None,
) -> CvResult | None:
    """Leave-site-out cross-validation of ``config`` (``cv: sites``); see the module doc.

    Args:
        config: what to train in every fold; ``out`` holds ``fold-NN/`` and the pooled
            results.
        resume: continue a started run: finished folds are skipped, an interrupted one
            resumes from its last epoch (as ``clf train --resume``).
        progress: progress bars and one line per epoch.
        plan_seed: seeds the fold assignment and each fold's validation split.
        fold_synthetic: fold index -> synthetic images added to that fold's training
            only; each must come from a generator that learned that fold's training
            rows alone (each fold's run checks its provenance, as ``--synthetic``).

    Returns:
        The results; None in the extra processes of multi-GPU DDP.

    Raises:
        CxrlabError: before any training, for a PACKED without usable sites (see
            :func:`plan_folds`), ``--synthetic`` (its generator learned the held-out
            sites), or a run folder that may not be written or resumed.
    """
    from cxrlab.clf import trainer
    from cxrlab.utils import outputs
    from cxrlab.utils.device import make_fabric
    from cxrlab.utils.outputs import check_output

    if config.cv != "sites":
        raise CxrlabError(f"cv {config.cv!r}: cross_validate needs cv 'sites'")
    if config.synthetic:
        raise CxrlabError(
            "--synthetic with --cv sites: the generator learned images of every train site, "
            "the sites each fold holds out too, so its images would carry them into "
            "training; cross-validate without --synthetic (or with --oversample-positive)"
        )
    if config.splits_file:
        raise CxrlabError("--cv sites makes each fold's splits itself; give no splits_file")
    if config.pretrain_epochs and config.devices > 1:
        raise CxrlabError(
            "--pretrain-epochs with --devices > 1: each fold's pretraining runs in one "
            "process; cross-validate with --devices 1"
        )
    started_at = time.perf_counter()
    run = Path(config.out)
    check_output(run, kind=outputs.CLASSIFIER_RUN, inputs=[config.data])
    plan = plan_folds(config.data, config.folds, plan_seed)
    configs = [fold_config(config, fold) for fold in plan.folds]
    if fold_synthetic:  # per-fold images: each fold's generator never saw its held-out sites
        configs = [
            dataclasses.replace(fc, synthetic=fold_synthetic.get(fold.index))
            for fold, fc in zip(plan.folds, configs, strict=True)
        ]
    pretraining = list((run / PRETRAIN_DIR).glob("fold-*/checkpoints/*.pt"))
    config.guard_run_folder(run, resume, started=trainer.run_started(run) or bool(pretraining))
    for fold, fc in zip(plan.folds, configs, strict=True):
        path = Path(fc.out) / SPLITS_CSV
        if path.is_file() and path.read_text() != _splits_text(fold):
            raise CxrlabError(
                f"{path} differs from the folds {config.data} gives now (its manifest "
                "changed since the run started): choose another --out"
            )
    to_train = [c for c in configs if not (resume and _fold_finished(c))]
    skipped = [Path(c.out).name for c in configs if c not in to_train]
    for fc in to_train:
        trainer.check_run(fc, resume)
    fabric = make_fabric(config.device, config.devices)  # refuses a missing CUDA first
    run.mkdir(parents=True, exist_ok=True)
    config.write(run / "config.yaml")
    notes = {}
    for fold, fc in zip(plan.folds, configs, strict=True):
        if fc not in to_train:
            continue
        Path(fc.out).mkdir(parents=True, exist_ok=True)
        # config.yaml first: a folder holding only splits.csv is not a run folder, and
        # would be refused by the next --resume
        fc.write(Path(fc.out) / "config.yaml")
        atomic_write_text(Path(fc.out) / SPLITS_CSV, _splits_text(fold))
        if config.pretrain_epochs:  # before start_run: its notes read the backbone
            pretrain_fold(config, fold, resume, progress)
        notes[fc.out] = trainer.start_run(fc)
    if progress and skipped:
        print(f"finished before, not trained again: {', '.join(skipped)}")
    results = fabric.launch(_train_folds, to_train, resume, progress)
    if results is None:
        return None
    for fc in to_train:
        trainer.summarise_run(fc, results[fc.out], notes[fc.out])
    summary = summarise_cv(config, plan, configs)
    summary["seconds_this_call"] = round(time.perf_counter() - started_at, 1)
    summary["folds_skipped_this_call"] = skipped
    report = cv_report(summary)
    atomic_write_text(run / CV_JSON, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(run / "report.txt", report + "\n")
    return CvResult(run, plan, summary, report, [Path(c.out).name for c in to_train], skipped)


# ------------------------------------------------------------------ pooled figures
def _read_predictions(config: ClfConfig, fold: Fold, seed: int, which: str) -> pd.DataFrame:
    path = Path(config.out) / f"seed_{seed}" / f"predictions_{which}.csv"
    frame = pd.read_csv(path, dtype={"id": str, "patient_id": str}, keep_default_na=False)
    frame["fold"] = fold.index
    frame["seed"] = seed
    return frame


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _estimate(value: float, interval: tuple[float, float]) -> dict:
    return {"value": _number(value), "low": _number(interval[0]), "high": _number(interval[1])}


def pooled_evaluation(predictions: pd.DataFrame, n_resamples: int, seed: int) -> dict:
    """Every metric of a pooled predictions table (``covid``, ``probability``,
    ``threshold`` per row, ``patient_id``) with its 95% patient-bootstrap interval."""
    covid = predictions["covid"].to_numpy().astype(np.int64)
    probability = predictions["probability"].to_numpy().astype(np.float64)
    threshold = predictions["threshold"].to_numpy().astype(np.float64)
    patients = predictions["patient_id"].astype(str).to_numpy()
    point = binary_metrics(covid, probability, threshold)
    intervals = bootstrap_intervals(
        covid, probability, threshold, patients, n_resamples=n_resamples, seed=seed
    )
    return {
        "n_images": len(covid),
        "n_patients": int(pd.Series(patients).nunique()),
        "n_positive": int(covid.sum()),
        "metrics": {name: _estimate(point[name], intervals[name]) for name in METRICS},
    }


def gap_estimates(
    in_site: pd.DataFrame, out_of_site: pd.DataFrame, n_resamples: int, seed: int
) -> dict:
    """In-site minus out-of-site value of :data:`GAP_METRICS`, with a paired patient
    bootstrap interval (a patient shared by the pools moves in both)."""

    def arrays(frame: pd.DataFrame) -> tuple:
        return (
            frame["covid"].to_numpy().astype(np.int64),
            frame["probability"].to_numpy().astype(np.float64),
            frame["threshold"].to_numpy().astype(np.float64),
            frame["patient_id"].astype(str).to_numpy(),
        )

    inside, outside = arrays(in_site), arrays(out_of_site)
    resampled = paired_bootstrap([inside, outside], n_resamples=n_resamples, seed=seed)
    point_in = binary_metrics(*inside[:3])
    point_out = binary_metrics(*outside[:3])
    return {
        name: _estimate(
            point_in[name] - point_out[name],
            percentile_interval(resampled[0][name] - resampled[1][name], CONFIDENCE),
        )
        for name in GAP_METRICS
    }


def _point(frame: pd.DataFrame) -> dict[str, float]:
    if frame.empty:
        return dict.fromkeys(METRICS, math.nan)
    return binary_metrics(
        frame["covid"].to_numpy().astype(np.int64),
        frame["probability"].to_numpy().astype(np.float64),
        frame["threshold"].to_numpy().astype(np.float64),
    )


def _pretrain_record(config: ClfConfig, fold: Fold) -> dict:
    """What ``cv.json`` keeps of a fold's pretraining: where, on how many images, how
    long, and the weights' digest."""
    from cxrlab.clf.pretrain import RECORD

    folder = pretrain_folder(config, fold)
    record = json.loads((folder / RECORD).read_text())
    return {
        "folder": str(folder),
        "images": record["images"],
        "epochs": record["epochs"],
        "seconds": record["seconds"],
        "weights_sha256": record["weights_sha256"],
    }


def summarise_cv(config: ClfConfig, plan: FoldPlan, configs: list[ClfConfig]) -> dict:
    """Read every fold's predictions, write the pooled tables, and return ``cv.json``."""
    run = Path(config.out)
    data = open_packed(config.data)
    site_of = dict(zip(data.manifest["id"], row_sites(data), strict=True))
    out_frames, in_frames = [], []
    fold_rows = []
    for fold, fc in zip(plan.folds, configs, strict=True):
        per_seed = {}
        seconds = 0.0
        for seed in config.seeds:
            held = _read_predictions(fc, fold, seed, HELD_OUT)
            val = _read_predictions(fc, fold, seed, "val")
            out_frames.append(held)
            in_frames.append(val)
            values = json.loads((Path(fc.out) / f"seed_{seed}" / "metrics.json").read_text())
            seconds += float(values["seconds"])
            per_seed[str(seed)] = {
                "best_epoch": int(values["best_epoch"]),
                "threshold": float(values["threshold"]),
                "in_site_auc": _number(_point(val)["roc_auc"]),
                "out_of_site_auc": _number(_point(held)["roc_auc"]),
            }
        fold_rows.append(
            {
                "fold": fold.index,
                "run": fold.name,
                "held_out_sites": fold.sites,
                "train_images": fold.count("train"),
                "val_images": fold.count("val"),
                "held_out_images": fold.count(HELD_OUT),
                "held_out_covid": fold.count(HELD_OUT, 1),
                "seconds": round(seconds, 1),
                "per_seed": per_seed,
            }
            | ({"pretrain": _pretrain_record(config, fold)} if config.pretrain_epochs else {})
        )
    out_of_site = pd.concat(out_frames, ignore_index=True)
    in_site = pd.concat(in_frames, ignore_index=True)
    for frame in (out_of_site, in_site):
        frame["site"] = frame["id"].map(site_of)
    for frame, name in ((out_of_site, PREDICTIONS), (in_site, PREDICTIONS_IN_SITE)):
        atomic_write_text(
            run / name, frame[PREDICTION_COLUMNS].to_csv(index=False, lineterminator="\n")
        )

    seeds = {}
    for seed in config.seeds:
        held = out_of_site[out_of_site["seed"] == seed]
        val = in_site[in_site["seed"] == seed]
        per_site = {}
        for site, part in held.groupby("site", sort=True):
            point = _point(part)
            per_site[str(site)] = {
                "fold": int(part["fold"].iloc[0]),
                "images": len(part),
                "covid": int(part["covid"].sum()),
                **{name: _number(point[name]) for name in GAP_METRICS},
            }
        fold_means = {
            f"{pool}_auc": _number(
                mean_sd([fold["per_seed"][str(seed)][f"{pool}_auc"] for fold in fold_rows])[0]
            )
            for pool in ("in_site", "out_of_site")
        }
        seeds[str(seed)] = {
            "fold_mean": fold_means,
            "out_of_site": pooled_evaluation(held, config.bootstrap, seed),
            "in_site": pooled_evaluation(val, config.bootstrap, seed),
            "gap": gap_estimates(val, held, config.bootstrap, seed),
            "per_site": per_site,
        }

    def across(path: tuple[str, ...]) -> dict:
        values = []
        for values_of_seed in seeds.values():
            item = values_of_seed
            for key in path:
                item = item[key]
            values.append(math.nan if item is None else item)
        mean, sd = mean_sd(values)
        return {"mean": _number(mean), "sd": _number(sd)}

    return {
        "scheme": "leave-site-out",
        "arch": config.arch,
        "data": config.data,
        "epochs": config.epochs,
        "pretrain_epochs": config.pretrain_epochs,
        "seeds": config.seeds,
        "n_folds": len(plan.folds),
        "plan_seed": plan.seed,
        "val_fraction": VAL_FRACTION,
        "threshold_rule": "Youden's J on each fold's own validation",
        "confidence": CONFIDENCE,
        "bootstrap": config.bootstrap,
        "sites": plan.sites,
        "folds": fold_rows,
        "per_seed": seeds,
        "mean_over_seeds": {
            f"{pool}_{name}": across((pool, "metrics", name, "value"))
            for pool in ("in_site", "out_of_site")
            for name in GAP_METRICS
        }
        | {f"gap_{name}": across(("gap", name, "value")) for name in GAP_METRICS}
        | {
            f"fold_mean_{pool}_auc": across(("fold_mean", f"{pool}_auc"))
            for pool in ("in_site", "out_of_site")
        },
        "notes": plan.notes(),
    }


# ------------------------------------------------------------------ report
def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _with_interval(estimate: dict) -> str:
    return f"{_fmt(estimate['value'])} [{_fmt(estimate['low'])}, {_fmt(estimate['high'])}]"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _sites_cell(sites: list[str], width: int = 60) -> str:
    """``a, b, c`` or, past ``width`` characters, ``a, b (+7 more)`` (cv.json has all)."""
    shown: list[str] = []
    for index, site in enumerate(sites):
        rest = len(sites) - index - 1
        tail = f" (+{rest} more)" if rest else ""
        if shown and len(", ".join([*shown, site]) + tail) > width:
            return f"{', '.join(shown)} (+{len(sites) - len(shown)} more)"
        shown.append(site)
    return ", ".join(shown)


def cv_report(summary: dict) -> str:
    """The text summary ``clf train --cv sites`` prints and keeps in ``report.txt``."""
    seeds = [str(s) for s in summary["seeds"]]
    lines = [
        f"leave-site-out validation: {summary['arch']} on {summary['data']}, "
        f"{summary['n_folds']} folds of whole sites, {summary['epochs']} epochs, "
        f"seed(s) {', '.join(seeds)}"
    ]
    rows = [["fold", "train", "val", "held out (COVID-19)"]]
    rows[0] += [f"in-site AUC s{s}" for s in seeds] + [f"out-of-site AUC s{s}" for s in seeds]
    rows[0].append("held-out sites")
    for fold in summary["folds"]:
        row = [
            fold["run"],
            str(fold["train_images"]),
            str(fold["val_images"]),
            f"{fold['held_out_images']} ({fold['held_out_covid']})",
        ]
        row += [_fmt(fold["per_seed"][s]["in_site_auc"]) for s in seeds]
        row += [_fmt(fold["per_seed"][s]["out_of_site_auc"]) for s in seeds]
        # largest sites first: the cell may end in "(+N more)"
        sizes = summary["sites"]
        held = sorted(fold["held_out_sites"], key=lambda site: (-sizes[site]["images"], site))
        row.append(_sites_cell(held))
        rows.append(row)
    lines += [_table(rows), ""]
    for seed in seeds:
        values = summary["per_seed"][seed]
        out, inside = values["out_of_site"], values["in_site"]
        lines.append(
            f"seed {seed}, pooled over folds, each at its fold's validation threshold; "
            f"95% patient-bootstrap CIs ({out['n_images']} out-of-site images, "
            f"{out['n_patients']} patients, {out['n_positive']} COVID-19):"
        )
        rows = [
            ["metric", "in-site (validation)", "out-of-site (held-out sites)", "gap (in - out)"]
        ]
        for name in GAP_METRICS:
            rows.append(
                [
                    name,
                    _with_interval(inside["metrics"][name]),
                    _with_interval(out["metrics"][name]),
                    _with_interval(values["gap"][name]),
                ]
            )
        means = values["fold_mean"]
        lines += [
            _table(rows),
            f"mean of the folds' own AUCs (folds holding both classes): in-site "
            f"{_fmt(means['in_site_auc'])}, out-of-site {_fmt(means['out_of_site_auc'])}",
            "",
        ]
        rows = [["site", "fold", "images", "COVID-19", "out-of-site AUC", "sensitivity", "specificity"]]  # fmt: skip
        by_size = sorted(values["per_site"].items(), key=lambda kv: (-kv[1]["images"], kv[0]))
        for site, item in by_size:
            rows.append(
                [
                    site,
                    str(item["fold"]),
                    str(item["images"]),
                    str(item["covid"]),
                    _fmt(item["roc_auc"]),
                    _fmt(item["sensitivity"]),
                    _fmt(item["specificity"]),
                ]
            )
        lines += [
            f"per site (seed {seed}, largest first; AUC n/a where a site holds one class):",
            _table(rows),
        ]
        lines.append("")
    if len(seeds) > 1:
        means = summary["mean_over_seeds"]
        lines.append(
            "mean ± sd over seeds: "
            + "; ".join(
                f"{label} {_fmt(means[key]['mean'])} ± {_fmt(means[key]['sd'])}"
                for label, key in (
                    ("in-site AUC", "in_site_roc_auc"),
                    ("out-of-site AUC", "out_of_site_roc_auc"),
                    ("gap", "gap_roc_auc"),
                )
            )
        )
    seconds = sum(fold["seconds"] for fold in summary["folds"])
    if summary.get("pretrain_epochs"):
        pretrain_seconds = sum(fold["pretrain"]["seconds"] for fold in summary["folds"])
        lines.append(
            f"backbones: SimCLR-pretrained per fold for {summary['pretrain_epochs']} epochs "
            "on that fold's training rows only (pretrain/fold-NN; the held-out sites and "
            f"the fold's validation unseen), {pretrain_seconds:.0f} s in all"
        )
    lines.append(
        f"training time: {seconds:.0f} s over {summary['n_folds']} folds and "
        f"{len(seeds)} seed(s); predictions in predictions.csv (out-of-site) and "
        "predictions_in_site.csv"
    )
    lines += [f"note: {note}" for note in summary["notes"]]
    return "\n".join(lines).rstrip()
