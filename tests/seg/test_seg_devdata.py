"""seg train + predict on the real ieee8023 dev data (skipped when ../shared/data is absent)."""

import numpy as np
import pytest
from PIL import Image

from cxrlab.data.api import import_source, split_dataset
from cxrlab.data.manifest import read_manifest
from cxrlab.data.masks import read_masks_table
from cxrlab.seg.config import SegConfig
from cxrlab.seg.predict import predict_masks
from cxrlab.seg.trainer import train_segmenter


@pytest.mark.devdata
@pytest.mark.slow
def test_predict_writes_a_mask_for_every_accepted_dev_image(ieee8023_dir, tmp_path):
    dataset = tmp_path / "X"
    import_source("ieee8023", ieee8023_dir, dataset, progress=False)
    split_dataset(dataset, (0.6, 0.2, 0.2), seed=0)
    manifest = read_manifest(dataset)
    assert manifest["mask_path"].ne("").sum() >= 100  # the lungVAE masks were found
    config = SegConfig(
        data=str(dataset), out=str(tmp_path / "seg"), size_px=32, channels=[4, 8],
        res_units=0, epochs=1, device="cpu",
    )  # fmt: skip
    train_segmenter(config, progress=False)
    report = predict_masks(tmp_path / "seg", dataset, tmp_path / "M", device="cpu", progress=False)
    table = read_masks_table(tmp_path / "M")
    assert report.n_masks == len(manifest) == len(table) and report.n_rejected == 0
    assert list(table["id"]) == list(manifest["id"])
    for row in manifest.sample(12, random_state=0).itertuples():
        path = table.set_index("id").loc[row.id, "mask_path"]
        mask = np.asarray(Image.open(path))
        assert mask.shape == (row.height, row.width) and set(np.unique(mask)) <= {0, 255}
