"""The memorization figure says which image is generated, which is its nearest training
image, and their distance (issue 24, item 10)."""

import numpy as np

from cxrlab.metrics.memorization import (
    check_memorization,
    closest_pairs_figure,
    save_closest_pairs,
)


def test_pairs_are_labelled_with_their_distance(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 255, (12, 8, 8), dtype=np.uint8)
    heldout = rng.integers(0, 255, (6, 8, 8), dtype=np.uint8)
    fake = np.concatenate([train[:2], rng.integers(0, 255, (4, 8, 8), dtype=np.uint8)])
    result = check_memorization(
        fake.reshape(6, -1) / 255, heldout.reshape(6, -1) / 255, train.reshape(12, -1) / 255
    )
    figure = closest_pairs_figure(fake, train, result, n_pairs=4, pairs_per_row=2, title="g")
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["generated", "nearest training"] * 4
    distances = [axes.get_xlabel() for axes in figure.axes[0::2]]
    # closest first: the two copies, at distance 0, flagged as near-copies
    assert distances[:2] == ["distance 0.000 (near-copy)"] * 2
    assert all(d.startswith("distance ") for d in distances)
    assert "(near-copy)" not in distances[3]
    # each pair shows the generated image and the training image it is nearest to
    first = np.argsort(result.fake_distances, kind="stable")[0]
    shown = figure.axes[1].get_images()[0].get_array()
    assert np.array_equal(shown, train[result.fake_nearest[first]])
    assert "near-copy below" in figure._suptitle.get_text()
    path = save_closest_pairs(figure, tmp_path / "pairs.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
