"""clf train logs each seed's epochs for TensorBoard, as gen train does."""

import pandas as pd
import pytest
from clf_factory import split_packed

from cxrlab.clf.config import ClfConfig
from cxrlab.clf.trainer import train_classifier


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_each_seed_writes_its_epochs_as_tensorboard_scalars(tmp_path):
    split_packed(tmp_path / "P", size_px=16)
    config = ClfConfig(
        arch="simple-cnn", data=str(tmp_path / "P"), out=str(tmp_path / "run"), epochs=2,
        batch_size=8, lr=2e-3, device="cpu", bootstrap=50, seeds=[0, 1],
    )  # fmt: skip
    train_classifier(config, progress=False)
    for seed in (0, 1):
        folder = tmp_path / "run" / f"seed_{seed}"
        logged = scalars(folder / "tensorboard")
        assert set(logged) == {"lr", "train_loss", "val_loss", "val_auc"}
        epochs = pd.read_csv(folder / "epochs.csv")
        for name, points in logged.items():
            assert [step for step, _ in points] == [1, 2]
            assert [value for _, value in points] == pytest.approx(list(epochs[name]), rel=1e-5)
