"""The image-modes chart of ``data stats`` (issue 24, item 9: a rotated "L" tick)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cxrlab.data.stats import _write_figures, compute_stats  # noqa: E402


class _Recorder:
    """pyplot as ``_write_figures`` uses it, keeping every figure it made."""

    def __init__(self) -> None:
        self.figures = []

    def subplots(self, *args, **kwargs):
        figure, axis = plt.subplots(*args, **kwargs)
        self.figures.append(figure)
        return figure, axis

    def close(self, figure) -> None:  # kept open so the test can read it
        pass


def test_mode_ticks_are_horizontal(tmp_path):
    n = 6
    manifest = pd.DataFrame(
        {
            "split": ["train", "val", "test"] * 2,
            "label": ["covid", "normal"] * 3,
            "source": ["s"] * n,
            "site": ["a"] * n,
            "duplicate_group": [""] * n,
            "sha256": [str(i) for i in range(n)],
            "patient_id": [str(i) for i in range(n)],
            "covid": [1, 0] * 3,
            "mode": ["L", "L", "L", "RGB", "L", "RGB"],
            "width": [10] * n,
            "height": [10] * n,
        }
    )
    recorder = _Recorder()
    _write_figures(manifest, compute_stats(manifest), tmp_path, recorder)
    modes = [f for f in recorder.figures if f.axes[0].get_title() == "Image modes"]
    assert len(modes) == 1 and (tmp_path / "modes.png").is_file()
    ticks = modes[0].axes[0].get_xticklabels()
    assert sorted(t.get_text() for t in ticks) == ["L", "RGB"]
    assert all(t.get_rotation() == 0 for t in ticks)
    for figure in recorder.figures:
        plt.close(figure)
