import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data.manifest import read_manifest
from cxrlab.data.masks import read_masks_table, safe_name
from cxrlab.errors import CxrlabError
from cxrlab.preprocess.augment import PairedAugment
from cxrlab.seg.config import SegConfig
from cxrlab.seg.data import load_split
from cxrlab.seg.predict import clean_mask, mask_flags, predict_masks
from cxrlab.seg.trainer import SegTrainer, dice_scores, train_segmenter
from cxrlab.utils.outputs import MASKS, SEGMENTATION_RUN, OutputError, folder_kind
from lung_factory import masked_dataset

runner = CliRunner()


def tiny_config(tmp_path, data, name="run", **changes) -> SegConfig:
    values = dict(
        data=str(data), out=str(tmp_path / name), size_px=32, channels=[4, 8], res_units=1,
        epochs=3, batch_size=4, lr=5e-3, device="cpu",
    )  # fmt: skip
    values.update(changes)
    return SegConfig(**values)


@pytest.fixture
def dataset(tmp_path):
    return masked_dataset(tmp_path)


def test_folders_with_masks_record_mask_paths_and_do_not_import_masks_as_images(dataset):
    manifest = read_manifest(dataset)
    assert len(manifest) == 16  # masks/ are not images
    with_mask = manifest[manifest["mask_path"] != ""]
    assert len(with_mask) == 14
    for image_path, mask_path in zip(with_mask["path"], with_mask["mask_path"], strict=True):
        assert mask_path.endswith(image_path.split("/")[-1]) and "/masks/" in mask_path
    assert set(manifest.loc[manifest["mask_path"] == "", "id"]) == {
        "folders:COVID/images/COVID-7.png",
        "folders:Normal/images/Normal-7.png",
    }


def test_split_images_and_masks_are_stretched_to_the_working_square(dataset):
    train = load_split(dataset, "train", 32)
    assert train.images.shape == train.masks.shape == (len(train), 1, 32, 32)
    assert set(train.masks.unique().tolist()) == {0.0, 1.0}
    # the lungs are dark: the mask covers the darkest pixels
    inside = train.images[train.masks > 0.5].mean()
    assert inside < train.images[train.masks < 0.5].mean() - 0.1


def test_paired_augmentation_moves_image_and_mask_together():
    mask = torch.zeros(6, 1, 32, 32)
    mask[:, :, 8:24, 6:14] = 1
    augment = PairedAugment(max_gamma=1.0, seed=3)
    images, masks = augment(mask.clone(), mask.clone(), step=5)
    assert not torch.equal(masks, mask)  # it did warp
    # image and mask were the same picture: they still are, up to the threshold
    assert torch.equal((images >= 0.5).float(), masks)
    # the gamma changes the image's contrast only, never where the lungs are
    contrast, same_masks = PairedAugment(max_gamma=2.0, seed=3)(mask.clone(), mask.clone(), 5)
    assert torch.equal(same_masks, masks) and not torch.equal(contrast, images)
    again_images, again_masks = augment(mask.clone(), mask.clone(), step=5)
    assert torch.equal(again_masks, masks) and torch.equal(again_images, images)


def test_dice_scores_closed_forms():
    masks = torch.zeros(3, 1, 8, 8)
    masks[:, :, :4] = 1
    probability = masks.clone()
    probability[1] = 0
    probability[1, :, :2] = 0.9  # half of the mask: Dice 2*16/(16+32)
    probability[2] = 1 - masks[2]  # disjoint
    assert dice_scores(probability, masks).tolist() == pytest.approx([1.0, 2 / 3, 0.0])


def test_train_writes_the_run_and_chooses_the_epoch_on_validation_dice(tmp_path, dataset):
    result = train_segmenter(tiny_config(tmp_path, dataset), progress=False)
    run = tmp_path / "run"
    for name in ("config.yaml", "epochs.csv", "best.pt", "checkpoints/last.pt", "metrics.json",
                 "report.txt", "val_contours.png"):  # fmt: skip
        assert (run / name).is_file(), name
    assert folder_kind(run) == SEGMENTATION_RUN
    log = pd.read_csv(run / "epochs.csv")
    assert list(log["epoch"]) == [1, 2, 3] and log["val_dice"].between(0, 1).all()
    best = log.loc[log["best"] == 1, "epoch"].max()
    assert result.best_epoch == best
    assert result.val_dice == pytest.approx(log["val_dice"].max(), abs=1e-5)
    assert yaml.safe_load((run / "config.yaml").read_text())["segmenter"] == "monai-unet"
    contours = np.asarray(Image.open(run / "val_contours.png"))
    assert contours.ndim == 3 and contours.shape[-1] == 3
    # a second run into the same folder needs --resume (or --force)
    with pytest.raises(CxrlabError, match="--resume"):
        train_segmenter(tiny_config(tmp_path, dataset), progress=False)
    with pytest.raises(CxrlabError, match="differs in lr"):
        train_segmenter(tiny_config(tmp_path, dataset, lr=0.1), resume=True, progress=False)
    # nor into a dataset, nor over its own data, resume or not
    other = tmp_path / "other"
    other.mkdir()
    for name in ("manifest.csv", "rejects.csv"):
        (other / name).write_text((dataset / name).read_text())
    with pytest.raises(OutputError, match="already holds a dataset"):
        train_segmenter(tiny_config(tmp_path, dataset, "other"), resume=True, progress=False)
    with pytest.raises(OutputError, match="destroy the input"):
        train_segmenter(SegConfig(data=str(dataset), out=str(dataset / "seg")), progress=False)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path, dataset, monkeypatch):
    train_segmenter(tiny_config(tmp_path, dataset, "full"), progress=False)
    real_epoch = SegTrainer.train_epoch

    def interrupted(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(SegTrainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(tiny_config(tmp_path, dataset, "cut"), progress=False)
    monkeypatch.setattr(SegTrainer, "train_epoch", real_epoch)
    train_segmenter(tiny_config(tmp_path, dataset, "cut"), resume=True, progress=False)
    for name in ("best.pt", "checkpoints/last.pt"):
        full = torch.load(tmp_path / "full" / name, weights_only=True)
        cut = torch.load(tmp_path / "cut" / name, weights_only=True)
        for key, value in full["model"].items():
            assert torch.equal(value, cut["model"][key]), f"{name}: {key} differs after resume"
    logs = [
        pd.read_csv(tmp_path / n / "epochs.csv").drop(columns="seconds") for n in ("full", "cut")
    ]
    pd.testing.assert_frame_equal(*logs)


def test_a_dataset_without_masks_or_splits_is_refused_with_the_fix(tmp_path, dataset):
    manifest = pd.read_csv(dataset / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.assign(mask_path="").to_csv(dataset / "manifest.csv", index=False)
    result = runner.invoke(
        app, ["seg", "train", "--data", str(dataset), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "no row has a lung mask" in result.output and "masks" in result.output
    assert result.output.count("\n") == 1


def mask_with(*boxes, shape=(40, 50)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for top, bottom, left, right in boxes:
        mask[top:bottom, left:right] = True
    return mask


def test_cleaning_keeps_the_two_largest_regions_and_fills_holes():
    raw = mask_with((5, 35, 5, 20), (5, 30, 28, 44), (2, 4, 46, 48))  # two lungs + a speck
    raw[15:18, 10:13] = False  # a hole
    kept, regions = clean_mask(raw)
    assert regions == 3
    assert np.array_equal(kept, mask_with((5, 35, 5, 20), (5, 30, 28, 44)))
    small_second = mask_with((5, 35, 5, 25), (10, 12, 30, 32))
    kept, regions = clean_mask(small_second)
    assert regions == 2 and np.array_equal(kept, mask_with((5, 35, 5, 25)))  # a speck, not a lung
    assert clean_mask(np.zeros((8, 8), dtype=bool))[1] == 0


@pytest.mark.parametrize(
    ("mask", "flag"),
    [
        (mask_with(), "no lung"),
        (mask_with((10, 12, 10, 12)), "no lung"),  # 4 pixels of 2000
        (mask_with((5, 35, 10, 40)), "one lung"),
        (mask_with((5, 35, 5, 20), (5, 35, 28, 44)), ""),
        (mask_with((0, 35, 5, 20), (5, 35, 28, 44)), "touches border"),
        (mask_with((5, 35, 5, 50)), "one lung; touches border"),
    ],
)
def test_quality_flags_name_what_looks_wrong(mask, flag):
    assert mask_flags(mask) == flag


def test_predict_writes_one_mask_per_image_at_its_own_size(tmp_path, dataset):
    train_segmenter(tiny_config(tmp_path, dataset), progress=False)
    out = tmp_path / "M"
    result = runner.invoke(
        app, ["seg", "predict", str(tmp_path / "run"), "--data", str(dataset), "--out", str(out),
              "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert folder_kind(out) == MASKS
    table = read_masks_table(out)
    manifest = read_manifest(dataset)
    assert list(table["id"]) == list(manifest["id"])  # every accepted image, masked or not
    assert list(pd.read_csv(out / "masks.csv").columns) == [
        "id", "mask_path", "lung_fraction", "components", "flag"
    ]  # fmt: skip
    for row, image in zip(table.itertuples(), manifest.itertuples(), strict=True):
        assert row.mask_path.endswith(f"{safe_name(row.id)}.png") and ":" not in row.mask_path
        mask = np.asarray(Image.open(row.mask_path))
        assert mask.shape == (image.height, image.width)  # portrait and landscape alike
        assert set(np.unique(mask)) <= {0, 255}
        assert float(row.lung_fraction) == pytest.approx((mask == 255).mean(), abs=1e-4)
    # --out may not be an input, nor another kind of folder
    with pytest.raises(OutputError, match="destroy the input"):
        predict_masks(tmp_path / "run", dataset, dataset / "masks", device="cpu", progress=False)
    other_run = tmp_path / "other"
    other_run.mkdir()
    (other_run / "config.yaml").write_text("segmenter: monai-unet\n")
    with pytest.raises(OutputError, match="already holds a segmentation run"):
        predict_masks(tmp_path / "run", dataset, other_run, device="cpu", progress=False)


#: Known "lungs" as fractions (top, bottom, left, right) of the image: two dark boxes of
#: different sizes, off-centre both ways, so that a flipped, transposed or shifted mask
#: cannot land on them.
KNOWN_LUNGS = ((0.15, 0.65, 0.1, 0.38), (0.3, 0.85, 0.55, 0.8))


DARK, BRIGHT = 20, 220


class DarkIsLung(torch.nn.Module):
    """A stand-in segmenter whose lung probability is the share of each input pixel
    covered by the dark lungs of :func:`known_image`: its map in the network's square
    frame is exactly where the image put the lungs, edges included."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        dark = ((BRIGHT / 255 - images) / ((BRIGHT - DARK) / 255)).clamp(1e-4, 1 - 1e-4)
        return torch.logit(dark) + self.anchor


def known_image(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 bright image with :data:`KNOWN_LUNGS` dark, and the (H, W) bool lungs."""
    lungs = np.zeros((height, width), dtype=bool)
    for top, bottom, left, right in KNOWN_LUNGS:
        rows = slice(round(top * height), round(bottom * height))
        lungs[rows, round(left * width) : round(right * width)] = True
    return np.where(lungs, DARK, BRIGHT).astype(np.uint8), lungs


def regions(mask: np.ndarray) -> np.ndarray:
    """Per connected region, ordered left to right: its centre (row, column) and its
    box's top, bottom, left and right edges (pixel boundaries), as (n, 6) floats."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    centres = ndimage.center_of_mass(mask, labels, range(1, count + 1))
    boxes = ndimage.find_objects(labels)
    found = [
        (*centre, box[0].start, box[0].stop, box[1].start, box[1].stop)
        for centre, box in zip(centres, boxes, strict=True)
    ]
    return np.array(sorted(found, key=lambda r: r[1]), dtype=float)


# portrait, landscape, near-square odd sides, and a large one whose sides are no multiple
# of the box reduction a draft decode would use (761 = 8 x 95 + 1)
@pytest.mark.parametrize(("height", "width"), [(130, 90), (75, 160), (101, 97), (761, 520)])
def test_predict_puts_a_known_mask_back_where_it_was_at_the_images_size(
    tmp_path, monkeypatch, height, width
):
    import cxrlab.seg.predict as predict_module
    from cxrlab.data.api import import_source

    folder = tmp_path / "source" / "COVID"
    folder.mkdir(parents=True)
    image, lungs = known_image(height, width)
    Image.fromarray(image).save(folder / "known.png")
    dataset = tmp_path / "dataset"
    import_source("folders", tmp_path / "source", dataset, near_distance=None, progress=False)
    run = tmp_path / "run"
    run.mkdir()
    config = tiny_config(tmp_path, dataset, size_px=64)
    state = {"epoch": 1, "val_dice": 1.0}
    monkeypatch.setattr(
        predict_module, "load_segmenter", lambda path, device: (DarkIsLung(), config, state)
    )
    predict_masks(run, dataset, tmp_path / "M", device="cpu", progress=False)
    row = read_masks_table(tmp_path / "M").iloc[0]
    mask = np.asarray(Image.open(row.mask_path)) == 255
    assert mask.shape == (height, width)
    # Away from the edges (one network pixel, in image pixels, plus one) the mask is exact.
    from scipy.ndimage import binary_dilation, binary_erosion

    band = 1 + int(np.ceil(max(height, width) / 64))
    edge = binary_dilation(lungs, iterations=band) & ~binary_erosion(lungs, iterations=band)
    assert np.array_equal(mask[~edge], lungs[~edge])
    assert (mask & lungs).sum() / (mask | lungs).sum() > 0.9
    # Each lung's centre and box edges come back within a quarter of a network pixel (at
    # least one image pixel: an edge may round either way): no drift or stretch of half
    # a network pixel either.
    found, expected = regions(mask), regions(lungs)
    assert found.shape == expected.shape == (2, 6)
    row, column = max(1.0, 0.25 * height / 64), max(1.0, 0.25 * width / 64)
    tolerance = np.array([row, column, row, row, column, column])
    assert (np.abs(found - expected) < tolerance).all(), (found, expected, tolerance)


def test_resume_may_raise_epochs_and_keeps_the_recorded_schedule(tmp_path, dataset):
    train_segmenter(tiny_config(tmp_path, dataset, epochs=2), progress=False)
    run = tmp_path / "run"
    # --out and --resume alone take the recorded settings; more epochs is not a change
    result = runner.invoke(
        app, ["seg", "train", "--out", str(run), "--resume", "--epochs", "4", "-q"]
    )
    assert result.exit_code == 0, result.output
    log = pd.read_csv(run / "epochs.csv")
    assert list(log["epoch"]) == [1, 2, 3, 4]
    floor = 5e-3 * 0.01  # the cosine over the first 2 epochs ends at 1% of lr
    assert log["lr"].iloc[2:].tolist() == pytest.approx([floor, floor])
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert (recorded["epochs"], recorded["schedule_epochs"]) == (4, 2)
    # the written config reproduces the extended run from scratch
    train_segmenter(SegConfig(**{**recorded, "out": str(tmp_path / "again")}), progress=False)
    again = pd.read_csv(tmp_path / "again" / "epochs.csv")
    pd.testing.assert_frame_equal(log.drop(columns="seconds"), again.drop(columns="seconds"))
    # fewer epochs, or another setting, is still refused
    fewer = runner.invoke(app, ["seg", "train", "--out", str(run), "--resume", "--epochs", "3"])
    assert fewer.exit_code == 2 and "may only go up" in fewer.output
    other = runner.invoke(app, ["seg", "train", "--out", str(run), "--resume", "--lr", "0.1"])
    assert other.exit_code == 2 and "differs in lr" in other.output


def test_val_contours_tiles_carry_id_and_dice_lowest_first_at_a_readable_size(monkeypatch):
    from cxrlab.seg import trainer

    seen = {}
    real = trainer.labelled_grid

    def spy(tiles, captions, **options):
        seen.update(tiles=tiles, captions=captions, title=options["title"])
        return real(tiles, captions, **options)

    monkeypatch.setattr(trainer, "labelled_grid", spy)
    masks = np.zeros((3, 32, 32), dtype=bool)
    masks[:, 8:24, 8:24] = True
    predicted = masks.copy()
    predicted[1] = False  # the second image is missed entirely
    grid = trainer.contour_grid(
        np.full((3, 32, 32), 0.5), masks, predicted,
        ["ieee8023:images/a.jpg", "ieee8023:images/b.jpg", "x:c.png"], np.array([0.9, 0.0, 0.5]),
    )  # fmt: skip
    assert seen["captions"] == ["Dice 0.000  b.jpg", "Dice 0.500  c.png", "Dice 0.900  a.jpg"]
    assert "lowest Dice first" in seen["title"] and "green reference" in seen["title"]
    # the missed image shows its reference outline in green only
    assert (seen["tiles"][0] == (0, 255, 0)).all(axis=-1).any()
    assert not (seen["tiles"][0] == (255, 0, 0)).all(axis=-1).any()
    assert grid.shape[1] >= 3 * trainer.CONTOUR_TILE_PX  # 32 px images drawn at 256 px


def test_predict_skips_masks_already_made_by_the_same_model(tmp_path, dataset, monkeypatch):
    import shutil

    from cxrlab.seg import predict as predict_module

    train_segmenter(tiny_config(tmp_path, dataset), progress=False)
    fewer = tmp_path / "fewer"
    shutil.copytree(dataset, fewer)
    manifest = pd.read_csv(dataset / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.iloc[:-2].to_csv(fewer / "manifest.csv", index=False)
    predicted: list[int] = []
    real = predict_module.full_size_masks

    def counting(model, inputs, sizes, device):
        predicted.append(len(sizes))
        return real(model, inputs, sizes, device)

    monkeypatch.setattr(predict_module, "full_size_masks", counting)
    out, run = tmp_path / "M", tmp_path / "run"
    predict_masks(run, fewer, out, device="cpu", progress=False)
    assert sum(predicted) == len(manifest) - 2
    predicted.clear()
    report = predict_masks(run, dataset, out, device="cpu", progress=False)
    assert sum(predicted) == 2 and report.n_reused == len(manifest) - 2
    assert list(read_masks_table(out)["id"]) == list(manifest["id"])
    assert "kept from the last run" in report.summary()
    # everything done: nothing predicted, nothing rewritten
    written = (out / "masks.csv").stat().st_mtime_ns
    predicted.clear()
    again = predict_masks(run, dataset, out, device="cpu", progress=False)
    assert predicted == [] and again.nothing_to_do and "nothing to do" in again.summary()
    assert (out / "masks.csv").stat().st_mtime_ns == written
    assert again.n_masks == report.n_masks
    # masks of another model are not mixed in: refused, or replaced whole with --force
    train_segmenter(tiny_config(tmp_path, dataset, "run2", seed=1), progress=False)
    with pytest.raises(OutputError, match="another model"):
        predict_masks(tmp_path / "run2", dataset, out, device="cpu", progress=False)
    predicted.clear()
    predict_masks(tmp_path / "run2", dataset, out, device="cpu", force=True, progress=False)
    assert sum(predicted) == len(manifest)


def test_predict_draws_the_flagged_masks_over_their_images(tmp_path, monkeypatch):
    from cxrlab.seg import predict as predict_module

    pixels = np.full((60, 80), 200, dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "b.png")
    one_lung = np.zeros((60, 80), dtype=np.uint8)
    one_lung[10:50, 10:30] = 255
    Image.fromarray(one_lung).save(tmp_path / "a-mask.png")
    Image.fromarray(one_lung).save(tmp_path / "b-mask.png")
    table = pd.DataFrame(
        {"id": ["s:x/a.png", "s:x/b.png"], "mask_path": ["a-mask.png", "b-mask.png"],
         "lung_fraction": ["0.2", "0.2"], "components": ["1", "1"], "flag": ["one lung", ""]}
    )  # fmt: skip
    seen = {}
    from cxrlab.data import show

    real = show.labelled_grid

    def spy(tiles, captions, **options):
        seen.update(tiles=tiles, captions=captions, title=options["title"])
        return real(tiles, captions, **options)

    monkeypatch.setattr(show, "labelled_grid", spy)
    paths = {"s:x/a.png": str(tmp_path / "a.png"), "s:x/b.png": str(tmp_path / "b.png")}
    grid = predict_module.flagged_overlay(table, paths, tmp_path)
    assert seen["captions"] == ["one lung  a.png"]  # the unflagged mask is not shown
    assert "1 flagged lung masks (red outline)" in seen["title"]
    tile = seen["tiles"][0]
    assert tile.shape == (192, 192, 3) and (tile == (255, 0, 0)).all(axis=-1).sum() > 100
    assert grid.ndim == 3
    assert predict_module.flagged_overlay(table.assign(flag=""), paths, tmp_path) is None
