"""Training classifiers the honest way: fit on train, choose on validation, test once.

For each seed, ``RUN/seed_N/`` receives

* ``epochs.csv``: epoch, learning rate, train loss, validation loss and AUC, seconds;
* ``tensorboard/``: the same per epoch as TensorBoard scalars (``tensorboard --logdir
  RUN`` shows every seed);
* ``checkpoints/last.pt``: everything needed to resume (model, optimizer, scheduler,
  RNG states, best-so-far), rewritten atomically after every epoch;
* ``best.pt``: the weights of the epoch with the best validation AUC (ties: lower
  validation loss), then, once training ends, the decision threshold chosen on
  validation (Youden's J);
* ``predictions_val.csv``, ``predictions_test.csv``, ``confusion_matrix_test.png``,
  ``roc_test.png`` and ``metrics.json``.

``RUN/config.yaml`` holds the :class:`~cxrlab.clf.config.ClfConfig`; ``RUN/metrics.json``
and ``RUN/report.txt`` hold every seed's numbers beside their mean and sd.

The test split is read once, after the last epoch, by the best model: no choice
(epoch, threshold, early stop) ever sees it. Augmented and synthetic images only
train (see :mod:`cxrlab.clf.data`). The learning rate follows a cosine over the
whole run (or halves on validation-loss plateaus), so it never reaches ~0 early.
On CPU a seed gives the same run bitwise, resumed or not.

Training runs on Lightning Fabric, as the generators do: ``devices`` > 1 trains data
parallel (DDP; on CPU with gloo), every process taking its share of each batch of
``batch_size`` images while the epoch's order, the validation pass and every choice are
the same in all of them; only the first process writes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxrlab.clf.config import ClfConfig
from cxrlab.clf.data import (
    ORIGINS,
    ImageSet,
    data_preprocessing,
    evaluation_set,
    patient_overlap,
    synthetic_notes,
    training_set,
    with_splits,
)
from cxrlab.clf.evaluate import plot_confusion_matrix, plot_roc, write_predictions
from cxrlab.clf.metrics import (
    Evaluation,
    evaluate_predictions,
    mean_sd,
    seeds_table,
    summarise_seeds,
    youden_threshold,
)
from cxrlab.clf.models import ModelSpec, build_classifier, histogram_reference
from cxrlab.clf.predict import BEST, backbone_features, predict, predictions_frame
from cxrlab.clf.pretrain import init_notes, init_summary
from cxrlab.data.packed import Packed, open_packed
from cxrlab.errors import CxrlabError
from cxrlab.utils import outputs
from cxrlab.utils.checkpoint import load_checkpoint, save_checkpoint
from cxrlab.utils.device import autocast, make_fabric, resolve_device
from cxrlab.utils.fs import atomic_write_text
from cxrlab.utils.outputs import check_output
from cxrlab.utils.progress import tqdm
from cxrlab.utils.runlog import RunLog, capture_rng, open_tensorboard, restore_rng

LAST = "last.pt"
EPOCH_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "val_auc", "best", "seconds"]
PLATEAU_PATIENCE_EPOCHS = 5
PLATEAU_FACTOR = 0.5
#: The largest feature cache (train + val maps of a frozen backbone) kept in memory:
#: small enough that a run's memory stays well under 2 GiB and grows little with the
#: dataset (issue 25, bench_scale, one frozen resnet18 epoch at 64 px, 3,000 -> 30,000
#: images: +36% with 2 GiB, +29% with 256 MiB). 1,250 images at 224 px fit, or 15,000
#: at 64 px; larger sets compute the maps every epoch.
FEATURE_CACHE_MAX_BYTES = 128 * 1024**2


@dataclass
class SeedResult:
    """One seed's outcome: the chosen epoch, the validation threshold, and the evaluations."""

    seed: int
    folder: Path
    best_epoch: int
    val_auc: float
    threshold: float
    val: Evaluation
    test: Evaluation | None
    seconds: float

    def as_dict(self) -> dict:
        return {
            "seed": self.seed,
            "best_epoch": self.best_epoch,
            "val_auc_best_epoch": None if not math.isfinite(self.val_auc) else self.val_auc,
            "threshold": self.threshold,
            "threshold_rule": "Youden's J on the validation split",
            "seconds": round(self.seconds, 1),
            "val": self.val.as_dict(),
            "test": None if self.test is None else self.test.as_dict(),
        }

    @classmethod
    def from_dict(cls, folder: Path, values: dict) -> SeedResult:
        val_auc = values["val_auc_best_epoch"]
        return cls(
            seed=int(values["seed"]),
            folder=folder,
            best_epoch=int(values["best_epoch"]),
            val_auc=math.nan if val_auc is None else float(val_auc),
            threshold=float(values["threshold"]),
            val=Evaluation.from_dict(values["val"]),
            test=None if values["test"] is None else Evaluation.from_dict(values["test"]),
            seconds=float(values["seconds"]),
        )


@dataclass
class RunResult:
    """Every seed of a run and the text report."""

    run: Path
    seeds: dict[int, SeedResult]
    report: str
    notes: list[str] = field(default_factory=list)


def epoch_order(labels: np.ndarray, balance: str, generator: torch.Generator) -> torch.Tensor:
    """Positions of one epoch: a permutation, or (``oversample``) a class-balanced draw.

    ``oversample`` draws len(labels) positions with replacement, each class with
    probability 1/2 (samples of a class equally likely).
    """
    n = len(labels)
    if balance != "oversample":
        return torch.randperm(n, generator=generator)
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    weights = torch.from_numpy(1.0 / counts[labels])
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """(2,) weights n / (2 n_c): each class contributes half of the loss."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return torch.tensor(len(labels) / (2.0 * counts), dtype=torch.float32)


def _auc(covid: np.ndarray, probability: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(covid)) < 2:
        return math.nan
    return float(roc_auc_score(covid, probability))


def _better(auc: float, loss: float, best_auc: float, best_loss: float) -> bool:
    """Higher validation AUC wins; ties (or undefined AUCs) go to the lower loss."""
    key = (auc if math.isfinite(auc) else -math.inf, -loss)
    best = (best_auc if math.isfinite(best_auc) else -math.inf, -best_loss)
    return key > best


class SeedTrainer:
    """Trains one seed of a :class:`ClfConfig` into ``RUN/seed_N``.

    Args:
        config: the run's configuration.
        seed: this run's seed (weights, data order, augmentation, synthetic draw).
        fabric: the (launched) Lightning Fabric to train on (:func:`make_fabric`).
        progress: show a progress bar per epoch (first process only).
    """

    def __init__(self, config: ClfConfig, seed: int, fabric, *, progress: bool = True) -> None:
        self.config = config
        self.seed = seed
        self.fabric = fabric
        self.device = device = fabric.device
        self.rank, self.world = fabric.global_rank, fabric.world_size
        self.writer = fabric.is_global_zero  # the one process that writes files
        self.progress = progress and self.writer
        self.folder = Path(config.out) / f"seed_{seed}"
        self.packed = run_data(config)
        self.train_images: ImageSet = training_set(
            self.packed,
            synthetic=config.synthetic,
            synthetic_ratio=config.synthetic_ratio,
            oversample_positive=config.oversample_positive,
            seed=seed,
            synthetic_unverified=config.synthetic_unverified,
            allow_mismatch=config.allow_mismatch,
        )
        self.val_images: ImageSet = evaluation_set(self.packed, "val")
        labels = self.train_images.labels
        if len(np.unique(labels)) < 2:
            raise CxrlabError(
                f"{config.data}: the training images hold one class only "
                f"(covid={int(labels[0])}); a classifier needs both"
            )
        self.spec = ModelSpec(
            arch=config.arch,
            size_px=self.train_images.size_px,
            head=config.head,
            pretrained=config.resolved_pretrained,
            standardize=config.standardize,
        )
        torch.manual_seed(seed)  # the same initial weights in every process
        self.model = build_classifier(self.spec).to(device)
        if config.standardize == "histogram":  # the reference, saved with the weights
            self.model.set_histogram_reference(histogram_reference(self.train_images))
        if config.init:  # a `clf pretrain` backbone; the head keeps its seeded random start
            from cxrlab.clf.pretrain import load_init, read_init

            init = read_init(config.init)
            load_init(self.model, init, arch=config.arch, standardize=config.standardize)
        if device.type == "cuda" or config.freeze_backbone:
            # on CPU too for a frozen backbone, which only runs inference: oneDNN's
            # channels-last convolutions are about 1.3x faster there (ResNet-18, 224 px)
            self.model.to(memory_format=torch.channels_last)
        if config.freeze_backbone:
            self.model.freeze_backbone()
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            parameters,
            lr=config.lr,
            weight_decay=config.weight_decay,
            fused=True if device.type == "cuda" else None,
        )
        self.scheduler = self._scheduler()
        # Fabric's wrapper (DDP with several processes) trains; `self.model`, the same
        # weights unwrapped, validates, tests and is checkpointed.
        self.trained, self.optimizer = fabric.setup(self.model, self.optimizer)
        self.order_rng = torch.Generator().manual_seed(seed)
        self.augment = None
        if config.augment != "none":
            from cxrlab.preprocess.augment import BatchAugment

            self.augment = BatchAugment(config.augment, seed=seed)
        self.loss_weights = class_weights(labels) if config.balance == "weighted-loss" else None
        # A frozen backbone (eval mode: fixed BatchNorm statistics) gives the same feature
        # maps of an image every epoch: those of the validation images (never augmented)
        # and, without augmentation, of the training images are computed once, in the
        # first epoch; the head then trains on them (50 epochs cost little more than 1).
        self.cache_features = config.freeze_backbone
        self.train_features: torch.Tensor | None = None
        self.val_features: torch.Tensor | None = None
        self.epoch = 0
        self.best_epoch = 0
        self.best_auc = -math.inf
        self.best_loss = math.inf
        self.elapsed = 0.0

    def _scheduler(self):
        config = self.config
        floor = config.lr * config.min_lr_fraction
        if config.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=config.epochs, eta_min=floor
            )
        if config.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode="min",
                factor=PLATEAU_FACTOR,
                patience=PLATEAU_PATIENCE_EPOCHS,
                min_lr=floor,
            )
        return None

    # ------------------------------------------------------------- state
    def state(self) -> dict:
        state = {
            "seed": self.seed,
            "epoch": self.epoch,
            "seconds": self.elapsed,
            "spec": self.spec.as_dict(),
            "config": self.config.as_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_epoch": self.best_epoch,
            "best_auc": self.best_auc,
            "best_loss": self.best_loss,
            "rng_order": self.order_rng.get_state(),
            **capture_rng(self.device),
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(state, self.device)
        self.order_rng.set_state(state["rng_order"])
        self.epoch = int(state["epoch"])
        self.best_epoch = int(state["best_epoch"])
        self.best_auc = float(state["best_auc"])
        self.best_loss = float(state["best_loss"])
        self.elapsed = float(state["seconds"])

    # ------------------------------------------------------------- epochs
    def _compute_features(self) -> None:
        """Fill the feature cache (when it applies and fits in memory) once per run."""
        if not self.cache_features:
            return
        self.cache_features = False  # once per run, whether they fit or not
        self.model.train()  # the frozen backbone stays in eval mode
        limit = FEATURE_CACHE_MAX_BYTES
        options = {"device": self.device, "batch_size": self._eval_batch()}
        self.val_features = backbone_features(
            self.model, self.val_images, max_bytes=limit, **options
        )
        if self.augment is None and self.val_features is not None:
            limit -= self.val_features.numel() * self.val_features.element_size()
            self.train_features = backbone_features(
                self.model, self.train_images, max_bytes=limit, **options
            )

    def train_epoch(self) -> float:
        """One pass over the training images; returns the mean training loss."""
        config, images = self.config, self.train_images
        order = epoch_order(images.labels, config.balance, self.order_rng).numpy()
        batches = [
            order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)
        ]
        if len(batches) > 1 and len(batches[-1]) < 2 * self.world:
            batches.pop()  # BatchNorm cannot train on a single image (per process)
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        counted = 0
        bar = tqdm(
            batches,
            desc=f"seed {self.seed} epoch {self.epoch + 1}/{config.epochs}",
            leave=False,
            disable=not self.progress,
        )
        self._compute_features()
        self.trained.train()
        for index, positions in enumerate(bar):
            positions = positions[self.rank :: self.world]  # this process' share
            labels = torch.from_numpy(images.labels[positions]).to(self.device)
            if self.train_features is not None:
                maps = self.train_features[torch.from_numpy(positions).to(self.device)]
                logits = self.trained(maps, from_features=True)
            else:
                batch = images.batch(positions).to(self.device, non_blocking=True)
                if self.augment is not None:  # training batches only, never val/test
                    step = self.epoch * len(batches) + index
                    batch = self.augment(batch, step * self.world + self.rank)
                if self.device.type == "cuda":
                    batch = batch.contiguous(memory_format=torch.channels_last)
                if self.model.backbone_frozen:  # no autograd bookkeeping for it
                    with torch.no_grad(), autocast(self.device):
                        maps = self.model.features(batch)
                    logits = self.trained(maps, from_features=True)
                else:
                    logits = self.trained(batch)
            loss = self.model.loss(logits, labels, self.loss_weights)
            self.optimizer.zero_grad(set_to_none=True)
            self.fabric.backward(loss)
            self.optimizer.step()
            loss_sum += loss.detach() * len(positions)
            counted += len(positions)
        bar.close()
        if self.world > 1:  # every process sees the whole epoch's mean (and divergence)
            totals = self.fabric.all_reduce(
                torch.stack([loss_sum, torch.tensor(float(counted), device=self.device)]),
                reduce_op="sum",
            )
            loss_sum, counted = totals[0], int(totals[1])
        mean_loss = float(loss_sum) / counted
        if not math.isfinite(mean_loss):
            raise CxrlabError(
                f"{self.folder}: training diverged in epoch {self.epoch + 1} (non-finite loss); "
                f"the last finished epoch ({self.epoch}) is kept in checkpoints/{LAST}. "
                "Train again with a lower --lr into another --out"
            )
        return mean_loss

    def validate(self) -> tuple[float, float]:
        """Validation loss and AUC of the current weights."""
        probability, loss = predict(
            self.model,
            self.val_images,
            device=self.device,
            batch_size=self._eval_batch(),
            features=self.val_features,
        )
        return loss, _auc(self.val_images.labels, probability)

    def _eval_batch(self) -> int:
        return max(self.config.batch_size, 64)

    # ------------------------------------------------------------- run
    def run(self, resume: bool = False) -> SeedResult | None:
        """Train (or resume) to the last epoch, then choose the threshold and test once.

        Returns the result in the first process, None in the others."""
        config = self.config
        finished = self._finished()
        if resume and finished is not None:
            return finished
        last = self.folder / "checkpoints" / LAST
        if resume and last.is_file():
            self.load_state(load_checkpoint(last, map_location=self.device))
        log = tensorboard = None
        if self.writer:
            self.folder.mkdir(parents=True, exist_ok=True)
            log = RunLog(
                self.folder / "epochs.csv", EPOCH_COLUMNS, keep_through=self.epoch, key="epoch"
            )
            if self.epoch < config.epochs:
                tensorboard = open_tensorboard(self.folder / "tensorboard")
        try:
            self._train_epochs(log, tensorboard)
        finally:
            if tensorboard is not None:
                tensorboard.close()
        result = self.finish() if self.writer else None
        self.fabric.barrier()  # the next seed (or the run's summary) reads what it wrote
        return result

    def _train_epochs(self, log: RunLog | None, tensorboard) -> None:
        """The epochs still to train; each logged to ``log`` and ``tensorboard`` (first
        process only) and checkpointed."""
        config = self.config
        start = time.perf_counter() - self.elapsed
        while self.epoch < config.epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch()
            val_loss, val_auc = self.validate()
            self.epoch += 1
            if self.scheduler is not None:
                if config.schedule == "plateau":
                    self.scheduler.step(val_loss)
                else:
                    self.scheduler.step()
            improved = _better(val_auc, val_loss, self.best_auc, self.best_loss)
            if improved:
                self.best_epoch, self.best_auc, self.best_loss = self.epoch, val_auc, val_loss
            self.elapsed = time.perf_counter() - start
            if not self.writer:
                self.fabric.barrier()  # the first process writes this epoch's files
                continue
            if improved:
                save_checkpoint(self.folder / BEST, self._best_state(val_auc, val_loss))
            row = {
                "epoch": self.epoch,
                "lr": lr,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_auc": val_auc,
                "best": int(improved),
                "seconds": round(self.elapsed, 2),
            }
            log.append(row)
            if tensorboard is not None:
                for name in ("lr", "train_loss", "val_loss", "val_auc"):
                    tensorboard.add_scalar(name, row[name], self.epoch)
            save_checkpoint(self.folder / "checkpoints" / LAST, self.state())
            self.fabric.barrier()
            if self.progress:
                tqdm.write(
                    f"seed {self.seed} epoch {self.epoch}/{config.epochs}: lr {lr:.2e}, "
                    f"train loss {train_loss:.4f}, val loss {val_loss:.4f}, val AUC {val_auc:.3f}"
                    + (" *" if improved else "")
                )

    def _best_state(self, val_auc: float, val_loss: float) -> dict:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "val_auc": val_auc,
            "val_loss": val_loss,
            "spec": self.spec.as_dict(),
            "model": self.model.state_dict(),
        }

    def _finished(self) -> SeedResult | None:
        path = self.folder / "metrics.json"
        if not path.is_file():
            return None
        return SeedResult.from_dict(self.folder, json.loads(path.read_text()))

    def finish(self) -> SeedResult:
        """Load the best epoch, pick the threshold on validation, evaluate the test split once."""
        config = self.config
        best_path = self.folder / BEST
        best = load_checkpoint(best_path, map_location=self.device)
        self.model.load_state_dict(best["model"])
        batch = self._eval_batch()
        val_probability, _ = predict(
            self.model, self.val_images, device=self.device, batch_size=batch
        )
        threshold = youden_threshold(self.val_images.labels, val_probability)
        best["threshold"] = threshold
        save_checkpoint(best_path, best)
        val_predictions = predictions_frame(self.val_images, val_probability)
        write_predictions(val_predictions, threshold, self.folder / "predictions_val.csv")
        val = evaluate_predictions(
            val_predictions, threshold, split="val", n_resamples=config.bootstrap, seed=self.seed
        )
        test = None
        if len(self.packed.select("test")):
            # The only time the test split is read, by the final model and threshold.
            test_images = evaluation_set(self.packed, "test")
            test_probability, _ = predict(
                self.model, test_images, device=self.device, batch_size=batch
            )
            test_predictions = predictions_frame(test_images, test_probability)
            write_predictions(test_predictions, threshold, self.folder / "predictions_test.csv")
            test = evaluate_predictions(
                test_predictions,
                threshold,
                split="test",
                n_resamples=config.bootstrap,
                seed=self.seed,
            )
            title = f"{config.arch}, seed {self.seed}, test"
            plot_confusion_matrix(test, self.folder / "confusion_matrix_test.png")
            plot_roc(test_predictions, test, self.folder / "roc_test.png", title=title)
        result = SeedResult(
            seed=self.seed,
            folder=self.folder,
            best_epoch=int(best["epoch"]),
            val_auc=float(best["val_auc"]),
            threshold=threshold,
            val=val,
            test=test,
            seconds=self.elapsed,
        )
        values = result.as_dict()
        counts = {o: int((self.train_images.origins == o).sum()) for o in ORIGINS}
        values["training_images"] = {  # oversampled copies only where a control arm made some
            o: n for o, n in counts.items() if o != "oversampled" or n > 0
        }
        atomic_write_text(self.folder / "metrics.json", json.dumps(values, indent=2) + "\n")
        return result


# ------------------------------------------------------------------ several seeds
def _check_run_folder(config: ClfConfig, resume: bool) -> None:
    """Refuse to overwrite a started run, or to resume one under changed settings.

    A folder whose run never finished an epoch (it failed at start: an unsplit PACKED,
    missing weights) is not a run yet: the fixed command may start it afresh.
    """
    run = Path(config.out)
    config.guard_run_folder(run, resume, started=run_started(run))


def run_started(run: Path) -> bool:
    """Whether a run folder holds a finished epoch of a seed, or of a seed of one of its
    cross-validation folds (``fold-NN/seed_N``: such a folder is started too)."""
    return any(
        any(run.glob(f"{folder}seed_*/checkpoints/{LAST}"))
        or any(run.glob(f"{folder}seed_*/metrics.json"))
        for folder in ("", "fold-*/")
    )


def train_seeds(
    fabric, config: ClfConfig, resume: bool, progress: bool
) -> dict[int, SeedResult] | None:
    """Every seed, one after the other, in each of Fabric's processes; the first
    process's results (None in the others)."""
    results = {}
    for seed in config.seeds:
        results[seed] = SeedTrainer(config, seed, fabric, progress=progress).run(resume=resume)
    return results if fabric.is_global_zero else None


def run_data(config: ClfConfig) -> Packed:
    """The PACKED a run trains and is judged on: ``config.data``, its split column
    replaced by ``config.splits_file`` when there is one (a cross-validation fold)."""
    packed = open_packed(config.data)
    return with_splits(packed, config.splits_file) if config.splits_file else packed


def check_run(config: ClfConfig, resume: bool) -> None:
    """Before any work: refuse an ``out`` that is an input or another kind of folder, a
    started run without ``resume``, and a resume under changed settings."""
    check_output(config.out, kind=outputs.CLASSIFIER_RUN, inputs=[config.data, config.synthetic])
    _check_run_folder(config, resume)


def start_run(config: ClfConfig) -> list[str]:
    """Create the run folder, write its ``config.yaml``; the run's notes (a leaking split,
    synthetic images accepted unverified or made otherwise)."""
    # synthetic images are checked once, before anything is written: refused early
    notes = synthetic_notes(run_data(config), config)
    notes += init_notes(config.init, run_data(config), arch=config.arch, standardize=config.standardize)  # fmt: skip
    run = Path(config.out)
    run.mkdir(parents=True, exist_ok=True)
    config.write(run / "config.yaml")
    overlap = patient_overlap(run_data(config))
    if any(overlap.values()):
        notes.append(
            f"patients shared between train and val/test: {overlap}; the split leaks "
            "patients, so these numbers are optimistic (split with `cxrlab data split --by patient`)"
        )
    return notes


def train_classifier(
    config: ClfConfig, *, resume: bool = False, progress: bool = True
) -> RunResult | None:
    """Train every seed of ``config`` and write the run's summary (see the module doc).

    Args:
        config: what to train.
        resume: continue unfinished seeds from their last epoch; finished ones are reused.
        progress: progress bars and one line per epoch.

    Returns:
        The run's results; None in the extra processes of multi-GPU DDP, which run the
        command again.
    """
    if config.cv != "none":
        raise CxrlabError(
            f"cv {config.cv!r}: a cross-validated run is trained by "
            "cxrlab.clf.cv.cross_validate (`cxrlab clf train --cv sites`)"
        )
    check_run(config, resume)
    fabric = make_fabric(config.device, config.devices)  # refuses a missing CUDA first
    notes = start_run(config)
    results = fabric.launch(train_seeds, config, resume, progress)
    if results is None:
        return None
    return summarise_run(config, results, notes)


def summarise_run(config: ClfConfig, results: dict[int, SeedResult], notes: list[str]) -> RunResult:
    """Write the run's ``metrics.json`` and ``report.txt`` from every seed's result."""
    run = Path(config.out)
    report = run_report(config, results, notes)
    summary = {
        "arch": config.arch,
        "data": config.data,
        "seeds": config.seeds,
        "device": str(resolve_device(config.device)),
        "devices": config.devices,
        "val_auc_best_epoch": _mean_sd_dict([r.val_auc for r in results.values()]),
        "val": summarise_seeds({s: r.val for s, r in results.items()}),
        "test": summarise_seeds({s: r.test for s, r in results.items() if r.test is not None})
        if all(r.test is not None for r in results.values())
        else None,
        "per_seed": {str(s): r.as_dict() for s, r in results.items()},
        # how --data was made: `clf evaluate` refuses images made otherwise
        "preprocessing": data_preprocessing(config.data),
        "init": init_summary(config.init),  # the pretrained backbone: path, sha256, splits seen
        "notes": notes,
    }
    atomic_write_text(run / "metrics.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(run / "report.txt", report + "\n")
    return RunResult(run, results, report, notes)


def _mean_sd_dict(values: list[float]) -> dict:
    mean, sd = mean_sd(values)
    clean = [None if not math.isfinite(v) else round(v, 6) for v in values]
    return {
        "mean": None if not math.isfinite(mean) else round(mean, 6),
        "sd": None if not math.isfinite(sd) else round(sd, 6),
        "per_seed": clean,
    }


def run_report(config: ClfConfig, results: dict[int, SeedResult], notes: list[str]) -> str:
    """The text summary printed by ``cxrlab clf train`` and kept in ``report.txt``."""
    lines = [f"{config.arch} on {config.data}: {len(results)} seed(s), {config.epochs} epochs"]
    aucs = [r.val_auc for r in results.values()]
    mean, sd = mean_sd(aucs)
    per_seed = ", ".join(
        f"seed {s} {r.val_auc:.3f} (epoch {r.best_epoch})" for s, r in results.items()
    )
    spread = f"; mean {mean:.3f} ± {sd:.3f}" if len(aucs) > 1 else ""  # one seed has no spread
    lines.append(f"validation AUC at the chosen epoch: {per_seed}{spread}")
    tests = {s: r.test for s, r in results.items() if r.test is not None}
    if tests:
        first = next(iter(tests.values()))
        lines.append(
            f"test, once, at the validation threshold ({first.n_images} images, "
            f"{first.n_patients} patients, {first.n_positive} COVID-19), 95% patient-bootstrap CIs:"
        )
        lines.append(seeds_table(tests))
        for seed, result in results.items():
            lines.append(
                f"seed {seed}: threshold {result.threshold:.3f}; "
                f"{result.folder / 'confusion_matrix_test.png'}, {result.folder / 'roc_test.png'}"
            )
    else:
        lines.append("the PACKED has no test split: validation numbers only")
        lines.append(seeds_table({s: r.val for s, r in results.items()}))
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)
