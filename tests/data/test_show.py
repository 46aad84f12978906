"""``data show``: every grid says what each tile shows."""

import numpy as np
import pytest
from PIL import Image

from cxrlab.data import show
from cxrlab.data.show import labelled_grid, show_packed
from factory import make_packed


@pytest.fixture
def captured(monkeypatch):
    """The tiles, captions and title show_packed hands to labelled_grid."""
    calls = {}
    real = show.labelled_grid

    def spy(tiles, captions, **options):
        calls.update(tiles=np.array(tiles), captions=list(captions), title=options.get("title"))
        return real(tiles, captions, **options)

    monkeypatch.setattr(show, "labelled_grid", spy)
    return calls


def test_grid_tiles_are_captioned_with_label_and_split(tmp_path, captured):
    packed = make_packed(tmp_path / "P", n=16)  # rows 0-11 train, 12-15 val; odd rows covid
    show_packed(packed, tmp_path / "g.png", n=16)
    assert captured["captions"][:2] == ["normal, train", "covid, train"]
    assert captured["captions"][-1] == "covid, val"
    assert "16 of 16 images" in captured["title"]
    show_packed(packed, tmp_path / "v.png", n=4, split="val")
    assert captured["captions"] == ["normal, val", "covid, val"] * 2
    assert "split val" in captured["title"]


def test_augment_grid_shows_the_original_first_and_says_so(tmp_path, captured):
    packed = make_packed(tmp_path / "P", n=16)
    show_packed(packed, tmp_path / "a.png", n=5, augment="severe", split="val", index=1)
    original = np.load(packed / "images.npy")[13]  # val's second image
    assert np.array_equal(captured["tiles"][0], original)
    assert captured["captions"] == ["original"] + [f"severe #{k}" for k in range(1, 5)]
    assert "image 1 of split val (covid, val)" in captured["title"]


def test_labelled_grid_enlarges_small_tiles_and_leaves_room_for_captions():
    tiles = np.full((3, 32, 32), 200, dtype=np.uint8)
    grid = labelled_grid(tiles, ["a", "b", "c"], title="three", columns=3)
    assert grid.dtype == np.uint8 and grid.shape[2] == 3
    assert grid.shape[1] == 3 * (128 + 4) + 4
    assert grid.shape[0] > 128 + 2 * 15  # a title line and a caption line
    # the tile itself is drawn unchanged (enlarged): 200 grey inside
    assert (grid[grid.shape[0] // 2, 10:100] == 200).all()
    with pytest.raises(Exception, match="N captions"):
        labelled_grid(tiles, ["a"])


def test_show_writes_an_rgb_png(tmp_path):
    packed = make_packed(tmp_path / "P", n=4)
    assert Image.open(show_packed(packed, tmp_path / "g.png", n=4)).mode == "RGB"
