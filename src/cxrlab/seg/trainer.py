"""Training the lung segmenter: fit on train, choose the epoch on validation Dice.

``SEGRUN/`` receives

* ``config.yaml``: the :class:`~cxrlab.seg.config.SegConfig`;
* ``epochs.csv``: epoch, learning rate, train loss, validation loss and Dice, seconds;
* ``checkpoints/last.pt``: everything needed to resume exactly (model, optimizer,
  scheduler, RNG states, best-so-far), rewritten atomically after every epoch;
* ``best.pt``: the weights of the epoch with the best validation Dice;
* ``metrics.json``, ``report.txt`` and ``val_contours.png`` (validation images with
  the reference mask's outline in green and the prediction's in red).

The loss is Dice + binary cross-entropy (``monai.losses.DiceCELoss``). Validation
Dice is the mean over validation images of the Dice of the thresholded (p >= 0.5)
prediction at ``size_px`` (``monai.metrics.compute_dice``; an image where both masks
are empty counts 1). On CPU a run gives the same weights bitwise, resumed or not.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cxrlab.data.show import labelled_grid, save_grid
from cxrlab.seg.config import SegConfig
from cxrlab.seg.data import SegSet, load_split
from cxrlab.seg.network import build_segmenter
from cxrlab.utils.checkpoint import load_checkpoint, save_checkpoint
from cxrlab.utils.device import autocast, resolve_device
from cxrlab.utils.fs import atomic_write_text
from cxrlab.utils.outputs import SEGMENTATION_RUN, check_output
from cxrlab.utils.progress import tqdm
from cxrlab.utils.runlog import RunLog, capture_rng, restore_rng

LAST = "last.pt"
BEST = "best.pt"
CONFIG = "config.yaml"
CONTOURS = "val_contours.png"
#: Side of a val_contours.png tile: a 128 px image is doubled so outlines and captions read.
CONTOUR_TILE_PX = 256
EPOCH_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "val_dice", "best", "seconds"]
MIN_LR_FRACTION = 0.01
EVAL_BATCH = 32


@dataclass
class SegResult:
    """The chosen epoch and its validation Dice."""

    run: Path
    best_epoch: int
    val_dice: float
    seconds: float
    n_train: int
    n_val: int
    report: str


def dice_scores(probability: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) Dice of ``probability >= 0.5`` against ``masks`` (both (N, 1, S, S))."""
    from monai.metrics import compute_dice

    predicted = (probability >= 0.5).float()
    return compute_dice(predicted, masks.float(), include_background=True, ignore_empty=False)[:, 0]


def outline(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool: the mask's pixels that touch a non-mask pixel."""
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, border_value=0)


def contour_tiles(images: np.ndarray, reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(N, S, S) images in [0, 1], reference and predicted (N, S, S) bool masks ->
    (N, S, S, 3) uint8 RGB tiles: reference outline green, prediction red, both yellow."""
    grey = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
    tiles = np.repeat(grey[..., None], 3, axis=-1)
    for index in range(len(grey)):
        ref, pred = outline(reference[index]), outline(predicted[index])
        tiles[index][ref & pred] = (255, 255, 0)
        tiles[index][ref & ~pred] = (0, 255, 0)
        tiles[index][pred & ~ref] = (255, 0, 0)
    return tiles


def short_id(image_id: str) -> str:
    """The file name part of an image id (``ieee8023:images/a.jpg`` -> ``a.jpg``), for captions."""
    return image_id.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def contour_grid(
    images: np.ndarray,
    reference: np.ndarray,
    predicted: np.ndarray,
    ids: list[str],
    dice: np.ndarray,
    columns: int = 8,
) -> np.ndarray:
    """The validation figure: one tile per image, lowest Dice first, each captioned with
    its Dice and id, under a title with the colour key (arguments as :func:`contour_tiles`,
    plus the images' ``ids`` and their (N,) ``dice``). Returns an RGB uint8 image."""
    order = np.argsort(dice, kind="stable")
    tiles = contour_tiles(images[order], reference[order], predicted[order])
    captions = [f"Dice {dice[i]:.3f}  {short_id(ids[i])}" for i in order]
    title = (
        f"{len(ids)} validation images, lowest Dice first. Outlines: green reference mask, "
        "red prediction, yellow both"
    )
    return labelled_grid(
        tiles, captions, title=title, columns=min(columns, len(ids)), min_tile_px=CONTOUR_TILE_PX
    )


class SegTrainer:
    """Trains a :class:`SegConfig` into its run folder.

    Args:
        config: what to train.
        device: where.
        progress: a progress bar per epoch and one line per epoch.
        train_set, val_set: the data (default: read from ``config.data``).
    """

    def __init__(
        self,
        config: SegConfig,
        device: torch.device,
        *,
        progress: bool = True,
        train_set: SegSet | None = None,
        val_set: SegSet | None = None,
    ) -> None:
        from monai.losses import DiceCELoss

        self.config = config
        self.device = device
        self.progress = progress
        self.run_folder = Path(config.out)
        self.train_set = train_set or load_split(config.data, "train", config.size_px)
        self.val_set = val_set or load_split(config.data, "val", config.size_px)
        torch.manual_seed(config.seed)
        self.model = build_segmenter(config).to(device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=config.cosine_epochs, eta_min=config.lr * MIN_LR_FRACTION
        )
        self.loss_function = DiceCELoss(sigmoid=True)
        self.order_rng = torch.Generator().manual_seed(config.seed)
        self.augment = None
        if config.augment != "none":
            from cxrlab.preprocess.augment import PairedAugment

            self.augment = PairedAugment(seed=config.seed)
        self.epoch = 0
        self.best_epoch = 0
        self.best_dice = -math.inf
        self.best_loss = math.inf
        self.elapsed = 0.0

    # ------------------------------------------------------------- state
    def state(self) -> dict:
        state = {
            "epoch": self.epoch,
            "seconds": self.elapsed,
            "config": self.config.as_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_epoch": self.best_epoch,
            "best_dice": self.best_dice,
            "best_loss": self.best_loss,
            "rng_order": self.order_rng.get_state(),
            **capture_rng(self.device),
        }
        return state

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(state, self.device)
        self.order_rng.set_state(state["rng_order"])
        self.epoch = int(state["epoch"])
        self.best_epoch = int(state["best_epoch"])
        self.best_dice = float(state["best_dice"])
        self.best_loss = float(state["best_loss"])
        self.elapsed = float(state["seconds"])

    # ------------------------------------------------------------- epochs
    def train_epoch(self) -> float:
        """One pass over the training images; returns the mean training loss."""
        config, data = self.config, self.train_set
        order = torch.randperm(len(data), generator=self.order_rng)
        batches = [
            order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)
        ]
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches.pop()  # BatchNorm cannot train on a single image
        self.model.train()
        loss_sum, counted = 0.0, 0
        bar = tqdm(
            batches,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            leave=False,
            disable=not self.progress,
        )
        for index, positions in enumerate(bar):
            images = data.images[positions].to(self.device)
            masks = data.masks[positions].to(self.device)
            if self.augment is not None:  # training batches only
                images, masks = self.augment(images, masks, self.epoch * len(batches) + index)
            with autocast(self.device):
                logits = self.model(images)
            loss = self.loss_function(logits.float(), masks)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += float(loss.detach()) * len(positions)
            counted += len(positions)
        bar.close()
        return loss_sum / counted

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, S, S) images -> lung probabilities and logits (N, 1, S, S), on the CPU."""
        self.model.eval()
        probabilities, all_logits = [], []
        for start in range(0, len(images), EVAL_BATCH):
            batch = images[start : start + EVAL_BATCH].to(self.device)
            with autocast(self.device):
                logits = self.model(batch).float()
            all_logits.append(logits.cpu())
            probabilities.append(torch.sigmoid(logits).cpu())
        return torch.cat(probabilities), torch.cat(all_logits)

    def validate(self) -> tuple[float, float]:
        """Validation loss and mean Dice of the current weights."""
        probability, logits = self.predict(self.val_set.images)
        loss = float(self.loss_function(logits, self.val_set.masks))
        return loss, float(dice_scores(probability, self.val_set.masks).mean())

    # ------------------------------------------------------------- run
    def run(self, resume: bool = False) -> SegResult:
        """Train (or resume) to the last epoch, then write the summary of the best epoch."""
        config = self.config
        last = self.run_folder / "checkpoints" / LAST
        if resume and last.is_file():
            self.load_state(load_checkpoint(last, map_location=self.device))
        self.run_folder.mkdir(parents=True, exist_ok=True)
        log = RunLog(
            self.run_folder / "epochs.csv", EPOCH_COLUMNS, keep_through=self.epoch, key="epoch"
        )
        start = time.perf_counter() - self.elapsed
        while self.epoch < config.epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch()
            val_loss, val_dice = self.validate()
            self.epoch += 1
            if self.epoch <= config.cosine_epochs:  # past it, the rate stays at its end
                self.scheduler.step()
            improved = (val_dice, -val_loss) > (self.best_dice, -self.best_loss)
            if improved:
                self.best_epoch, self.best_dice, self.best_loss = self.epoch, val_dice, val_loss
                save_checkpoint(
                    self.run_folder / BEST,
                    {
                        "epoch": self.epoch,
                        "val_dice": val_dice,
                        "val_loss": val_loss,
                        "config": config.as_dict(),
                        "model": self.model.state_dict(),
                    },
                )
            self.elapsed = time.perf_counter() - start
            log.append(
                {
                    "epoch": self.epoch,
                    "lr": lr,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_dice": val_dice,
                    "best": int(improved),
                    "seconds": round(self.elapsed, 2),
                }
            )
            save_checkpoint(last, self.state())
            if self.progress:
                tqdm.write(
                    f"epoch {self.epoch}/{config.epochs}: lr {lr:.2e}, train loss "
                    f"{train_loss:.4f}, val loss {val_loss:.4f}, val Dice {val_dice:.4f}"
                    + (" *" if improved else "")
                )
        return self.finish()

    def finish(self) -> SegResult:
        """Reload the best epoch; write metrics.json, report.txt and the contour grid."""
        best = load_checkpoint(self.run_folder / BEST, map_location=self.device)
        self.model.load_state_dict(best["model"])
        probability, _ = self.predict(self.val_set.images)
        scores = dice_scores(probability, self.val_set.masks)
        grid = contour_grid(
            self.val_set.images[:, 0].numpy(),
            self.val_set.masks[:, 0].numpy() > 0.5,
            probability[:, 0].numpy() >= 0.5,
            self.val_set.ids,
            scores.numpy(),
        )
        save_grid(grid, self.run_folder / CONTOURS)
        result = SegResult(
            run=self.run_folder,
            best_epoch=int(best["epoch"]),
            val_dice=float(best["val_dice"]),
            seconds=self.elapsed,
            n_train=len(self.train_set),
            n_val=len(self.val_set),
            report="",
        )
        worst = int(scores.argmin())
        result.report = (
            f"lung U-Net on {self.config.data}: {result.n_train} train / {result.n_val} val "
            f"images with masks, {self.config.size_px} px, {self.config.epochs} epochs, "
            f"{result.seconds:.0f} s on {self.device}\n"
            f"validation Dice at the chosen epoch {result.best_epoch}: {result.val_dice:.4f} "
            f"(per image: min {float(scores.min()):.3f} [{self.val_set.ids[worst]}], median "
            f"{float(scores.median()):.3f})\n"
            f"contours (green: reference mask, red: prediction): {self.run_folder / CONTOURS}"
        )
        skipped = self.train_set.skipped + self.val_set.skipped
        if skipped:
            result.report += f"\nnote: {len(skipped)} image/mask pairs unreadable, left out"
        values = {
            "best_epoch": result.best_epoch,
            "val_dice": result.val_dice,
            "val_dice_per_image": {
                i: round(float(s), 6) for i, s in zip(self.val_set.ids, scores, strict=True)
            },
            "seconds": round(result.seconds, 1),
            "device": str(self.device),
            "n_train": result.n_train,
            "n_val": result.n_val,
            "skipped": [{"id": i, "reason": r} for i, r in skipped],
        }
        atomic_write_text(self.run_folder / "metrics.json", json.dumps(values, indent=2) + "\n")
        atomic_write_text(self.run_folder / "report.txt", result.report + "\n")
        return result


def _check_run_folder(config: SegConfig, resume: bool, force: bool) -> None:
    run = Path(config.out)
    check_output(run, kind=SEGMENTATION_RUN, inputs=[config.data], force=force)
    config.guard_run_folder(run, resume, force=force)


def train_segmenter(
    config: SegConfig, *, resume: bool = False, force: bool = False, progress: bool = True
) -> SegResult:
    """Train the lung segmenter of ``config`` (see the module doc for what is written).

    Args:
        config: what to train.
        resume: continue from ``checkpoints/last.pt`` (same options only).
        force: replace whatever ``config.out`` holds.
        progress: progress bars and one line per epoch.
    """
    _check_run_folder(config, resume, force)
    device = resolve_device(config.device)
    trainer = SegTrainer(config, device, progress=progress)
    run = Path(config.out)
    if force and run.exists() and not resume:
        import shutil

        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    config.write(run / CONFIG)
    return trainer.run(resume=resume)
