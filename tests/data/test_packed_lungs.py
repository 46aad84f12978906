import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlab.data.api import import_source
from cxrlab.data.manifest import read_manifest, read_rejects
from cxrlab.data.packed import open_packed, preprocess_dataset
from cxrlab.errors import CxrlabError
from cxrlab.preprocess.transforms import PreprocessOptions, lung_box
from factory import rgb_png
from lung_factory import masked_dataset, masks_folder


def test_ieee8023_records_its_lungvae_masks(tmp_path):
    root = tmp_path / "ieee"
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "lungVAE-masks").mkdir(parents=True)
    rgb_png(root / "images" / "a.png")
    rgb_png(root / "images" / "b.jpg.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(
        root / "annotations" / "lungVAE-masks" / "a_mask.png"
    )
    base = {"patientid": "1", "finding": "COVID-19", "view": "PA", "modality": "X-ray"}
    rows = [{**base, "filename": "a.png"}, {**base, "filename": "b.jpg.png", "patientid": "2"}]
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    import_source("ieee8023", root, tmp_path / "ds", progress=False)
    masks = read_manifest(tmp_path / "ds").set_index("id")["mask_path"]
    assert masks["ieee8023:a.png"] == str(
        (root / "annotations" / "lungVAE-masks" / "a_mask.png").resolve()
    )
    assert masks["ieee8023:b.jpg.png"] == ""


@pytest.fixture
def dataset(tmp_path):
    return masked_dataset(tmp_path)


@pytest.mark.parametrize("lungs", ["crop", "mask", "none"])
def test_lung_masks_are_applied_stored_and_missing_ones_rejected(tmp_path, dataset, lungs):
    masks = masks_folder(dataset, tmp_path / "M", leave_out=1)
    out = tmp_path / "P"
    options = PreprocessOptions(size_px=32, lungs=lungs, draft=False)  # area shrink only
    report = preprocess_dataset(dataset, out, options, lung_masks=masks, progress=False)
    # 16 images: 2 have no mask in the dataset, 1 was left out of MASKS
    assert report.n_images == 13 and report.n_rejected == 3
    rejects = read_rejects(out)
    assert set(rejects["reason"]) == {"no lung mask"}
    packed = open_packed(out)
    stored = np.load(out / "masks.npy")
    assert stored.shape == packed.images.shape and set(np.unique(stored)) <= {0, 255}
    assert packed.meta["options"]["lungs"] == lungs
    assert packed.meta["lung_masks"]["path"] == str(masks.resolve())
    if lungs == "mask":  # black beyond the stored mask, but for the area-averaged rim
        from scipy.ndimage import binary_dilation

        near = np.stack([binary_dilation(m > 0) for m in stored])
        assert (packed.images[~near] > 0).mean() < 0.001  # a lung tip thinner than a pixel
        assert (packed.images[stored > 0] > 0).all()
    if lungs == "crop":  # the lung box fills the square, less its 5% margin (~1.5 px)
        for mask in stored:
            top, bottom, left, right = lung_box(mask > 0)
            assert top in (1, 2) and bottom in (30, 31) and left in (1, 2) and right in (30, 31)
    # idempotent: the same options and masks do nothing; other masks are refused (the
    # overwrite rule) and redo the work with --force
    assert preprocess_dataset(dataset, out, options, lung_masks=masks, progress=False).reused
    (masks / "masks.csv").write_text((masks / "masks.csv").read_text().replace(",2,", ",1,", 1))
    with pytest.raises(CxrlabError, match="another --lung-masks"):
        preprocess_dataset(dataset, out, options, lung_masks=masks, progress=False)
    redone = preprocess_dataset(dataset, out, options, lung_masks=masks, progress=False, force=True)
    assert not redone.reused


def test_an_empty_mask_is_rejected_with_its_reason(tmp_path, dataset):
    masks = masks_folder(dataset, tmp_path / "M", leave_out=0)
    first = sorted(masks.glob("*.png"))[0]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(first)
    report = preprocess_dataset(
        dataset, tmp_path / "P", PreprocessOptions(size_px=32, lungs="crop"), lung_masks=masks,
        progress=False,
    )  # fmt: skip
    reasons = read_rejects(tmp_path / "P")["reason"].value_counts().to_dict()
    assert reasons == {"no lung mask": 2, "empty lung mask": 1} and report.n_images == 13


def test_lungs_without_masks_is_refused_with_the_fix(tmp_path, dataset):
    with pytest.raises(CxrlabError, match="--lung-masks MASKS"):
        preprocess_dataset(dataset, tmp_path / "P", PreprocessOptions(size_px=32, lungs="mask"))
    (tmp_path / "not-masks").mkdir()
    with pytest.raises(CxrlabError, match="masks.csv not found"):
        preprocess_dataset(
            dataset, tmp_path / "P", PreprocessOptions(size_px=32, lungs="mask"),
            lung_masks=tmp_path / "not-masks",
        )  # fmt: skip
    assert not (tmp_path / "P").exists()
    meta_keys = json.dumps(PreprocessOptions().as_dict())
    assert '"lungs": "none"' in meta_keys
