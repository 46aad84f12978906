import numpy as np
import pytest
import torch
from metric_factory import TinyInception, TinyXrv, as_generator_output, smooth_images, write_packed
from PIL import Image

from cxrlab.errors import CxrlabError
from cxrlab.metrics import ImageSource, compute_metrics
from cxrlab.metrics.extractors import MissingWeightsError, get_extractor
from cxrlab.metrics.images import open_image_set


@pytest.fixture
def packed(tmp_path):
    """40 smooth 32-px images: 24 train, 8 val, 8 test."""
    images = (smooth_images(40, 32, seed=10) * 255).round().astype(np.uint8)
    return write_packed(tmp_path / "P", images, ["train"] * 24 + ["val"] * 8 + ["test"] * 8)


def test_network_metrics_with_an_injected_extractor(packed, tiny_inception):
    results = compute_metrics(
        packed, packed, "fid,kid,is,prdc", extractor=tiny_inception, cache_dir=packed.parent / "c"
    )
    assert list(results) == [
        "fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density", "coverage",
    ]  # fmt: skip
    assert results["fid"] == pytest.approx(0.0, abs=1e-9)
    assert results["precision"] == results["recall"] == results["coverage"] == 1.0
    assert results["is"] >= 1.0
    noise = torch.rand(40, 1, 32, 32) * 2 - 1
    worse = compute_metrics(
        packed, noise, "fid,kid", extractor=tiny_inception, cache_dir=packed.parent / "c"
    )
    assert worse["fid"] > 0.01 and worse["kid"] > 0 and worse["kid"] > results["kid"]


def test_reference_features_are_cached_per_set_and_extractor(packed, offline_machine):
    extractor = get_extractor("inception", network=TinyInception(seed=0), device="cpu")
    fake = as_generator_output(smooth_images(10, 32, seed=11))
    first = compute_metrics(ImageSource(packed, split="train"), fake, "fid", extractor=extractor)
    cache = offline_machine / "refstats"  # $CXRLAB_CACHE_DIR
    assert first.info["reference_cached"] is False and len(list(cache.glob("inception-*.npz"))) == 1
    again = compute_metrics(ImageSource(packed, split="train"), fake, "fid", extractor=extractor)
    assert again.info["reference_cached"] is True and again["fid"] == first["fid"]
    other_split = compute_metrics(
        ImageSource(packed, split="val"), fake, "fid", extractor=extractor
    )
    other_net = get_extractor("inception", network=TinyInception(seed=5), device="cpu")
    other_weights = compute_metrics(
        ImageSource(packed, split="train"), fake, "fid", extractor=other_net
    )
    assert not other_split.info["reference_cached"] and not other_weights.info["reference_cached"]
    assert len(list(cache.glob("inception-*.npz"))) == 3


def test_pixel_metrics_run_offline_without_weights(packed):
    generated = as_generator_output(smooth_images(16, 32, seed=12))
    results = compute_metrics(
        ImageSource(packed, split="test"),
        generated,
        "swd,diversity,memorization",
        features="inception",
        train=ImageSource(packed, split="train"),
    )
    assert results["swd"] > 0 and set(results) >= {"swd_32px", "swd_16px", "ms_ssim_fake"}
    assert results.info["n_heldout"] == 8 and results.info["n_train"] == 24
    same = compute_metrics(packed, packed, "swd")
    assert same["swd"] == 0.0


def test_network_metric_without_weights_fails_before_reading_images(tmp_path):
    missing = tmp_path / "nothing-here"
    with pytest.raises(MissingWeightsError, match="weights-inception-2015-12-05-6726825d.pth"):
        compute_metrics(missing, missing, "swd,fid")
    with pytest.raises(CxrlabError, match="neither a PACKED folder"):
        compute_metrics(missing, missing, "swd")


def test_memorization_flags_planted_copies_end_to_end(packed, tmp_path):
    train_images = open_image_set(ImageSource(packed, split="train")).unit()
    generated = as_generator_output(smooth_images(20, 32, seed=13))
    generated[:5] = train_images[:5] * 2 - 1  # five copies of training images
    grid = tmp_path / "pairs.png"
    results = compute_metrics(
        packed, generated, "memorization", train=ImageSource(packed, split="train"), grid_path=grid
    )
    assert results["memorization_share"] >= 5 / 20 and results["memorization_share"] <= 7 / 20
    assert results.info["n_heldout"] == 16  # REAL's val + test: its train rows are left out
    assert Image.open(grid).size[0] > 0


def test_default_metrics_follow_the_extractor_and_train(packed):
    extractor = get_extractor("xrv", network=TinyXrv(), device="cpu")
    results = compute_metrics(packed, packed, None, features="xrv", extractor=extractor, n=12)
    assert "fid" in results and "is" not in results and "memorization_share" not in results
    assert results.info["n_real"] == 12 and results["fid"] == pytest.approx(0, abs=1e-9)


def test_input_errors(packed):
    with pytest.raises(CxrlabError, match="unknown metric.*fidd"):
        compute_metrics(packed, packed, "fidd")
    with pytest.raises(CxrlabError, match="--train"):
        compute_metrics(packed, packed, "memorization")
    with pytest.raises(CxrlabError, match="Inception Score"):
        compute_metrics(packed, packed, "is", features="xrv")
    with pytest.raises(CxrlabError, match="held-out"):
        compute_metrics(ImageSource(packed, split="train"), packed, "memorization", train=packed)
    with pytest.raises(CxrlabError, match="no images with split"):
        compute_metrics(ImageSource(packed, split="external"), packed, "swd")
    with pytest.raises(CxrlabError, match=r"\(N, 1, H, W\)"):
        compute_metrics(packed, torch.zeros(2, 3, 8, 8), "swd")


def test_image_folders_are_read_and_resized_to_the_first_image(tmp_path):
    folder = tmp_path / "samples"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(folder / "a.png")
    Image.fromarray(np.full((64, 48), 100, np.uint8)).save(folder / "sub" / "b.png")
    (folder / "notes.txt").write_text("ignored")
    images = open_image_set(folder)
    assert len(images) == 2 and images.size_px == (32, 32)
    np.testing.assert_allclose(images.unit()[:, 0, 5, 5].numpy(), [200 / 255, 100 / 255], atol=1e-6)
    assert images.key == open_image_set(folder).key
    Image.fromarray(np.full((32, 32), 201, np.uint8)).save(folder / "a.png")
    assert images.key != open_image_set(folder).key


def test_n_is_a_seeded_choice(packed):
    first = open_image_set(packed, n=10, seed=1)
    assert len(first) == 10 and np.array_equal(
        first.rows, open_image_set(packed, n=10, seed=1).rows
    )
    assert not np.array_equal(first.rows, open_image_set(packed, n=10, seed=2).rows)
    tensor = open_image_set(torch.zeros(5, 1, 8, 8), n=3)
    assert len(tensor) == 3 and tensor.unit().shape == (3, 1, 8, 8) and tensor.unit().max() == 0.5
